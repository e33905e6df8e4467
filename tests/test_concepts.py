"""What docs/concepts.md says of Flask's session, socketio.run() and socketio.sleep(), on real servers.

Each app is a process (tests/concepts/), each client a real python-socketio client.
"""

from __future__ import annotations

import contextlib

import pytest
import requests
import socketio

from lab.apps import healthz, start_app
from tests.chapter02.test_async_modes import BLOCK_SECONDS, PING_BOUND, UNLIMITED, pings_while

SESSION_APP = "tests/concepts/session_app.py"
RUN_EVENTLET = "chapters/02_async_modes/run_eventlet.py"
APP_RUN = "tests/concepts/app_run.py"
SOCKETIO_SLEEP = "tests/concepts/socketio_sleep.py"


def page(stack: contextlib.ExitStack, browser: requests.Session, url: str) -> socketio.SimpleClient:
    """A new Socket.IO connection that sends the browser's cookie, as a page's connect does.

    Long-polling, the transport a page opens with (closing a WebSocket takes python-socketio's
    client seconds); the session's copy comes from the request that opens the connection.
    """
    client = stack.enter_context(socketio.SimpleClient(http_session=browser))
    client.connect(url, transports=["polling"])
    return client


def color(client: socketio.SimpleClient) -> str:
    """The color the client's handler reads from the session."""
    return client.call("color", timeout=5)["color"]


def test_a_handler_sees_the_session_as_its_connection_opened_with_it(bench):
    """A handler's session is its connection's copy: HTTP's later writes miss it; its own stay in it."""
    app = start_app(bench, SESSION_APP)
    browser = requests.Session()  # keeps the session cookie, as a browser does
    with contextlib.ExitStack() as stack:
        assert browser.post(f"{app.url}/color", json={"color": "red"}, timeout=5).ok
        first = page(stack, browser, app.url)
        assert color(first) == "red"

        # An HTTP route changes the session after the connection opened: the cookie has it...
        assert browser.post(f"{app.url}/color", json={"color": "blue"}, timeout=5).ok
        assert browser.get(f"{app.url}/color", timeout=5).json() == {"color": "blue"}
        # expected: "blue" for the open connection too; actual: it still reads its copy
        assert color(first) == "red"
        # ...and a new connection, which brings the new cookie, sees it.
        assert color(page(stack, browser, app.url)) == "blue"

        # A handler changes the session: its connection keeps the change; HTTP and a new
        # connection (a page that reconnects) never see it.
        assert first.call("paint", "green", timeout=5) == {"color": "green"}
        assert color(first) == "green"
        assert browser.get(f"{app.url}/color", timeout=5).json() == {"color": "blue"}
        assert color(page(stack, browser, app.url)) == "blue"


@pytest.mark.parametrize(
    ("script", "server", "transport"),
    [
        pytest.param(RUN_EVENTLET, "eventlet.wsgi", "websocket", id="socketio.run"),
        pytest.param(APP_RUN, "Werkzeug/", "polling", id="app.run"),
    ],
)
def test_socketio_run_starts_the_modes_server_app_run_werkzeug(bench, clients, script, server, transport):
    """Eventlet mode: socketio.run() serves WebSocket on eventlet's server; app.run(), polling on Werkzeug."""
    app = start_app(bench, script)
    assert healthz(app.url)["server"].startswith(server)
    # The browser's way: long-polling, then the upgrade, tried before connect returns.
    client = clients("page").connect(app.url, transport=None)
    assert client.sio.transport() == transport
    assert client.call("ping") == {"ok": True}  # it works, on whichever transport it got
    refused = "RuntimeError: You need to use the eventlet server."
    assert (refused in app.log_text()) is (transport == "polling")


def test_socketio_sleep_waits_cooperatively_without_monkey_patching(bench, clients):
    """Unpatched gevent: while a client's handler waits in socketio.sleep, another's pings come back fast."""
    app = start_app(bench, SOCKETIO_SLEEP, env=UNLIMITED)
    a, b = clients("a").connect(app.url), clients("b").connect(app.url)
    took, round_trips = pings_while(a, "slow_io", b)
    assert took >= BLOCK_SECONDS * 0.95 and len(round_trips) >= 10, (took, round_trips)
    # None of B's pings waited for A's handler. With time.sleep in its place, one waits out the
    # whole second: tests/chapter02/test_async_modes.py::test_antipattern_stalls_every_client.
    assert max(round_trips) < PING_BOUND, f"slowest ping took {max(round_trips):.3f}s"
