"""Chapter 03's page in a real headless Chromium, offline, on two instances sharing Redis."""

from __future__ import annotations

import re

import pytest

from lab.apps import start_app
from lab.browser import log_line
from lab.redis_server import start_redis

pytestmark = pytest.mark.browser

CHAPTER = "chapters/03_redis_scaling/app.py"
DEADLINE_MS = 10_000


def test_pages_on_two_instances_chat_and_count_each_other(bench, open_page):
    """Pages on two instances show which one they reached, count 2 online, and see each other's lines."""
    redis = start_redis(bench)
    one, two = (start_app(bench, CHAPTER, name=f"chat-{n}", env={"REDIS_URL": redis.url}) for n in (1, 2))
    alice, bob = open_page(one.url + "/"), open_page(two.url + "/")

    for page, instance in ((alice, "chat-1"), (bob, "chat-2")):
        assert not page.get_by_test_id("warning").is_visible()
        assert page.get_by_test_id("instance").text_content() == instance
        page.get_by_test_id("transport").filter(has_text="websocket").wait_for(timeout=DEADLINE_MS)
        # The count covers both instances.
        page.get_by_test_id("online").filter(has_text=re.compile("^2$")).wait_for(timeout=DEADLINE_MS)

    for page, name in ((alice, "alice"), (bob, "bob")):
        page.locator("#join-form input[name=username]").fill(name)
        page.get_by_role("button", name="Join").click()
        page.get_by_test_id("room").filter(has_text="lobby").wait_for(timeout=DEADLINE_MS)
    log_line(alice, "bob joined lobby").wait_for(timeout=DEADLINE_MS)

    # A room line and a broadcast cross from chat-1 to chat-2; markup stays text.
    alice.locator("#message-form input[name=text]").fill("<b>hi</b> from chat-1")
    alice.get_by_role("button", name="Send").click()
    log_line(bob, "alice: <b>hi</b> from chat-1").wait_for(timeout=DEADLINE_MS)
    assert bob.get_by_test_id("log").locator("b").count() == 0
    bob.locator("#broadcast-form input[name=text]").fill("everyone, from chat-2")
    bob.get_by_role("button", name="Broadcast").click()
    log_line(alice, "to everyone: everyone, from chat-2").wait_for(timeout=DEADLINE_MS)
