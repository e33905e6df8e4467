"""Chapter 01 against its unguarded twin: the same hostile client, each side with its expected outcome.

The twin is the chapter with its error handler, its Engine.IO message guard and its WSGI edge
taken off. tests/test_hardening.py sends these and more to every chapter; here the same five
run against the twin too, to show what each guard is there for.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests
import socketio

from lab.apps import start_app
from lab.clients import RecordingClient
from lab.processes import Service, wait_until
from lab.raw import PollingSession, RawWebSocket

CHAPTER = "chapters/01_basic_chat/app.py"
TWIN = "antipatterns/01_unguarded_handler.py"
both_sides = pytest.mark.parametrize(
    ("script", "guarded"), [(CHAPTER, True), (TWIN, False)], ids=["chapter", "unguarded-twin"]
)
LEFT_WITHIN = 3.0  # seconds; the twin's ghost would leave only at the ping timeout, about 45 s


@pytest.fixture
def chat(bench, clients) -> Callable[[str], tuple[Service, RecordingClient]]:
    """One app and a bystander in room `lobby`."""

    def start(script: str) -> tuple[Service, RecordingClient]:
        app = start_app(bench, script)
        bystander = clients("bystander").connect(app.url)
        assert bystander.call("join", {"room": "lobby", "name": "bystander"})["ok"]
        return app, bystander

    return start


def garbage_client_in_lobby(app: Service) -> RawWebSocket:
    """A raw WebSocket past the handshake that has joined `lobby` as "garbage"."""
    ws = RawWebSocket(app.url)
    ws.join("lobby", "garbage")
    return ws


def count_in_log(app: Service, text: str) -> int:
    return app.log_text().count(text)


@both_sides
def test_an_event_with_two_arguments(chat, clients, script, guarded):
    """Two arguments: the chapter answers with a reason and one line; the twin, no ack and a traceback."""
    app, _ = chat(script)
    hostile = clients("hostile").connect(app.url)
    two_arguments = ({"room": "lobby", "name": "x"}, {"extra": True})

    if guarded:
        reason = "send one object, not 2 arguments"
        assert hostile.call("join", two_arguments) == {"ok": False, "reason": reason}
        [refused] = [line for line in app.log_text().splitlines() if "refused 'join' from" in line]
        assert f"from {hostile.sio.get_sid()}: TypeError: on_join() takes" in refused
        assert "Traceback" not in app.log_text()
    else:
        # expected: a failed ack and an `error` event; actual: the call raises, nothing comes back.
        with pytest.raises(socketio.exceptions.TimeoutError):
            hostile.call("join", two_arguments, timeout=1)
        raised = "TypeError: on_join() takes from 0 to 1 positional arguments but 2 were given"
        wait_until(lambda: raised in app.log_text(), timeout=5, what="the TypeError in the log")
        assert count_in_log(app, "Traceback") == 1
        assert hostile.received("error") == []


@both_sides
def test_twenty_undecodable_frames(chat, script, guarded):
    """20 frames of bad JSON: the chapter logs a line and closes; the twin logs 20 tracebacks, stays open."""
    app, bystander = chat(script)
    left = lambda d: d["text"] == "garbage left lobby"  # noqa: E731
    with garbage_client_in_lobby(app) as ws:
        ws.send(*['42["join"'] * 20)
        if guarded:
            bystander.wait_for_event("system", left, timeout=LEFT_WITHIN)
            assert count_in_log(app, "malformed packet") == 1
            assert "Traceback" not in app.log_text()
        else:
            # expected: one log line and the connection closed; actual: a traceback per frame.
            wait_until(
                lambda: count_in_log(app, "message handler error") == 20,
                timeout=5,
                what="20 'message handler error' tracebacks",
            )
            assert count_in_log(app, "Traceback") == 20
            # The connection is still open, and still in the room: it can send the next frame.
            ws.send('42["message",{"room":"lobby","text":"still here"}]')
            bystander.wait_for_event("message", lambda d: d["text"] == "still here")


@both_sides
def test_a_frame_that_is_not_engine_io(chat, script, guarded):
    """`zz` on a WebSocket: the chapter's room hears the sender leave at once; the twin's keeps a ghost."""
    app, bystander = chat(script)
    with garbage_client_in_lobby(app) as ws:
        ws.send("zz")
        left = lambda d: d["text"] == "garbage left lobby"  # noqa: E731
        if guarded:
            bystander.wait_for_event("system", left, timeout=LEFT_WITHIN)
            assert count_in_log(app, "malformed packet") == 1
            assert "Traceback" not in app.log_text()
        else:
            # expected: "garbage left lobby" at once; actual: its session outlives its socket.
            with pytest.raises(AssertionError, match="timed out"):
                bystander.wait_for_event("system", left, timeout=LEFT_WITHIN)
            # The socket died on python-engineio's ValueError, which the WSGI server logged.
            assert "ValueError" in app.log_text()
            assert count_in_log(app, "Traceback") == 1


@both_sides
def test_garbage_in_a_polling_post(chat, script, guarded):
    """A POST of `zz`: the chapter answers 400 with a reason; the twin, 200 and a traceback per POST."""
    app, _ = chat(script)
    session = PollingSession(app.url)

    answers = [session.post(b"zz") for _ in range(3)]
    if guarded:
        refused = (400, "malformed or oversized packet: connection closed")
        assert [(a.status_code, a.text) for a in answers] == [refused] * 3
        assert count_in_log(app, "malformed packet") == 1
        assert "Traceback" not in app.log_text()
    else:
        # expected: 400 and one log line; actual: python-engineio logs each one and answers 200.
        assert [(a.status_code, a.text) for a in answers] == [(200, "OK")] * 3
        assert count_in_log(app, "post request handler error") == 3
        assert count_in_log(app, "Traceback") == 3


@both_sides
def test_a_host_name_it_does_not_trust(bench, script, guarded):
    """A page under an untrusted Host (DNS rebinding): the chapter answers 400; the twin serves it."""
    app = start_app(bench, script)
    port = app.url.rsplit(":", 1)[1]
    answer = requests.get(app.url + "/", headers={"Host": f"evil.example:{port}"}, timeout=5)
    if guarded:
        assert (answer.status_code, answer.text) == (400, "untrusted host: add it to TRUSTED_HOSTS")
    else:
        # expected: 400; actual: the page, to any host name that resolves to this address.
        assert answer.status_code == 200
