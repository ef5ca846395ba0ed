"""The pages in a real browser: headless Chromium (Debian's chromium + chromium-driver, which
`make test` installs) driven by Selenium against real imagesim-web, Embedder and shard
processes. Every test saves full-page screenshots under test-artifacts/browser/ (or
$IMAGESIM_TEST_ARTIFACTS/browser/) for people to look at, and checks the layout itself: no
horizontal overflow, cards in aligned rows of equal width, text no smaller than 12 px; and
every page state passes axe-core (the npm package in tests/web/axe, which `make test`
installs) without a serious or critical violation.

Without Chromium these tests fail (set IMAGESIM_SKIP_BROWSER=1 to skip them knowingly).
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from imagesim.web.auth import KEY_COOKIE
from tests.support.browser import axe_violations, browser_paths, chromium, set_viewport, viewport

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("IMAGESIM_TEST_ARTIFACTS", REPO / "test-artifacts")) / "browser"
AXE = REPO / "tests" / "web" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
SEVERE = ("serious", "critical")
CHELSEA = {"chelsea.jpg", "chelsea_crop.jpg", "chelsea_half.jpg", "chelsea_mirror.jpg"}
DESKTOP, PHONE = (1280, 900), (390, 844)

if browser_paths() is None:
    if os.environ.get("IMAGESIM_SKIP_BROWSER") == "1":
        pytest.skip("IMAGESIM_SKIP_BROWSER=1 and no Chromium", allow_module_level=True)
    raise RuntimeError(
        "browser tests need Debian's chromium and chromium-driver: run `make test` (installs "
        "them) or apt-get install -y chromium chromium-driver"
    )


def name(key: str) -> str:
    return key.rsplit("/", 1)[-1]


@pytest.fixture(scope="module")
def desktop(tmp_path_factory):
    driver = chromium(tmp_path_factory.mktemp("chromium-desktop"), *DESKTOP)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def phone(tmp_path_factory):
    driver = chromium(tmp_path_factory.mktemp("chromium-phone"), *PHONE)
    yield driver
    driver.quit()


def wait(driver, condition, timeout: float = 60):
    """Wait for `condition`; a page that navigates while it is checked is checked again
    (chromedriver reports a node of the page being left as stale, missing, or as an inspector
    error). Any other error ends the wait at once."""

    def check(d):
        try:
            return condition(d)
        except (StaleElementReferenceException, NoSuchElementException):
            return False
        except WebDriverException as exc:
            if "does not belong to the document" in str(exc):
                return False
            raise

    return WebDriverWait(driver, timeout).until(check)


def shown(driver, element_id: str) -> bool:
    return driver.find_element(By.ID, element_id).is_displayed()


def result_keys(driver) -> list[str]:
    return [
        li.get_attribute("data-key") for li in driver.find_elements(By.CSS_SELECTOR, "#grid li")
    ]


def pictures_loaded(driver) -> bool:
    """Every picture in the window has loaded (lazy ones further down load on scrolling)."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('.thumb img, #query-img'))"
        ".filter(i => i.offsetParent && i.getBoundingClientRect().top < innerHeight)"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )


def screenshot(driver, filename: str) -> Path:
    """The whole page (the viewport grown to the document's height), saved as an artefact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    width, height = viewport(driver)
    full = driver.execute_script("return document.documentElement.scrollHeight")
    set_viewport(driver, width, max(height, full))
    time.sleep(0.2)  # one layout pass after the resize
    wait(driver, pictures_loaded)
    path = ARTIFACTS / filename
    driver.save_screenshot(str(path))
    set_viewport(driver, width, height)
    return path


def check_accessibility(
    driver, heading: bool = True, tolerated: frozenset[str] = frozenset()
) -> None:
    """axe-core finds no serious or critical violation on the page as it is now (but the
    `tolerated` rules), and (our own pages) the page has a level-one heading."""
    if not AXE.is_file():
        raise RuntimeError(f"{AXE} is missing: run `make test` (npm ci in tests/web/axe)")
    found = [
        v for v in axe_violations(driver, AXE) if v["impact"] in SEVERE and v["id"] not in tolerated
    ]
    problems = [
        f"{v['impact']} {v['id']} ({v['help']}) on {len(v['nodes'])} elements, first: "
        f"{v['nodes'][0]['html'][:200]}"
        for v in found
    ]
    assert not problems, f"{driver.current_url}: " + "; ".join(problems)
    if heading:
        headings = driver.find_elements(By.TAG_NAME, "h1")
        assert any(h.is_displayed() for h in headings), f"{driver.current_url} shows no <h1>"


def check_page(driver, grids: str = "#grid") -> None:
    """No sideways scrolling; in each grid the cards line up in rows, one width; every text
    at least 12 px; no serious accessibility problem (check_accessibility)."""
    overflow = driver.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the page scrolls sideways by {overflow} px"
    per_grid = driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map(g =>"
        " Array.from(g.children).map(e => { const r = e.getBoundingClientRect();"
        " return [r.left, r.top, r.width]; }))",
        grids,
    )
    for boxes in per_grid:
        if not boxes:
            continue
        assert max(b[2] for b in boxes) - min(b[2] for b in boxes) < 1, "cards differ in width"
        rows: dict[int, list[float]] = {}
        for left, top, _ in boxes:
            rows.setdefault(round(top), []).append(left)
        lefts = [sorted(row) for row in rows.values()]
        for row in lefts[1:]:  # every row starts where the first does, column under column
            assert all(abs(a - b) < 1 for a, b in zip(row, lefts[0], strict=False))
    smallest = driver.execute_script(
        "return Math.min(...Array.from(document.querySelectorAll('body *'))"
        ".filter(e => e.offsetParent && Array.from(e.childNodes)"
        ".some(n => n.nodeType === 3 && n.textContent.trim()))"
        ".map(e => parseFloat(getComputedStyle(e).fontSize)))"
    )
    assert smallest >= 12, f"text as small as {smallest} px"
    check_accessibility(driver)


def tab(driver) -> None:
    """Press Tab where the focus is, as a person would."""
    ActionChains(driver).send_keys(Keys.TAB).perform()


def upload(driver, path: Path) -> None:
    driver.find_element(By.ID, "file").send_keys(str(path))


def open_page(driver, url: str) -> None:
    driver.get(url)
    wait(driver, lambda d: d.execute_script("return document.readyState") == "complete")


# ---- search -------------------------------------------------------------------------------


def test_an_uploaded_photo_shows_its_near_duplicates_first(desktop, web, held_out_cat):
    open_page(desktop, web.url + "/")
    wait(desktop, lambda d: d.find_element(By.ID, "limits").text)
    screenshot(desktop, "search-empty.png")
    check_page(desktop)
    upload(desktop, held_out_cat)
    wait(desktop, lambda d: len(result_keys(d)) == 12)
    keys = result_keys(desktop)
    assert {name(k) for k in keys[:4]} == CHELSEA
    distances = [float(e.text) for e in desktop.find_elements(By.CSS_SELECTOR, "#grid .distance")]
    assert distances == sorted(distances)
    ranks = [e.text for e in desktop.find_elements(By.CSS_SELECTOR, "#grid .rank")]
    assert ranks == [f"#{n}" for n in range(1, 13)]
    assert desktop.find_element(By.CSS_SELECTOR, "#grid .card-name").text == name(keys[0])
    title = desktop.find_element(By.ID, "results-title").text
    assert title == "12 images closest to held_out_cat.jpg"
    wait(desktop, pictures_loaded)
    assert not shown(desktop, "error")
    check_page(desktop)
    screenshot(desktop, "search-results.png")


def test_a_click_searches_from_the_result_and_the_keyboard_gets_there_too(
    desktop, web, held_out_cat
):
    open_page(desktop, web.url + "/")
    # Keyboard: Tab from the top of the page reaches the file picker.
    for _ in range(12):
        tab(desktop)
        if desktop.switch_to.active_element.get_attribute("id") == "file":
            break
    assert desktop.switch_to.active_element.get_attribute("id") == "file"
    upload(desktop, held_out_cat)
    wait(desktop, lambda d: len(result_keys(d)) == 12)
    second = result_keys(desktop)[1]
    desktop.find_elements(By.CSS_SELECTOR, "#grid .card-link")[1].click()
    wait(desktop, lambda d: "key=" in d.current_url)
    wait(desktop, lambda d: result_keys(d) and second not in result_keys(d))
    assert desktop.current_url.startswith(web.url + "/?key=")
    neighbors = result_keys(desktop)
    assert {name(k) for k in neighbors[:3]} == CHELSEA - {name(second)}
    assert name(second) in desktop.find_element(By.ID, "results-title").text
    assert desktop.find_element(By.ID, "query-name").text.startswith(second)
    wait(desktop, pictures_loaded)
    check_page(desktop)
    screenshot(desktop, "more-like-this.png")
    # The address is shareable: opened afresh it shows the same results.
    shared = desktop.current_url
    open_page(desktop, shared)
    wait(desktop, lambda d: result_keys(d) == neighbors)
    # Keyboard again: Tab on from the Search button to the first result, press Enter.
    desktop.execute_script("document.getElementById('search-button').focus()")
    for _ in range(5):
        tab(desktop)
        if "card-link" in (desktop.switch_to.active_element.get_attribute("class") or ""):
            break
    focused = desktop.switch_to.active_element
    assert "card-link" in focused.get_attribute("class")
    target = focused.get_attribute("href")
    assert target.endswith(quote(neighbors[0], safe="") + "&k=12")
    ActionChains(desktop).send_keys(Keys.ENTER).perform()
    wait(desktop, lambda d: d.current_url == target)
    wait(desktop, lambda d: result_keys(d) and neighbors[0] not in result_keys(d))


DROP_AND_PASTE = """
const [key, how, done] = arguments;
fetch('/api/thumbnail?key=' + encodeURIComponent(key))
  .then(r => r.blob())
  .then(blob => {
    const data = new DataTransfer();
    data.items.add(new File([blob], how === 'drop' ? 'dropped.jpg' : 'pasted.jpg',
                            {type: 'image/jpeg'}));
    if (how === 'drop') {
      document.getElementById('drop').dispatchEvent(
        new DragEvent('drop', {dataTransfer: data, bubbles: true, cancelable: true}));
    } else {
      document.dispatchEvent(
        new ClipboardEvent('paste', {clipboardData: data, bubbles: true, cancelable: true}));
    }
    done(true);
  })
  .catch(e => done(String(e)));
"""


def test_a_dropped_or_pasted_image_is_searched_too(desktop, web, web_root):
    key = str(web_root / "photos" / "coffee.jpg")
    open_page(desktop, web.url + "/")
    for how in ("drop", "paste"):
        desktop.execute_script("document.getElementById('grid').replaceChildren()")
        assert desktop.execute_async_script(DROP_AND_PASTE, key, how) is True
        wait(desktop, lambda d: len(result_keys(d)) == 12)
        assert name(result_keys(desktop)[0]).startswith("coffee")
        title = desktop.find_element(By.ID, "drop-title").text
        assert title == ("dropped.jpg" if how == "drop" else "pasted.jpg")


# ---- duplicates ---------------------------------------------------------------------------


def test_the_duplicates_page_shows_groups_and_the_threshold_changes_them(desktop, web):
    open_page(desktop, web.url + "/duplicates")
    wait(desktop, lambda d: d.find_elements(By.CSS_SELECTOR, ".group"))
    groups = desktop.find_elements(By.CSS_SELECTOR, ".group")
    assert len(groups) == 11
    assert desktop.find_element(By.ID, "summary").text.startswith(
        "11 groups, 41 images within 0.04"
    )
    first = groups[0].find_elements(By.CSS_SELECTOR, "li")
    assert len(first) == 4
    cat = next(
        g
        for g in groups
        if "chelsea.jpg"
        in {name(li.get_attribute("data-key")) for li in g.find_elements(By.CSS_SELECTOR, "li")}
    )
    assert {
        name(li.get_attribute("data-key")) for li in cat.find_elements(By.CSS_SELECTOR, "li")
    } == CHELSEA
    assert desktop.find_element(By.ID, "max-distance").get_attribute("value") == "0.04"
    assert not shown(desktop, "pager")  # 11 groups fit on one page
    wait(desktop, pictures_loaded)
    check_page(desktop, ".strip")
    screenshot(desktop, "duplicates.png")
    # A tighter threshold: fewer groups, and the address says which.
    field = desktop.find_element(By.ID, "max-distance")
    field.clear()
    field.send_keys("0.01" + Keys.ENTER)
    wait(desktop, lambda d: "max_distance=0.01" in d.current_url)
    wait(desktop, lambda d: "within 0.01" in d.find_element(By.ID, "summary").text)
    tighter = desktop.find_elements(By.CSS_SELECTOR, ".group")
    assert 0 < len(tighter) < 11
    check_page(desktop, ".strip")
    screenshot(desktop, "duplicates-tight.png")
    # A member opens the search page from it.
    member = tighter[0].find_element(By.CSS_SELECTOR, "li")
    key = member.get_attribute("data-key")
    member.find_element(By.CSS_SELECTOR, "a").click()
    wait(desktop, lambda d: result_keys(d) and key not in result_keys(d))
    assert name(key) in desktop.find_element(By.ID, "results-title").text


# ---- errors -------------------------------------------------------------------------------


def test_a_non_image_upload_shows_a_readable_error(desktop, web, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("a shopping list, not a picture")
    open_page(desktop, web.url + "/")
    upload(desktop, notes)
    wait(desktop, lambda d: shown(d, "error"))
    text = desktop.find_element(By.ID, "error").text
    assert text.startswith("That file is not an image this service can read.")
    assert "notes.txt" in text and "Traceback" not in text and "BytesIO" not in text
    assert not shown(desktop, "results") and not shown(desktop, "chosen")
    assert desktop.find_element(By.ID, "error").get_attribute("role") == "alert"
    check_page(desktop)
    screenshot(desktop, "error-not-an-image.png")


def test_too_large_and_shard_down_show_readable_errors(
    desktop, web_small, stack_with_a_shard_to_kill, held_out_cat, tmp_path
):
    import numpy as np
    from PIL import Image

    big = tmp_path / "big.jpg"
    noise = np.random.default_rng(1).integers(0, 256, (600, 600, 3), dtype=np.uint8)
    Image.fromarray(noise).save(big, quality=95)
    open_page(desktop, web_small.url + "/")
    wait(desktop, lambda d: "256 KB" in d.find_element(By.ID, "limits").text)
    upload(desktop, big)
    wait(desktop, lambda d: shown(d, "error"))
    text = desktop.find_element(By.ID, "error").text
    assert text.startswith("That image file is too large.") and "256 KB" in text
    check_page(desktop)
    screenshot(desktop, "error-too-large.png")

    server, shard = stack_with_a_shard_to_kill
    shard.stop()
    open_page(desktop, server.url + "/")
    upload(desktop, held_out_cat)
    wait(desktop, lambda d: shown(d, "error"))
    text = desktop.find_element(By.ID, "error").text
    assert text.startswith("A search service is down or busy.")
    assert shard.address in text
    assert not shown(desktop, "results")
    check_page(desktop)
    screenshot(desktop, "error-shard-down.png")


# ---- the API docs ---------------------------------------------------------------------------


# Swagger UI's own markup and styles (FastAPI's page, the swagger-ui-dist bundle), not ours:
# grey-on-white badges, <html> without lang, a copy button inside each operation's button.
SWAGGER_UI_KNOWN = frozenset({"color-contrast", "html-has-lang", "nested-interactive"})


def test_the_api_docs_page_has_no_other_serious_accessibility_problem(desktop, web):
    open_page(desktop, web.url + "/docs")
    wait(desktop, lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock"))
    # its title is an h2 (Swagger UI's)
    check_accessibility(desktop, heading=False, tolerated=SWAGGER_UI_KNOWN)
    screenshot(desktop, "api-docs.png")


# ---- phone width --------------------------------------------------------------------------


def test_phone_width_pages_fit_in_two_columns(phone, web, held_out_cat):
    open_page(phone, web.url + "/")
    assert viewport(phone) == PHONE
    wait(phone, lambda d: d.find_element(By.ID, "limits").text)
    check_page(phone)
    screenshot(phone, "phone-search-empty.png")
    upload(phone, held_out_cat)
    wait(phone, lambda d: len(result_keys(d)) == 12)
    wait(phone, pictures_loaded)
    lefts = phone.execute_script(
        "return Array.from(document.querySelectorAll('#grid li'))"
        ".map(e => Math.round(e.getBoundingClientRect().left))"
    )
    assert len(set(lefts)) == 2  # two columns
    check_page(phone)
    screenshot(phone, "phone-search-results.png")
    open_page(phone, web.url + "/duplicates")
    wait(phone, lambda d: d.find_elements(By.CSS_SELECTOR, ".group"))
    wait(phone, pictures_loaded)
    check_page(phone, ".strip")
    screenshot(phone, "phone-duplicates.png")


# ---- behind TLS and API keys --------------------------------------------------------------


def spki_pin(certificate: Path) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)): what Chromium's
    --ignore-certificate-errors-spki-list trusts (this one key, not any certificate)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    key = x509.load_pem_x509_certificate(certificate.read_bytes()).public_key()
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture(scope="module")
def trusting(tmp_path_factory, pki):
    """A desktop Chromium that trusts the test server certificate (pinned by its key)."""
    pin = f"--ignore-certificate-errors-spki-list={spki_pin(pki.server.cert)}"
    driver = chromium(tmp_path_factory.mktemp("chromium-tls"), *DESKTOP, flags=(pin,))
    yield driver
    driver.quit()


def sign_in(driver, key: str) -> None:
    field = driver.find_element(By.ID, "key")
    field.clear()
    field.send_keys(key)
    driver.find_element(By.ID, "sign-in").click()


def refused_page(failed: str, message: str):
    """The sign-in page after a refusal of kind `failed`, showing `message`."""

    def shows(driver) -> bool:
        return f"failed={failed}&" in driver.current_url and driver.find_element(
            By.ID, "error"
        ).text.startswith(message)

    return shows


def test_signing_in_with_a_read_key_shows_results_and_thumbnails(
    trusting, secure_web, pki, held_out_cat
):
    base = secure_web.url
    open_page(trusting, base + "/duplicates")
    wait(trusting, lambda d: d.current_url.startswith(base + "/login?next=%2Fduplicates"))
    assert not shown(trusting, "error")
    check_page(trusting)
    screenshot(trusting, "sign-in.png")
    # A write key is refused (a browser keeps only read keys), and so is a wrong one.
    # Each wait names its own refusal: after the first, the page already shows an error.
    refusals = (("role", pki.keys["write"], "Sign in with a read key."),
                ("key", "0123456789abcdef-wrong", "That API key is not valid."))  # fmt: skip
    for failed, key, message in refusals:
        sign_in(trusting, key)
        wait(trusting, refused_page(failed, message))
        assert trusting.get_cookie(KEY_COOKIE) is None
    sign_in(trusting, pki.keys["read"])
    wait(trusting, lambda d: d.current_url == base + "/duplicates")
    wait(trusting, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".group")) == 11)
    wait(trusting, pictures_loaded)  # <img src> thumbnails carry the cookie
    cookie = trusting.get_cookie(KEY_COOKIE)
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/" and cookie["domain"] == "127.0.0.1"
    assert trusting.execute_script("return document.cookie") == ""  # no script can read it
    assert shown(trusting, "signout")
    # The search page: an upload, its results and their thumbnails.
    open_page(trusting, base + "/")
    upload(trusting, held_out_cat)
    wait(trusting, lambda d: len(result_keys(d)) == 12)
    assert {name(k) for k in result_keys(trusting)[:4]} == CHELSEA
    wait(trusting, pictures_loaded)
    assert not shown(trusting, "error")
    check_page(trusting)
    screenshot(trusting, "search-results-signed-in.png")
    set_viewport(trusting, *PHONE)  # four menu entries still fit a phone
    try:
        check_page(trusting)
        screenshot(trusting, "phone-search-results-signed-in.png")
    finally:
        set_viewport(trusting, *DESKTOP)
    # Sign out: the cookie is gone, the pages send the browser to sign in again.
    trusting.find_element(By.CSS_SELECTOR, "#signout button").click()
    wait(trusting, lambda d: d.current_url.startswith(base + "/login"))
    assert trusting.get_cookie(KEY_COOKIE) is None
    open_page(trusting, base + "/")
    wait(trusting, lambda d: d.current_url.startswith(base + "/login?next=%2F"))
