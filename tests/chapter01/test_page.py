"""Chapter 01's page in a real headless Chromium, offline."""

from __future__ import annotations

import pytest

from lab.apps import start_app
from lab.browser import log_line

pytestmark = pytest.mark.browser

CHAPTER = "chapters/01_basic_chat/app.py"
DEADLINE_MS = 10_000


def join(page, name, room):
    page.locator("input[name=username]").fill(name)
    page.locator("input[name=room]").fill(room)
    page.get_by_role("button", name="Join").click()
    page.get_by_test_id("room").filter(has_text=room).wait_for(timeout=DEADLINE_MS)


def say(page, text):
    page.locator("input[name=text]").fill(text)
    page.get_by_role("button", name="Send").click()


def test_two_pages_chat_offline_and_markup_stays_text(bench, open_page):
    """Two offline browser pages in one room chat over websocket, and markup in a message shows as text."""
    app = start_app(bench, CHAPTER)
    alice, bob = open_page(app.url + "/"), open_page(app.url + "/")

    # The local JS client loaded (no CDN warning) and the connection upgraded to websocket.
    for page in (alice, bob):
        assert not page.get_by_test_id("warning").is_visible()
        page.get_by_test_id("transport").filter(has_text="websocket").wait_for(timeout=DEADLINE_MS)

    join(alice, "alice", "lobby")
    join(bob, "bob", "lobby")
    log_line(alice, "bob joined lobby").wait_for(timeout=DEADLINE_MS)

    say(alice, "hello bob")
    log_line(bob, "alice: hello bob").wait_for(timeout=DEADLINE_MS)

    attack = '<img src=x onerror="window.pwned = 1">'
    say(alice, attack)
    log_line(bob, f"alice: {attack}").wait_for(timeout=DEADLINE_MS)
    # Shown as text: no element was created and no script ran.
    assert bob.get_by_test_id("log").locator("img").count() == 0
    assert bob.evaluate("window.pwned") is None
