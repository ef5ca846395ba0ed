"""The duplicates review and the outliers page in headless Chromium (Debian's chromium and
chromium-driver), keyboard only where a person would use it: choose the keeping rule, change a
group's keeper, untick a member, download the plan, move to quarantine after confirming. Every
state passes axe-core (no serious or critical violation) and has one <h1>."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from imagesim.client.review_plan import Action, plan_from_json
from tests.support.browser import chromium
from tests.web.test_browser import (
    DESKTOP,
    check_accessibility,
    check_page,
    open_page,
    pictures_loaded,
    screenshot,
    shown,
    wait,
)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = chromium(tmp_path_factory.mktemp("chromium-review"), *DESKTOP)
    yield driver
    driver.quit()


def press(driver, *keys: str) -> None:
    ActionChains(driver).send_keys(*keys).perform()


def focused(driver) -> str:
    """What has the keyboard focus: its aria-label, id or text."""
    return driver.execute_script(
        "const e = document.activeElement;"
        "return e.getAttribute('aria-label') || e.id || e.textContent.trim();"
    )


def tab_to(driver, prefix: str, most: int = 40) -> str:
    """Press Tab until the focus is on an element whose label starts with `prefix`."""
    for _ in range(most):
        press(driver, Keys.TAB)
        if focused(driver).startswith(prefix):
            return focused(driver)
    raise AssertionError(f"{most} Tabs never reached {prefix!r} (last: {focused(driver)!r})")


def one_h1(driver) -> None:
    assert len(driver.find_elements(By.TAG_NAME, "h1")) == 1


def test_review_by_keyboard_downloads_the_plan_and_moves_to_quarantine(
    browser, review_web, review_stack, tmp_path
):
    root, _, _, quarantine = review_stack
    browser.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)}
    )
    open_page(browser, review_web.url + "/duplicates")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".card-choice"))
    wait(browser, pictures_loaded)
    assert shown(browser, "apply-plan")  # keyless loopback: one local user, who may move
    one_h1(browser)
    check_page(browser, ".strip")
    # The rule, by keyboard: from the distance field, Tab to the select, arrow to a rule.
    browser.find_element(By.ID, "max-distance").click()
    assert tab_to(browser, "keep-rule") == "keep-rule"
    press(browser, Keys.END)  # the last option: the shortest path
    rule = browser.find_element(By.ID, "keep-rule")
    wait(browser, lambda d: rule.get_attribute("value") == "shortest-path")
    group = browser.find_element(By.CSS_SELECTOR, '#group-list .group[data-group="0"]')

    def keeper() -> str:
        return group.find_element(By.CSS_SELECTOR, ".card.keeper").get_attribute("data-key")

    cards = [li.get_attribute("data-key") for li in group.find_elements(By.CSS_SELECTOR, ".card")]
    wait(browser, lambda d: keeper() == min(cards, key=lambda k: (len(k), k)))
    # A new keeper: Tab into the group's radio buttons (the checked one), arrow to the next.
    first_keeper = keeper()
    label = tab_to(browser, "Keep ")
    assert label.endswith(first_keeper.rsplit("/", 1)[-1])
    press(browser, Keys.ARROW_RIGHT)
    wait(browser, lambda d: keeper() != first_keeper)
    new_keeper = keeper()
    assert focused(browser).startswith("Keep ")  # the focus stays on the radio buttons
    # Untick a member (not the keeper) with Space.
    untick_label = tab_to(browser, "Move ")
    press(browser, Keys.SPACE)
    unticked = group.find_element(By.CSS_SELECTOR, ".card.unticked").get_attribute("data-key")
    assert untick_label == "Move " + unticked.rsplit("/", 1)[-1]
    assert unticked != new_keeper
    check_accessibility(browser)
    screenshot(browser, "review.png")
    # Download the plan: Shift+Tab back to the button, Enter.
    for _ in range(60):
        ActionChains(browser).key_down(Keys.SHIFT).send_keys(Keys.TAB).key_up(Keys.SHIFT).perform()
        if focused(browser) == "download-plan":
            break
    assert focused(browser) == "download-plan"
    press(browser, Keys.ENTER)
    path = tmp_path / "plan.json"
    wait(browser, lambda d: path.is_file() and path.stat().st_size > 0)
    plan = plan_from_json(json.loads(path.read_text()))  # what `imagesim apply` reads
    assert plan.keep_rule.value == "shortest-path"
    actions = {m.key: m.action for m in plan.groups[0].members}
    assert plan.groups[0].keep == new_keeper
    assert actions[unticked] is Action.SKIP and actions[first_keeper] is Action.MOVE
    # Move to quarantine: Tab to the button, Enter; the dialog asks first (Cancel focused).
    press(browser, Keys.TAB)
    assert focused(browser) == "apply-plan"
    press(browser, Keys.ENTER)
    wait(browser, lambda d: d.find_element(By.ID, "confirm").get_attribute("open") is not None)
    moving = len(plan.moves())
    assert f"{moving} files will move" in browser.find_element(By.ID, "confirm-text").text
    assert focused(browser) == "Cancel"
    check_accessibility(browser)
    screenshot(browser, "review-confirm.png")
    press(browser, Keys.TAB)
    assert focused(browser) == "confirm-move"
    press(browser, Keys.ENTER)
    wait(browser, lambda d: shown(d, "review-result"), timeout=120)
    result = browser.find_element(By.ID, "review-result")
    assert result.text.startswith(f"Moved {moving} files")
    link = result.find_element(By.TAG_NAME, "a")
    assert "/api/review/manifest?name=imagesim-manifest-" in link.get_attribute("href")
    assert list(quarantine.glob("imagesim-manifest-*.json"))
    for member in plan.moves():
        source = Path(plan.images_root) / member.key  # an absolute key stays itself
        assert not source.exists()
        assert (quarantine / source.relative_to(root.resolve())).is_file()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".card-choice"), timeout=120)
    time.sleep(0.5)
    check_accessibility(browser)
    screenshot(browser, "review-done.png")


def test_the_outliers_page_shows_the_most_isolated_pictures(browser, review_web):
    open_page(browser, review_web.url + "/outliers?n=12")
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#grid li")) == 12)
    scores = [float(e.text) for e in browser.find_elements(By.CSS_SELECTOR, "#grid .distance")]
    assert scores == sorted(scores, reverse=True)
    one_h1(browser)
    check_page(browser)
    screenshot(browser, "outliers.png")
    # Keyboard: the count field, a new count, Enter.
    field = browser.find_element(By.ID, "count")
    field.clear()
    field.send_keys("5" + Keys.ENTER)
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#grid li")) == 5)
    assert "n=5" in browser.current_url
