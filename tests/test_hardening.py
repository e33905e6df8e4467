"""Every chapter against a client that is not its page: bad calls get a reason, and harm no one else.

A python-socketio client can send what the chapters' pages never do: an event with two
arguments, a sid as a room name, an event named `connect` or `disconnect`. Each test sends
one kind and checks three things: the sender gets a reason (an `error` event and a
failed ack), a bystander in the same room goes on chatting as before, and the log holds
one line per refused event, never a traceback.
"""

from __future__ import annotations

import sys
import time

import pytest
import requests
import socketio

from lab.apps import healthz, start_app
from lab.clients import TRANSPORTS
from lab.processes import REPO_ROOT, wait_until
from lab.raw import PollingSession, RawWebSocket
from lab.redis_server import start_redis

# Each chapter's app (and chapter 03's twins, which carry the same guards), and whether it needs Redis.
APPS = {
    "01": ("chapters/01_basic_chat/app.py", False),
    "02-threading": ("chapters/02_async_modes/run_threading.py", False),
    "02-gevent": ("chapters/02_async_modes/run_gevent.py", False),
    "02-eventlet": ("chapters/02_async_modes/run_eventlet.py", False),
    "03": ("chapters/03_redis_scaling/app.py", True),
    "03-no-queue": ("antipatterns/03_no_message_queue.py", True),
    "03-counter-in-memory": ("antipatterns/03_counter_in_process_memory.py", True),
    "04": ("chapters/04_nginx_lb/app.py", True),
}
every_app = pytest.mark.parametrize("script", [pytest.param(s, id=i) for i, (s, _) in APPS.items()])
NEEDS_REDIS = {script for script, redis in APPS.values() if redis}
# Apps whose /healthz counts the users online in Redis (the in-memory twin counts per process).
COUNTS_IN_REDIS = {
    "chapters/03_redis_scaling/app.py",
    "antipatterns/03_no_message_queue.py",
    "chapters/04_nginx_lb/app.py",
}
# Apps with POST /notify, whose NOTIFY_TOKEN production requires too.
HAS_NOTIFY = {
    "chapters/03_redis_scaling/app.py",
    "antipatterns/03_no_message_queue.py",
    "antipatterns/03_counter_in_process_memory.py",
}
MAX_EVENT_BYTES = 16 * 1024


@pytest.fixture
def chat(bench, clients):
    """One app, a bystander in room `lobby`, and a hostile client connected beside it."""

    def start(script: str, env: dict[str, str] | None = None):
        env = dict(env or {})
        if script in NEEDS_REDIS:
            env["REDIS_URL"] = start_redis(bench).url
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
    hostile.emit("connect")  # refused: it is connected already
    if script in COUNTS_IN_REDIS:
        assert healthz(app.url)["online"] == 2

    # The hostile client is still in the room, and nobody heard it leave.
    assert hostile.call("message", {"room": "lobby", "text": "still here"}) == {"ok": True}
    bystander.wait_for_event("message", lambda d: d["text"] == "still here")
    still_chats(bystander, "after the forged events")
    assert not [d for d in bystander.received("system") if "left" in d["text"]]
    assert "Traceback" not in app.log_text()


def malformed_lines(app) -> list[str]:
    return [line for line in app.log_text().splitlines() if "malformed packet" in line]


@every_app
def test_a_flood_of_events_is_refused_beyond_the_rate_limit(chat, script):
    """Past its budget a connection's events get a reason; the budget refills; nobody else is slowed."""
    app, bystander, hostile = chat(script, env={"EVENTS_PER_SECOND": "5"})
    assert hostile.call("join", {"room": "lobby", "name": "hostile"})["ok"]

    started = time.monotonic()
    replies = [hostile.call("message", {"room": "lobby", "text": f"flood {i}"}) for i in range(30)]
    elapsed = time.monotonic() - started
    refused = {"ok": False, "reason": "too many events: at most 5 a second"}
    accepted = replies.count({"ok": True})
    assert accepted + replies.count(refused) == len(replies), replies
    # A burst of twice the rate (10, the join took one), then 5 a second.
    assert 5 <= accepted <= 10 + 5 * elapsed, (accepted, elapsed)
    hostile.wait_for_event("error", lambda d: d == {"event": "message", "reason": refused["reason"]})

    still_chats(bystander, "during the flood")  # the bystander's budget is its own
    # The hostile client's own budget refills, at 5 a second.
    accepted_again = lambda: hostile.call("message", {"room": "lobby", "text": "later"}) == {"ok": True}  # noqa: E731
    wait_until(accepted_again, timeout=5, what="the budget to refill", interval=0.1)
    assert "Traceback" not in app.log_text()


@every_app
def test_a_connection_can_be_in_at_most_ten_rooms(chat, script):
    """The eleventh room is refused with a reason; leaving one makes room for it."""
    app, bystander, hostile = chat(script)
    for i in range(10):
        assert hostile.call("join", {"room": f"room-{i}", "name": "hostile"})["ok"]
    full = {"ok": False, "reason": "you are in 10 rooms already: leave one first"}
    assert hostile.call("join", {"room": "room-10", "name": "hostile"}) == full
    assert hostile.call("join", {"room": "room-3", "name": "hostile"})["ok"]  # one it is in already
    assert hostile.call("leave", {"room": "room-0"})["ok"]
    assert hostile.call("join", {"room": "room-10", "name": "hostile"})["ok"]
    still_chats(bystander, "after the rooms")


@every_app
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_event_over_the_size_limit_closes_its_connection_only(chat, clients, script, transport):
    """Over 16 KiB the sender's connection closes; the room hears it left at once; one log line at most."""
    app, bystander, _ = chat(script)
    big = clients("big").connect(app.url, transport=transport)
    assert big.call("join", {"room": "lobby", "name": "big"})["ok"]

    big.emit("message", {"room": "lobby", "text": "x" * MAX_EVENT_BYTES})
    big.wait_for("its connection to close", lambda c: bool(c.received("disconnect")))
    bystander.wait_for_event("system", lambda d: d["text"] == "big left lobby", timeout=3)
    still_chats(bystander, "after the big one")
    assert "Traceback" not in app.log_text()
    if transport == "polling":  # a POST: the app's own check, one line
        [line] = malformed_lines(app)
        assert "bytes is more than 16384" in line
    else:  # a WebSocket message: python-engineio's own check, silent
        assert malformed_lines(app) == []


GARBAGE = {
    "bad-json": '42["join"',  # a Socket.IO packet python-socketio cannot decode
    "list-as-name": '42[["disconnect"],{}]',  # python-socketio would crash in the event's thread
    "not-engine-io": "zz",  # not even an Engine.IO packet: python-engineio drops the socket
}


@every_app
@pytest.mark.parametrize("first", GARBAGE.values(), ids=GARBAGE.keys())
def test_protocol_garbage_costs_one_log_line_and_the_connection(chat, script, first):
    """100 garbage frames on one connection: one log line, the connection closed, its rooms left at once."""
    app, bystander, _ = chat(script)
    with RawWebSocket(app.url) as ws:
        ws.join("lobby", "garbage")
        # In one write: all 100 arrive before the server can close the connection for the first.
        ws.send(first, *[GARBAGE["bad-json"]] * 99)
        ws.wait_dropped()
    # At once, not after the ping timeout (about 45 s): no ghost in the room.
    bystander.wait_for_event("system", lambda d: d["text"] == "garbage left lobby", timeout=3)
    still_chats(bystander, "after the garbage")
    assert "Traceback" not in app.log_text()
    assert len(malformed_lines(app)) == 1, malformed_lines(app)


@every_app
def test_garbage_in_a_polling_post_gets_a_400_and_closes_the_session(chat, script):
    """A POST whose body is not Engine.IO: 400 with a reason, the session told to go, one log line."""
    app, bystander, _ = chat(script)
    session = PollingSession(app.url)
    for _ in range(3):
        answer = session.post(b"zz")
        assert (answer.status_code, answer.text) == (400, "malformed or oversized packet: connection closed")
    assert "41" in session.get().text.split("\x1e")  # Socket.IO's disconnect
    still_chats(bystander, "after the bad posts")
    assert "Traceback" not in app.log_text()
    assert len(malformed_lines(app)) == 1, malformed_lines(app)


@every_app
def test_only_the_apps_own_and_allowed_origins_and_hosts_get_in(chat, script):
    """A foreign Origin is refused, the own page and ALLOWED_ORIGINS are not; so is a foreign Host."""
    app, _, _ = chat(script, env={"ALLOWED_ORIGINS": "http://allowed.example"})
    handshake = f"{app.url}/socket.io/?EIO=4&transport=polling"
    port = app.url.rsplit(":", 1)[1]

    for origin, status in [(app.url, 200), ("http://allowed.example", 200), ("http://evil.example", 400)]:
        answer = requests.get(handshake, headers={"Origin": origin}, timeout=5)
        assert answer.status_code == status, (origin, answer.text)
    foreign = requests.get(handshake, headers={"Origin": "http://evil.example"}, timeout=5)
    assert foreign.text == '"Not an accepted origin."'
    assert "http://evil.example is not an accepted origin." in app.log_text()

    # DNS rebinding: evil.example resolves to 127.0.0.1, so the page's Origin matches its Host.
    rebound = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
    for url in (app.url + "/", handshake):
        answer = requests.get(url, headers=rebound, timeout=5)
        assert (answer.status_code, answer.text) == (400, "untrusted host: add it to TRUSTED_HOSTS")
    # Health checks come by address, or with no Host at all: /healthz answers any.
    assert requests.get(app.url + "/healthz", headers=rebound, timeout=5).status_code == 200
    # The host names it trusts by default: the page works under either.
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        assert requests.get(app.url + "/", headers={"Host": host}, timeout=5).status_code == 200


@every_app
def test_production_refuses_to_start_without_its_secrets(bench, script):
    """PRODUCTION=1 with no SECRET_KEY (or, where there is /notify, no NOTIFY_TOKEN): exit, naming it."""
    argv = [sys.executable, str(REPO_ROOT / script)]
    env = {"PRODUCTION": "1", "SECRET_KEY": "", "NOTIFY_TOKEN": "", "REDIS_URL": "redis://127.0.0.1:1"}
    ran = bench.run("no-secret", argv, env=env)
    assert ran.returncode != 0
    assert "SECRET_KEY must be set when PRODUCTION=1" in ran.stdout, ran.stdout
    if script in HAS_NOTIFY:
        ran = bench.run("no-token", argv, env={**env, "SECRET_KEY": "s3cret"})
        assert ran.returncode != 0
        assert "NOTIFY_TOKEN must be set when PRODUCTION=1" in ran.stdout, ran.stdout


@every_app
def test_a_reconnecting_client_is_in_its_rooms_before_its_first_event(chat, clients, script):
    """Rooms named in the connect's `auth` are rejoined at once: the first event, a message, is accepted."""
    app, bystander, _ = chat(script)
    back = clients("back").connect(app.url, auth={"name": "back", "rooms": ["lobby"]})
    # No join: its first event is a message, like one a page buffered while offline.
    assert back.call("message", {"room": "lobby", "text": "typed while offline"}) == {"ok": True}
    bystander.wait_for_event("system", lambda d: d["text"] == "back is back in lobby")
    bystander.wait_for_event("message", lambda d: d["text"] == "typed while offline")

    # A bad `auth` refuses the connection, with its reason.
    refused = socketio.Client(reconnection=False)
    reasons = []
    refused.on("connect_error", reasons.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        refused.connect(app.url, transports=["polling"], auth={"name": "x", "rooms": "lobby"})
    assert reasons == [{"message": "auth: 'rooms' must be a list of at most 10 rooms"}]
    assert "Traceback" not in app.log_text()
