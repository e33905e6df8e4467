"""Chapter 05's page in headless Chromium, offline: log in, watch a report's progress, see the dashboard."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.browser

DEADLINE_MS = 10_000


def log_in(page, name):
    page.locator("#login-form input[name=name]").fill(name)
    page.get_by_role("button", name="Log in").click()
    page.get_by_test_id("user").filter(has_text=re.compile(f"^{name}$")).wait_for(timeout=DEADLINE_MS)


def test_page_shows_its_users_progress_bar_and_the_dashboard(start_taskboard, open_page):
    """In the browser, the dashboard shows before login; a report's bar moves to done for its user only."""
    board = start_taskboard()
    ann = open_page(board.webs[0].url + "/", status="logged out")
    bob = open_page(board.webs[1].url + "/", status="logged out")
    # The dashboard's namespace needs no token: its figures arrive before anyone logs in, on the
    # page's one connection (the tasks' namespace shares its Manager).
    ann.get_by_test_id("figure").filter(has_text="from celery beat").wait_for(timeout=DEADLINE_MS)
    assert ann.evaluate("dashboard.io === socket.io && !socket.connected")
    log_in(ann, "ann")
    log_in(bob, "bob")

    ann.locator("#start-form input[name=steps]").fill("5")
    ann.get_by_role("button", name="Build a report").click()
    bar = ann.get_by_test_id("tasks").locator("progress")
    # The bar moves through the steps (20, 40, ...), not straight from empty to full.
    ann.wait_for_function(
        "() => { const b = document.querySelector('#tasks progress'); "
        "return b && b.value > 0 && b.value < 100; }",
        timeout=DEADLINE_MS,
    )
    ann.get_by_test_id("tasks").filter(has_text="done: a report in 5 steps").wait_for(timeout=DEADLINE_MS)
    assert bar.evaluate("bar => bar.value") == 100

    # A wifi blip mid-task: the page reconnects with a new sid, and its bar still reaches done.
    # 20 steps (4 s): the page is back well before the end. Events sent while it is away are
    # lost (the queue keeps nothing), so a result sent in that gap would be too.
    ann.locator("#start-form input[name=steps]").fill("20")
    ann.get_by_role("button", name="Build a report").click()
    ann.get_by_test_id("tasks").locator("li").nth(0).filter(has_text="% ").wait_for(timeout=DEADLINE_MS)
    old_sid = ann.evaluate("socket.id")
    ann.get_by_role("button", name="Drop the connection").click()
    ann.wait_for_function("old => socket.connected && socket.id !== old", arg=old_sid, timeout=DEADLINE_MS)
    ann.get_by_test_id("tasks").filter(has_text="done: a report in 20 steps").wait_for(timeout=DEADLINE_MS)

    # One producer, seen on both instances; bob never saw ann's task.
    for page in (ann, bob):
        page.get_by_test_id("figure").filter(has_text="from celery beat").wait_for(timeout=DEADLINE_MS)
    assert bob.get_by_test_id("tasks").locator("li").count() == 0
