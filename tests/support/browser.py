"""Headless Chromium driven by Selenium, for the web page's tests and screenshots.

Uses Debian's `chromium` and `chromium-driver` (`make test` installs them); Selenium is told
both paths, so it never tries to download a browser or driver of its own.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
DRIVER_CANDIDATES = ("/usr/bin/chromedriver",)
# No network beyond loopback here: without these Chromium keeps trying Google's hosts.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--lang=en-US",
)


def _first(paths: tuple[str, ...], name: str) -> str | None:
    for path in paths:
        if os.access(path, os.X_OK):
            return path
    return shutil.which(name)


def browser_paths() -> tuple[str, str] | None:
    """(chromium, chromedriver), or None if either is not installed."""
    chromium = _first(CHROMIUM_CANDIDATES, "chromium")
    driver = _first(DRIVER_CANDIDATES, "chromedriver")
    return (chromium, driver) if chromium and driver else None


def chromium(profile: Path, width: int = 1280, height: int = 900, flags: tuple[str, ...] = ()):
    """A headless Chromium (selenium WebDriver) with a fresh profile in `profile`, and
    `flags` besides CHROMIUM_FLAGS."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = browser_paths()
    if paths is None:
        raise RuntimeError(
            "chromium and chromedriver are needed: apt-get install -y chromium chromium-driver "
            "(make test does it)"
        )
    os.environ.setdefault("SE_AVOID_STATS", "true")  # Selenium Manager: no usage report
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for flag in (*CHROMIUM_FLAGS, *flags):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=paths[1]))
    driver.set_page_load_timeout(60)
    set_viewport(driver, width, height)
    return driver


def set_viewport(driver, width: int, height: int) -> None:
    """The page's viewport in CSS pixels, exactly (a window cannot be narrower than ~500 px;
    below 600 the page is laid out as on a phone, touch and all)."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
    )


def viewport(driver) -> tuple[int, int]:
    return tuple(driver.execute_script("return [innerWidth, innerHeight]"))


def axe_violations(driver, script: Path) -> list[dict]:
    """The accessibility violations axe-core finds on the page `driver` shows, as it is now
    (each: id, impact, help, helpUrl, nodes). `script` is axe-core's axe.min.js (the npm
    package); it is injected once per page load."""
    if not driver.execute_script("return typeof window.axe === 'object'"):
        driver.execute_script(script.read_text())
    driver.set_script_timeout(120)
    answer = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']})"
        ".then(r => done(r.violations), e => done({error: String(e)}));"
    )
    if isinstance(answer, dict):
        raise RuntimeError(f"axe-core failed: {answer['error']}")
    return answer
