"""Every chapter against a client that is not its page: bad calls get a reason, and harm no one else.

A python-socketio client can send what the chapters' pages never do: an event with two
arguments, a sid as a room name, an event named `connect` or `disconnect`. Each test sends
one kind and checks three things: the sender gets a reason (an `error` event and a
failed ack), a bystander in the same room goes on chatting as before, and the log holds
one line per refused event, never a traceback.
"""

from __future__ import annotations

import pytest

from lab.apps import healthz, start_app
from lab.redis_server import start_redis

# Each chapter's app (and chapter 03's twins, which carry the same guards), and whether it needs Redis.
APPS = {
    "01": ("chapters/01_basic_chat/app.py", False),
    "02-threading": ("chapters/02_async_modes/run_threading.py", False),
    "02-gevent": ("chapters/02_async_modes/run_gevent.py", False),
    "02-eventlet": ("chapters/02_async_modes/run_eventlet.py", False),
    "03": ("chapters/03_redis_scaling/app.py", True),
    "03-no-queue": ("antipatterns/03_no_message_queue.py", False),
    "03-counter-in-memory": ("antipatterns/03_counter_in_process_memory.py", True),
    "04": ("chapters/04_nginx_lb/app.py", True),
}
every_app = pytest.mark.parametrize("script", [pytest.param(s, id=i) for i, (s, _) in APPS.items()])
NEEDS_REDIS = {script for script, redis in APPS.values() if redis}
# Apps whose /healthz counts the users online in Redis (the in-memory twin counts per process).
COUNTS_IN_REDIS = {"chapters/03_redis_scaling/app.py", "chapters/04_nginx_lb/app.py"}


@pytest.fixture
def chat(bench, clients):
    """One app, a bystander in room `lobby`, and a hostile client connected beside it."""

    def start(script: str):
        env = {"REDIS_URL": start_redis(bench).url} if script in NEEDS_REDIS else {}
        app = start_app(bench, script, env=env)
        bystander = clients("bystander").connect(app.url)
        assert bystander.call("join", {"room": "lobby", "name": "bystander"})["ok"]
        hostile = clients("hostile").connect(app.url)
        return app, bystander, hostile

    return start


def still_chats(bystander, marker: str) -> None:
    """The bystander's own line comes back to it: its room and its connection work as before."""
    assert bystander.call("message", {"room": "lobby", "text": marker}) == {"ok": True}
    bystander.wait_for_event("message", lambda d: d["text"] == marker)


def one_line_per_refusal(app, event: str, times: int) -> None:
    log = app.log_text()
    assert "Traceback" not in log
    assert log.count(f"refused {event!r} from") == times, log[-2000:]


@every_app
def test_an_event_with_extra_arguments_gets_a_reason_not_a_traceback(chat, script):
    """An event with two arguments gets an `error` event and a failed ack; the log gets one line."""
    app, bystander, hostile = chat(script)

    reason = "send one object, not 2 arguments"
    two_arguments = ({"room": "lobby", "name": "x"}, {"extra": True})
    assert hostile.call("join", two_arguments) == {"ok": False, "reason": reason}
    hostile.wait_for_event("error", lambda d: d == {"event": "join", "reason": reason})
    one_line_per_refusal(app, "join", 1)
    still_chats(bystander, "after the extra argument")
    # Nobody joined: the bystander heard no one come in.
    assert [d["text"] for d in bystander.received("system")] == ["bystander joined lobby"]


@every_app
def test_a_client_reaches_only_the_rooms_it_named_never_a_sid(chat, script):
    """A sid as a room name reaches nobody: not the client's own room, not another client's."""
    app, bystander, hostile = chat(script)
    own, other = hostile.sio.get_sid(), bystander.sio.get_sid()

    # Its own sid room is not a chat room it can leave or write to; neither is anyone else's.
    assert hostile.call("leave", {"room": own}) == {"ok": False, "reason": f"you are not in room '{own}'"}
    for room in (own, other):
        refused = {"ok": False, "reason": f"join room '{room}' before writing to it"}
        assert hostile.call("message", {"room": room, "text": "psst"}) == refused
    # It may name a chat room after a sid; that room is its own, not the bystander's connection.
    assert hostile.call("join", {"room": other, "name": "hostile"})["ok"]
    assert hostile.call("message", {"room": other, "text": "psst"}) == {"ok": True}

    still_chats(bystander, "after the sid rooms")  # the barrier: anything sent to it came before
    assert "psst" not in {d["text"] for d in bystander.received("message")}
    assert [d["text"] for d in bystander.received("system")] == ["bystander joined lobby"]
    assert "Traceback" not in app.log_text()


@every_app
def test_events_named_connect_or_disconnect_from_a_client_change_nothing(chat, script):
    """A client's own `disconnect` or `connect` event is refused: nobody is told it left, no count drops."""
    app, bystander, hostile = chat(script)
    assert hostile.call("join", {"room": "lobby", "name": "hostile"})["ok"]

    refused = {"ok": False, "reason": "a client cannot send 'disconnect'; close the connection instead"}
    assert hostile.call("disconnect") == refused
    hostile.emit("connect")  # answered only where the app has a connect handler (03, 04)
    if script in COUNTS_IN_REDIS:
        assert healthz(app.url)["online"] == 2

    # The hostile client is still in the room, and nobody heard it leave.
    assert hostile.call("message", {"room": "lobby", "text": "still here"}) == {"ok": True}
    bystander.wait_for_event("message", lambda d: d["text"] == "still here")
    still_chats(bystander, "after the forged events")
    assert not [d for d in bystander.received("system") if "left" in d["text"]]
    assert "Traceback" not in app.log_text()
