"""Every page a learner or an attendee opens, on a phone: headless Chromium's mobile emulation
at 375 x 667, a small phone's screen, as when a room opens the demo's address on its phones.

Each page is served by one instance of its app (with Redis where the app needs one), which is
all the page needs to draw itself; the control room by `python -m lab.serve 01`, the cheapest
demo to start.
"""

from __future__ import annotations

import pytest

from lab.apps import start_app
from lab.browser import log_line
from lab.chapters import CHAPTERS, Topology
from lab.redis_server import start_redis

pytestmark = pytest.mark.browser

DEADLINE_MS = 10_000
PHONE = {"viewport": {"width": 375, "height": 667}, "is_mobile": True, "has_touch": True}
# Each page, by the app that serves it: every chapter's, and the recipe's.
PAGES = {number: chapter.correct for number, chapter in CHAPTERS.items()}
PAGES["recipe"] = Topology("recipes/auth_on_connect/app.py")
# What a page's status says once it is ready: pages with a login start logged out.
READY = {"05": "logged out", "recipe": "logged out"}
# Where each page sends from, and what it says when it cannot send yet, in its own words.
TOO_EARLY = {
    "01": ("#message-form", "Send", "not sent: join a room first"),
    "02": ("#message-form", "Send", "not sent: join a room first"),
    "03": ("#message-form", "Send", "not sent: join a room first"),
    "04": ("#message-form", "Send", "not sent: join a room first"),
    "05": ("#start-form", "Build a report", "not started: log in first"),
    "06": ("#message-form", "Send", "not sent: join a room first"),
    "recipe": ("#notice-form", "Notify me", "not sent: log in first"),
}


def open_on_a_phone(bench, open_page, name: str):
    """Start the app that serves page `name` and open its page on a phone."""
    app = PAGES[name]
    env = {"REDIS_URL": start_redis(bench).url} if app.needs_redis else {}
    url = start_app(bench, app.script, env=app.env | env).url
    return open_page(url + "/", status=READY.get(name, "connected"), **PHONE)


def out_of_reach(page, width: int) -> list[str]:
    """The page's controls (inputs, buttons, links, frames) hidden or not wholly within `width`."""
    controls = page.locator("input, button, a[href], iframe").all()
    assert controls
    return [
        control.evaluate("node => node.outerHTML.slice(0, 120)")
        for control in controls
        if not control.is_visible()
        or (box := control.bounding_box())["x"] < 0
        or box["x"] + box["width"] > width
    ]


@pytest.mark.parametrize("name", [*PAGES, "control-room"])
def test_every_page_fits_a_phone_with_every_control_in_reach(bench, open_page, serving, name):
    """On a 375 px phone, the page is laid out at its width, never scrolls sideways, and shows every control.

    Mobile emulation (is_mobile, has_touch) at 375 x 667; a control is an input, a button, a
    link or a frame, and it shows when it is visible and wholly within the screen's width.
    """
    if name == "control-room":
        page = open_page(serving("01").control_room() + "/", status=None, **PHONE)
        # One refresh draws every side at once; the title it writes first names the chapter.
        page.get_by_test_id("title").filter(has_text="Chapter 01").wait_for(timeout=DEADLINE_MS)
    else:
        page = open_on_a_phone(bench, open_page, name)

    # Laid out at the phone's width. A mobile browser lays a page out wider and shrinks it to
    # fit when it has no <meta name="viewport"> (980 px) or content wider than the screen.
    width = PHONE["viewport"]["width"]
    assert page.evaluate("window.innerWidth") == width
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert out_of_reach(page, width) == []


@pytest.mark.parametrize("name", TOO_EARLY)
def test_a_message_sent_too_early_shows_why_and_keeps_its_text(bench, open_page, name):
    """A message sent before joining a room (or logging in) shows why in the page's log, and keeps its text.

    On a phone, as a room meets it: the Send button tapped before the page has joined a
    room, or on the pages with a login, before logging in.
    """
    page = open_on_a_phone(bench, open_page, name)
    form, button, reason = TOO_EARLY[name]
    typed = page.locator(f"{form} input[name=text]")
    if typed.count():  # chapter 05 starts a report from numbers, which stay as they are
        typed.fill("hello from a phone")
    page.locator(form).get_by_role("button", name=button).tap()

    log_line(page, reason).wait_for(timeout=DEADLINE_MS)
    if typed.count():
        assert typed.input_value() == "hello from a phone"
