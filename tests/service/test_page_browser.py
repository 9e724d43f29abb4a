"""The web page in a real browser: Debian's headless Chromium, driven by Playwright, against `kgqa serve` on loopback.

``make test-browser`` installs Chromium and Playwright and runs these (``pytest -m browser``); ``make test`` leaves
them out. Every request the page makes must stay on the service's origin: any other fails the test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from kgqa.bench.process import ServerProcess
from kgqa.service.settings import ServiceSettings

pytestmark = pytest.mark.browser

# the flags a root, offline, screenless machine needs (no sandbox as root; no calls home that the network refuses)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
API_KEY = "page-test-key"


def _chromium() -> str:
    found = os.environ.get("KGQA_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    message = "no Chromium (make test-browser installs Debian's chromium package)"
    if os.environ.get("KGQA_REQUIRE_BROWSER"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    executable = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("KGQA_REQUIRE_BROWSER"):
            raise
        pytest.skip("no Playwright (make test-browser installs kgqa[browser])")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class PageOnOrigin:
    """A browser page that records every request; ``off_origin`` lists those to any other origin (aborted)."""

    def __init__(self, browser, origin: str, **context_options: object) -> None:
        self.origin = origin
        self.context = browser.new_context(locale="zh-CN", **context_options)
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.off_origin: list[str] = []
        self.page.route("**/*", self._route)

    def _route(self, route) -> None:
        url = route.request.url
        self.requests.append(url)
        if url.startswith(self.origin + "/") or url == self.origin:
            route.continue_()
        else:
            self.off_origin.append(url)
            route.abort()

    def close(self) -> None:
        self.context.close()
        assert self.off_origin == [], f"the page asked other hosts: {self.off_origin}"


@pytest.fixture
def page_on(browser, kgclue_live_server: ServerProcess) -> Iterator[PageOnOrigin]:
    opened = PageOnOrigin(browser, kgclue_live_server.url, viewport={"width": 1100, "height": 1400})
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def dev(kgclue_dir: Path) -> dict[str, dict]:
    with open(kgclue_dir / "dev.json", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return {row["question"]: row for row in rows}


def _gold_object(dev: dict[str, dict], question: str) -> str:
    return dev[question]["answer"].split(" ||| ")[2]


def test_asking_by_keyboard_shows_the_object_the_path_trace_and_candidates(
    page_on: PageOnOrigin, kgclue_live_server: ServerProcess, dev: dict[str, dict]
) -> None:
    question = "我很好奇龙编站的坐标是什么啊？"
    page = page_on.page
    page.goto(kgclue_live_server.url + "/")
    page.get_by_label("Question").fill(question)
    page.get_by_label("Question").press("Enter")
    page.wait_for_selector("#trace li")
    assert page.locator("#answer-object").inner_text() == _gold_object(dev, question)
    assert page.locator("#answer-name").inner_text() == "龙编站"
    assert page.locator("#answer-relation").inner_text() == "坐标"
    steps = page.locator("#trace li")
    # the trace spells the path: name, separator, relation, separator, (empty meaning), end
    assert steps.count() == len("龙编站") + 1 + len("坐标") + 1 + 1
    assert "forced by the KB" in steps.nth(3).get_attribute("aria-label")  # after 龙编站 only the separator fits
    summary = page.locator("#trace-summary").inner_text()  # its counts add up to the steps shown
    chosen, forced = (int(n) for n in re.findall(r"(\d+) (?:chosen|forced)", summary))
    assert chosen + forced == steps.count(), summary
    assert page.locator("#candidates tbody tr").count() >= 1
    assert re.fullmatch(r"\d+\.\d%", page.locator("#answer-confidence").inner_text())  # calibrated, in percent
    assert "q=" in page.url  # the address now asks this question


def test_a_question_the_kb_does_not_hold_says_so_and_shows_the_nearest_candidates(
    page_on: PageOnOrigin, kgclue_live_server: ServerProcess
) -> None:
    page = page_on.page
    page.goto(kgclue_live_server.url + "/?q=" + "1加1等于几")
    page.wait_for_selector("#no-answer:not([hidden])")
    said = page.locator("#no-answer").inner_text()
    assert said.startswith("The KB does not hold this.") and "threshold" in said
    assert page.locator("#status").inner_text() == "The KB does not hold this."
    assert page.locator("#answer").is_hidden() and page.locator("#entity-section").is_hidden()
    assert page.locator("#candidates tbody tr").count() >= 1  # the nearest candidates, still listed


def test_a_shared_link_asks_at_load_and_the_entity_view_lists_the_subjects_triples(
    page_on: PageOnOrigin, kgclue_live_server: ServerProcess, dev: dict[str, dict]
) -> None:
    import urllib.parse

    question = "刘晓华主要讲什么课啊？"
    page = page_on.page
    page.goto(f"{kgclue_live_server.url}/?q={urllib.parse.quote(question)}")
    page.wait_for_selector("#entity tbody tr")
    assert page.locator("#answer-object").inner_text() == _gold_object(dev, question)
    assert page.get_by_label("Question").input_value() == question
    assert page.locator("#entity-name").inner_text() == "刘晓华（广东工业大学教授）"
    relations = page.locator("#entity tbody tr td:first-child").all_inner_texts()
    assert "主讲课程" in relations
    assert page.locator("#entity-count").inner_text().startswith(f"{len(relations)} triple")
    assert "completed by the KB" in page.locator("#trace li").last.get_attribute("aria-label")


def test_phone_width_has_no_sideways_scrolling_and_the_screenshot(
    browser, kgclue_live_server: ServerProcess, dev: dict[str, dict]
) -> None:
    phone = PageOnOrigin(browser, kgclue_live_server.url, viewport={"width": 375, "height": 812}, device_scale_factor=2)
    try:
        page = phone.page
        page.goto(kgclue_live_server.url + "/")
        page.get_by_role("button", name="石光荣的儿女叫什么？").click()
        page.wait_for_selector("#entity tbody tr")
        assert page.locator("#answer-object").inner_text() == _gold_object(dev, "石光荣的儿女叫什么？")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    finally:
        phone.close()
    wide = PageOnOrigin(browser, kgclue_live_server.url, viewport={"width": 1000, "height": 900})
    try:
        page = wide.page
        page.goto(kgclue_live_server.url + "/?q=" + "你知道Metasploit的开发时间是什么时候吗？")
        page.wait_for_selector("#entity tbody tr")
        page.wait_for_selector("#served:not(:empty)")
        shot = Path(os.environ.get("KGQA_SCREENSHOT", "")) if os.environ.get("KGQA_SCREENSHOT") else None
        if shot is not None:
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
    finally:
        wide.close()


@pytest.fixture(scope="module")
def keyed_server(kgclue_settings: ServiceSettings) -> Iterator[ServerProcess]:
    server = ServerProcess(kgclue_settings.model, kgclue_settings.index, "--api-key", API_KEY).start()
    yield server
    server.stop()


def test_the_page_asks_for_the_api_key_when_the_api_answers_401(browser, keyed_server: ServerProcess) -> None:
    opened = PageOnOrigin(browser, keyed_server.url)
    try:
        page = opened.page
        page.goto(keyed_server.url + "/")
        page.get_by_label("Question").fill("石光荣的儿女叫什么？")
        page.get_by_label("Question").press("Enter")
        key = page.get_by_label("API key")
        key.wait_for()
        assert page.locator("#result").is_hidden()
        key.fill(API_KEY)
        key.press("Enter")  # the question is asked again, with the key
        page.wait_for_selector("#trace li")
        assert page.locator("#answer-name").inner_text() == "石光荣"
        assert page.locator("#key-form").is_hidden()
    finally:
        opened.close()


def test_offline_docs_render_in_the_browser(page_on: PageOnOrigin, kgclue_live_server: ServerProcess) -> None:
    page = page_on.page
    page.goto(kgclue_live_server.url + "/docs")
    page.wait_for_selector(".opblock-summary-path")
    assert "/v1/answer" in page.locator(".opblock-summary-path").all_inner_texts()
    page.goto(kgclue_live_server.url + "/redoc")
    page.locator("h2", has_text="Answer one question").wait_for()
