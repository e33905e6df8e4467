"""Each app's page in headless Chromium, against a network and an origin it does not choose.

What is typed while the server is down reaches the room once the page reconnects: the page
names its room in the connect's `auth`, so the server has it back in the room before it
handles the messages the Socket.IO client buffered. And a page served from another origin
cannot connect: the browser shows the CORS error a developer would search for.
"""

from __future__ import annotations

import re

import pytest

from lab.apps import start_app
from lab.browser import log_line
from lab.clients import RecordingClient
from lab.redis_server import start_redis

pytestmark = pytest.mark.browser

DEADLINE_MS = 10_000
# Each app's page, served by the app that serves it, and whether that app needs Redis.
PAGES = {
    "01": ("chapters/01_basic_chat/app.py", False),
    "02": ("chapters/02_async_modes/run_gevent.py", False),
    "03": ("chapters/03_redis_scaling/app.py", True),
    "04": ("chapters/04_nginx_lb/app.py", True),
    "05": ("chapters/05_celery/app.py", True),
    "06": ("chapters/06_delivery_guarantees/app.py", True),
    "recipe": ("recipes/auth_on_connect/app.py", False),
}
every_page = pytest.mark.parametrize("script, needs_redis", PAGES.values(), ids=PAGES.keys())
# Pages with no chat: a reconnect brings them back into their user's room, from the token, as
# tests/chapter05/test_page.py and tests/recipes/test_auth_on_connect.py show in Chromium.
NO_CHAT = {"05", "recipe"}
NO_CHAT_REASON = "no chat to type into: the page is back in its user's room by its token (its own page tests)"
every_chat_page = pytest.mark.parametrize(
    "script, needs_redis",
    [
        pytest.param(*page, id=name, marks=pytest.mark.skipif(name in NO_CHAT, reason=NO_CHAT_REASON))
        for name, page in PAGES.items()
    ],
)


@every_chat_page
def test_what_is_typed_while_the_server_is_down_is_sent_when_the_page_is_back(
    bench, open_page, clients, script, needs_redis
):
    """A message typed while the server restarts is sent once the page is back, and its room echoes it."""
    env = {"REDIS_URL": start_redis(bench).url} if needs_redis else {}
    app = start_app(bench, script, env=env)
    page = open_page(app.url + "/")
    page.locator("#join-form input[name=username]").fill("alice")
    page.locator("#join-form input[name=room]").fill("lobby")
    page.get_by_role("button", name="Join").click()
    page.get_by_test_id("room").filter(has_text="lobby").wait_for(timeout=DEADLINE_MS)

    bench.stop(app)
    page.get_by_test_id("status").filter(has_text=re.compile("^disconnected$")).wait_for(timeout=DEADLINE_MS)
    page.locator("#message-form input[name=text]").fill("typed while offline")
    page.get_by_role("button", name="Send").click()  # the Socket.IO client buffers it
    app = bench.restart(app)

    # The page reconnects by itself (backoff up to 5 s) and its buffered message comes back to it.
    log_line(page, "alice: typed while offline").wait_for(timeout=2 * DEADLINE_MS)
    assert log_line(page, "refused").count() == 0
    bob: RecordingClient = clients("bob").connect(app.url)
    assert bob.call("join", {"room": "lobby", "name": "bob"})["ok"]
    # Chapter 06 stores a message under the id its sender gives it; the others ignore the id.
    assert bob.call("message", {"room": "lobby", "text": "welcome back", "id": "bob-1"})["ok"] is True
    log_line(page, "bob: welcome back").wait_for(timeout=DEADLINE_MS)


@every_page
def test_a_page_from_another_origin_is_refused(bench, browser, script, needs_redis):
    """A page on another origin cannot connect; the console shows the CORS block a developer searches for.

    The other origin is the app's own page under another name, http://localhost:<port>, trying
    to connect to http://127.0.0.1:<port>: both are on loopback, as a rebinding page or another
    local app would be. (A page from a public origin would not even reach the app: Chromium
    blocks a public page's requests to loopback on its own, its Local Network Access check.)
    """
    env = {"REDIS_URL": start_redis(bench).url} if needs_redis else {}
    app = start_app(bench, script, env=env)
    other_origin = app.url.replace("127.0.0.1", "localhost")
    context = browser.new_context()
    try:
        page = context.new_page()
        console: list[str] = []
        page.on("console", lambda message: console.append(message.text))
        page.goto(other_origin + "/")
        outcome = page.evaluate(
            """(url) => new Promise((settle) => {
                 const socket = io(url, { reconnection: false });
                 socket.on("connect", () => settle("connected"));
                 socket.on("connect_error", (err) => settle("refused: " + err.message));
               })""",
            app.url,
        )
        assert outcome == "refused: xhr poll error"
        blocked = f"from origin '{other_origin}' has been blocked by CORS policy"
        assert any(blocked in line for line in console), console
        assert f"{other_origin} is not an accepted origin." in app.log_text()
    finally:
        context.close()
