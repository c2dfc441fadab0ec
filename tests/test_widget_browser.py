"""The chat widget in headless Chromium, against the real gateway and worker."""

from __future__ import annotations

import os
import shutil

import pytest

from dialogue import load_policy

pytestmark = [pytest.mark.slow, pytest.mark.browser]
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
POLICY = load_policy()


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}: apt-get install -y chromium (scripts/test.sh does)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser.new_page()
        browser.close()


def test_widget_chat_and_history_after_reload(product, page):
    page.goto(product["url"] + "/")
    log = page.locator(".sb-log")
    # The greeting is shown before any message; the socket comes up.
    page.wait_for_selector(".sb-widget.sb-online", timeout=15_000)

    page.fill(".sb-input", "where is my order")
    page.keyboard.press("Enter")
    page.wait_for_selector(".sb-msg.sb-from-shopper:not(.sb-pending)", timeout=10_000)
    page.wait_for_selector(".sb-from-bot .sb-text >> text=" + POLICY.message("ask_order_number", "en"), timeout=30_000)
    assert page.locator(".sb-from-shopper .sb-who").first.inner_text() == "You"

    page.fill(".sb-input", "it is 10023")
    page.click(".sb-send")
    page.wait_for_selector(".sb-from-bot .sb-text:has-text('10023')", timeout=30_000)
    # The answer comes with quick replies (the test policy gives track_order one); a click sends it.
    # Clicked and counted in one go: the bot's next answer may bring quick replies of its own.
    left = page.evaluate(
        """() => {
          const all = [...document.querySelectorAll('.sb-quick-reply')];
          const b = all.find(e => e.textContent === 'Track another order');
          b.click();
          return document.querySelectorAll('.sb-quick-reply').length;
        }"""
    )
    assert left == 0
    page.wait_for_selector(".sb-from-shopper .sb-text >> text=Track another order", timeout=10_000)

    page.reload()
    page.wait_for_selector(".sb-widget.sb-online", timeout=15_000)
    texts = log.locator(".sb-msg .sb-text").all_inner_texts()
    assert texts[:4] == ["where is my order", POLICY.message("ask_order_number", "en"), "it is 10023", texts[3]]
    assert "10023" in texts[3]


def test_widget_speaks_chinese(product, page):
    page.add_init_script("Object.defineProperty(navigator, 'language', {get: () => 'zh-CN'})")
    page.goto(product["url"] + "/")
    page.wait_for_selector(".sb-widget.sb-online", timeout=15_000)
    assert page.locator(".sb-send").inner_text() == "发送"
    assert page.locator(".sb-from-bot .sb-who").first.inner_text() == "智能助手"
    page.fill(".sb-input", "你好,我的快递到哪了")
    page.keyboard.press("Enter")
    # Whatever the small test models make of it, the bot answers in Chinese.
    reply = page.locator(".sb-from-bot, .sb-from-system").nth(1).locator(".sb-text")
    reply.wait_for(timeout=30_000)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in reply.inner_text()), reply.inner_text()
