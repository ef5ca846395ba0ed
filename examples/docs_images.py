"""Make the pictures in docs/ from the real thing: the demo's services and sample photos, the
CLI's contact sheet, and the web page in headless Chromium (make docs-images).

    python examples/docs_images.py [--weights none] [--out docs]

Needs Debian's chromium and chromium-driver (`make browser`). PNGs are reduced to a palette
so they stay small in the repository.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from examples.demo import WORK, run, services
from tests.support.browser import chromium, set_viewport
from tests.support.web import start_web

WIDTH = 1180


def small_png(source: Path, target: Path, height: int | None = None) -> None:
    image = Image.open(source).convert("RGB")
    if height is not None and image.height > height:
        image = image.crop((0, 0, image.width, height))
    palette = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    target.parent.mkdir(parents=True, exist_ok=True)
    palette.save(target, "PNG", optimize=True)
    print(f"{target}: {image.width} x {image.height}, {target.stat().st_size / 1024:.0f} KB")


def page_shot(driver, path: Path) -> None:
    full = driver.execute_script("return document.documentElement.scrollHeight")
    set_viewport(driver, WIDTH, full)
    time.sleep(0.5)
    WebDriverWait(driver, 60).until(
        lambda d: d.execute_script(
            "return Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"
        )
    )
    driver.save_screenshot(str(path))
    set_viewport(driver, WIDTH, 900)


def review_shots(driver, out: Path) -> None:
    """The duplicates review (the page already shows the groups): the first group's keeper
    changed and a member unticked, then the confirmation of the move (cancelled)."""
    WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".card-choice"))
    group = driver.find_element(By.CSS_SELECTOR, '.group[data-group="0"]')
    radios = group.find_elements(By.CSS_SELECTOR, 'input[type="radio"]:not(:checked)')
    radios[0].click()
    WebDriverWait(driver, 10).until(
        lambda d: len(group.find_elements(By.CSS_SELECTOR, 'input[type="checkbox"]:checked')) >= 2
    )
    group.find_elements(By.CSS_SELECTOR, 'input[type="checkbox"]:checked')[-1].click()
    page_shot(driver, WORK / "review.png")
    small_png(WORK / "review.png", out / "web-review.png", height=900)
    driver.find_element(By.ID, "apply-plan").click()
    WebDriverWait(driver, 30).until(
        lambda d: d.find_element(By.ID, "confirm").get_attribute("open") is not None
    )
    time.sleep(0.3)
    driver.save_screenshot(str(WORK / "review-confirm.png"))
    small_png(WORK / "review-confirm.png", out / "web-review-confirm.png")
    driver.find_element(By.CSS_SELECTOR, '#confirm button[value="cancel"]').click()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", default="none")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()
    with services(args.weights) as demo:
        sheet = WORK / "sheet.png"
        run("query", str(demo.query), *demo.common, "-k", "5", "--sheet", str(sheet))
        small_png(sheet, args.out / "contact-sheet.png")
        quarantine = WORK / "quarantine"  # the page offers the move; the pictures cancel it
        quarantine.mkdir(parents=True, exist_ok=True)
        web = start_web(
            WORK / "web.log", demo.embedder.address, demo.addresses, demo.photos,
            "--quarantine", str(quarantine),
        )  # fmt: skip
        driver = chromium(Path(tempfile.mkdtemp(prefix="chromium-")), WIDTH, 900)
        try:
            driver.get(web.url + "/")
            WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "limits").text)
            driver.find_element(By.ID, "file").send_keys(str(demo.query.resolve()))
            WebDriverWait(driver, 60).until(
                lambda d: len(d.find_elements(By.CSS_SELECTOR, "#grid li")) == 12
            )
            page_shot(driver, WORK / "search.png")
            small_png(WORK / "search.png", args.out / "web-search.png")
            driver.get(web.url + "/duplicates")
            WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".group"))
            page_shot(driver, WORK / "duplicates.png")
            small_png(WORK / "duplicates.png", args.out / "web-duplicates.png", height=900)
            review_shots(driver, args.out)
            driver.get(web.url + "/outliers?n=12")
            WebDriverWait(driver, 60).until(
                lambda d: len(d.find_elements(By.CSS_SELECTOR, "#grid li")) == 12
            )
            page_shot(driver, WORK / "outliers.png")
            small_png(WORK / "outliers.png", args.out / "web-outliers.png", height=900)
        finally:
            driver.quit()
            web.stop()


if __name__ == "__main__":
    main()
