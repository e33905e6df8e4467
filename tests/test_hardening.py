"""Every app against a client that is not its page: bad calls get a reason, and harm no one else.

A python-socketio client can send what the apps' pages never do: an event with two
arguments, a sid as a room name, an event named `connect` or `disconnect`. Each test sends
one kind and checks three things: the sender gets a reason (an `error` event and a
failed ack), a bystander goes on working as before, and the log holds one line per refused
event, never a traceback.

The apps, and how a client and a bystander get into each, are in tests/hostile_apps.py.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import pytest
import requests
import socketio
from flask_socketio_guard import DEFAULTS

from lab.apps import healthz, start_app
from lab.clients import TRANSPORTS, RecordingClient, RefusableClient
from lab.processes import REPO_ROOT, Service, wait_until
from lab.redis_server import start_redis
from tests.fuzz.wire import largest_frame
from tests.hostile_apps import APPS, ROOM, App, Door

MAX_EVENT_BYTES = 16 * 1024
FORGED_CONNECT = "a client cannot send 'connect'; it is connected already"
FORGED_DISCONNECT = "a client cannot send 'disconnect'; close the connection instead"


# -- each app, one running at a time ---------------------------------------------------------------

every_app = pytest.mark.parametrize("app", [pytest.param(a, id=i) for i, a in APPS.items()])
# The tests of rooms a client names, joins and leaves: the other apps are skipped, with the reason.
apps_with_named_rooms = pytest.mark.parametrize(
    "app",
    [
        pytest.param(a, id=i, marks=[pytest.mark.skip(reason=a.no_named_rooms)] if a.no_named_rooms else [])
        for i, a in APPS.items()
    ],
)


@dataclass
class Scene:
    """One running app, its door, a bystander in its room, and a hostile client connected beside it."""

    server: Service
    door: Door
    bystander: RecordingClient
    hostile: RecordingClient


@pytest.fixture
def scene(bench, clients):
    def start(app: App, env: dict[str, str] | None = None) -> Scene:
        env = dict(env or {})
        redis_url = start_redis(bench).url if app.redis else None
        if redis_url:
            env["REDIS_URL"] = redis_url
        server = start_app(bench, app.script, env=env)
        door = app.door(server.url, redis_url)
        bystander = door.enter(clients("bystander"), "bystander")
        hostile = door.connect(clients("hostile"), "hostile")
        return Scene(server, door, bystander, hostile)

    return start


def one_line_per_refusal(server: Service, event: str, times: int) -> None:
    log = server.log_text()
    assert "Traceback" not in log
    assert log.count(f"refused {event!r} from") == times, log[-2000:]


def malformed_lines(server: Service) -> list[str]:
    return [line for line in server.log_text().splitlines() if "malformed packet" in line]


# -- the tests ------------------------------------------------------------------------------------


@every_app
def test_an_event_with_extra_arguments_gets_a_reason_not_a_traceback(scene, app):
    """An event with two arguments gets an `error` event and a failed ack; the log gets one line."""
    s = scene(app)
    event, payload = s.door.probe

    reason = "send one object, not 2 arguments"
    assert s.hostile.call(event, (payload, {"extra": True})) == {"ok": False, "reason": reason}
    s.hostile.wait_for_event("error", lambda d: d == {"event": event, "reason": reason})
    one_line_per_refusal(s.server, event, 1)
    s.door.still_works(s.bystander, "bystander", "after the extra argument")
    s.door.ran_nothing(s.bystander, s.hostile)


@apps_with_named_rooms
def test_a_client_reaches_only_the_rooms_it_named_never_a_sid(scene, app):
    """A sid as a room name reaches nobody: not the client's own room, not another client's."""
    s = scene(app)
    hostile, bystander = s.hostile, s.bystander
    own, other = hostile.sio.get_sid(), bystander.sio.get_sid()

    # Its own sid room is not a chat room it can leave or write to; neither is anyone else's.
    assert hostile.call("leave", {"room": own}) == {"ok": False, "reason": f"you are not in room '{own}'"}
    for room in (own, other):
        refused = {"ok": False, "reason": f"join room '{room}' before writing to it"}
        assert hostile.call("message", s.door.message(room, "psst")) == refused
    # It may name a chat room after a sid; that room is its own, not the bystander's connection.
    assert hostile.call("join", {"room": other, "name": "hostile"})["ok"]
    assert hostile.call("message", s.door.message(other, "psst"))["ok"]

    s.door.still_works(bystander, "bystander", "after the sid rooms")  # the barrier: all before it came
    assert "psst" not in {d["text"] for d in bystander.received("message")}
    assert [d["text"] for d in bystander.received("system")] == ["bystander joined lobby"]
    assert "Traceback" not in s.server.log_text()


@every_app
def test_events_named_connect_or_disconnect_from_a_client_change_nothing(scene, app):
    """A client's own `disconnect` or `connect` event is refused: nobody is told it left, no count drops."""
    s = scene(app)
    s.door.join(s.hostile, "hostile")

    if app.handles_disconnect:
        assert s.hostile.call("disconnect") == {"ok": False, "reason": FORGED_DISCONNECT}
    else:
        s.hostile.emit("disconnect")  # no disconnect handler: python-socketio runs nothing
    # Forged as a real connect is handed it: an environ, and the bystander's `auth`, if it has any.
    forged_connect = ({}, s.door.auth("bystander"))
    assert s.hostile.call("connect", forged_connect) == {"ok": False, "reason": FORGED_CONNECT}
    if app.counts_online_in_redis:
        assert healthz(s.server.url)["online"] == 2

    # The hostile client is still itself, in its room; nobody heard it leave.
    s.door.still_works(s.hostile, "hostile", "still here")
    s.door.still_works(s.bystander, "bystander", "after the forged events")
    if s.door.names_rooms:  # both are in lobby
        assert "still here" in s.door.lines(s.bystander, "hostile")
        assert not [d for d in s.bystander.received("system") if "left" in d["text"]]
    else:  # the forged connect did not let it in as the bystander, into the bystander's room
        assert s.door.lines(s.hostile, "bystander") == []
    assert "Traceback" not in s.server.log_text()


@every_app
def test_a_flood_of_events_is_refused_beyond_the_rate_limit(scene, app):
    """Past its budget a connection's events get a reason; the budget refills; nobody else is slowed."""
    s = scene(app, env={"EVENTS_PER_SECOND": "5"})
    s.door.join(s.hostile, "hostile")
    event, payload, accepted_ack = s.door.cheap

    started = time.monotonic()
    replies = [s.hostile.call(event, payload) for _ in range(30)]
    elapsed = time.monotonic() - started
    refused = {"ok": False, "reason": "too many events: at most 5 a second"}
    accepted = replies.count(accepted_ack)
    assert accepted + replies.count(refused) == len(replies), replies
    # A burst of twice the rate (10; a join took one), then 5 a second.
    assert 5 <= accepted <= 10 + 5 * elapsed, (accepted, elapsed)
    s.hostile.wait_for_event("error", lambda d: d == {"event": event, "reason": refused["reason"]})

    s.door.still_works(s.bystander, "bystander", "during the flood")  # the bystander's budget is its own
    # The hostile client's own budget refills, at 5 a second.
    accepted_again = lambda: s.hostile.call(event, payload) == accepted_ack  # noqa: E731
    wait_until(accepted_again, timeout=5, what="the budget to refill", interval=0.1)
    assert "Traceback" not in s.server.log_text()
    # Without EVENTS_PER_SECOND, the guard's budget is 20 a second (docs/hardening.md's default).
    assert DEFAULTS["SOCKETIO_GUARD_EVENTS_PER_SECOND"] == 20


@apps_with_named_rooms
def test_a_connection_can_be_in_at_most_ten_rooms(scene, app):
    """The eleventh room is refused with a reason; leaving one makes room for it."""
    s = scene(app)
    hostile = s.hostile
    for i in range(10):
        assert hostile.call("join", {"room": f"room-{i}", "name": "hostile"})["ok"]
    full = {"ok": False, "reason": "you are in 10 rooms already: leave one first"}
    assert hostile.call("join", {"room": "room-10", "name": "hostile"}) == full
    assert hostile.call("join", {"room": "room-3", "name": "hostile"})["ok"]  # one it is in already
    assert hostile.call("leave", {"room": "room-0"})["ok"]
    assert hostile.call("join", {"room": "room-10", "name": "hostile"})["ok"]
    s.door.still_works(s.bystander, "bystander", "after the rooms")


@every_app
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_event_over_the_size_limit_closes_its_connection_only(scene, clients, app, transport):
    """Over 16 KiB the sender's connection closes; it leaves its rooms at once; one log line at most."""
    s = scene(app)
    big = s.door.enter(clients("big"), "big", transport=transport)
    eio_sid = big.sio.eio.sid
    event, payload, _ = s.door.cheap

    big.emit(event, {**(payload or {}), "text": "x" * MAX_EVENT_BYTES})
    big.wait_for("its connection to close", lambda c: bool(c.received("disconnect")))
    s.door.left_at_once(s.bystander, "big", eio_sid, transport)
    s.door.still_works(s.bystander, "bystander", "after the big one")
    assert "Traceback" not in s.server.log_text()
    if transport == "polling":  # a POST: the guard's own check, one line
        [line] = malformed_lines(s.server)
        assert "bytes is more than 16384" in line
    else:  # a WebSocket message: python-engineio's own check, silent
        assert malformed_lines(s.server) == []


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_chapter_01s_longest_message_in_four_byte_characters_fits_under_the_size_limit(
    scene, clients, transport
):
    """500 four-byte characters, 12 bytes each in JSON: over 6,000 bytes, under 16 KiB; the room hears it."""
    s = scene(APPS["01"])
    writer = s.door.enter(clients("writer"), "writer", transport=transport)
    text = "\N{GRINNING FACE}" * 500  # MAX_TEXT in chapters/01_basic_chat/app.py; U+1F600 is 4 bytes in UTF-8

    # The arithmetic of docs/hardening.md, as python-socketio sends it: \ud83d\ude00 per character.
    assert 500 * 12 < largest_frame("message", ({"room": ROOM, "text": text},)) < MAX_EVENT_BYTES
    s.door.say(writer, "writer", text)
    s.bystander.wait_for("the 500 characters", lambda c: text in s.door.lines(c, "writer"))
    assert writer.sio.connected and "Traceback" not in s.server.log_text()
    assert malformed_lines(s.server) == []


GARBAGE = {
    "bad-json": '42["join"',  # a Socket.IO packet python-socketio cannot decode
    "list-as-name": '42[["disconnect"],{}]',  # python-socketio would crash in the event's thread
    "not-engine-io": "zz",  # not even an Engine.IO packet: python-engineio drops the socket
}


@every_app
@pytest.mark.parametrize("first", GARBAGE.values(), ids=GARBAGE.keys())
def test_protocol_garbage_costs_one_log_line_and_the_connection(scene, app, first):
    """100 garbage frames on one connection: one log line, the connection closed, its rooms left at once."""
    s = scene(app)
    with s.door.raw_websocket("garbage") as ws:
        s.door.join_raw(ws, "garbage")
        # In one write: all 100 arrive before the server can close the connection for the first.
        ws.send(first, *[GARBAGE["bad-json"]] * 99)
        ws.wait_dropped()
    # At once, not after the ping timeout (about 45 s): no ghost in its rooms.
    s.door.left_at_once(s.bystander, "garbage", ws.eio_sid, "websocket")
    s.door.still_works(s.bystander, "bystander", "after the garbage")
    assert "Traceback" not in s.server.log_text()
    assert len(malformed_lines(s.server)) == 1, malformed_lines(s.server)


@every_app
def test_garbage_in_a_polling_post_gets_a_400_and_closes_the_session(scene, app):
    """A POST whose body is not Engine.IO: 400 with a reason, the session told to go, one log line."""
    s = scene(app)
    session = s.door.polling_session("poster")
    for _ in range(3):
        answer = session.post(b"zz")
        assert (answer.status_code, answer.text) == (400, "malformed or oversized packet: connection closed")
    assert "41" in session.get().text.split("\x1e")  # Socket.IO's disconnect
    s.door.still_works(s.bystander, "bystander", "after the bad posts")
    assert "Traceback" not in s.server.log_text()
    assert len(malformed_lines(s.server)) == 1, malformed_lines(s.server)


@every_app
def test_only_the_apps_own_and_allowed_origins_and_hosts_get_in(scene, app):
    """A foreign Origin is refused, the own page and ALLOWED_ORIGINS are not; so is a foreign Host."""
    s = scene(app, env={"ALLOWED_ORIGINS": "http://allowed.example"})
    url = s.server.url
    handshake = f"{url}/socket.io/?EIO=4&transport=polling"
    port = url.rsplit(":", 1)[1]

    for origin, status in [(url, 200), ("http://allowed.example", 200), ("http://evil.example", 400)]:
        answer = requests.get(handshake, headers={"Origin": origin}, timeout=5)
        assert answer.status_code == status, (origin, answer.text)
    foreign = requests.get(handshake, headers={"Origin": "http://evil.example"}, timeout=5)
    assert foreign.text == '"Not an accepted origin."'
    assert "http://evil.example is not an accepted origin." in s.server.log_text()

    # DNS rebinding: evil.example resolves to 127.0.0.1, so the page's Origin matches its Host.
    rebound = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
    for page in (url + "/", handshake):
        answer = requests.get(page, headers=rebound, timeout=5)
        assert (answer.status_code, answer.text) == (400, "untrusted host: add it to TRUSTED_HOSTS")
    # Health checks come by address, or with no Host at all: /healthz answers any.
    assert requests.get(url + "/healthz", headers=rebound, timeout=5).status_code == 200
    # The host names it trusts by default: the page works under either.
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        assert requests.get(url + "/", headers={"Host": host}, timeout=5).status_code == 200


@every_app
def test_production_refuses_to_start_without_its_secrets(bench, app):
    """PRODUCTION=1 with no SECRET_KEY (or, where there is /notify, no NOTIFY_TOKEN): exit, naming it."""
    argv = [sys.executable, str(REPO_ROOT / app.script)]
    env = {"PRODUCTION": "1", "SECRET_KEY": "", "NOTIFY_TOKEN": "", "REDIS_URL": "redis://127.0.0.1:1"}
    ran = bench.run("no-secret", argv, env=env)
    assert ran.returncode != 0
    assert "SECRET_KEY must be set when PRODUCTION=1" in ran.stdout, ran.stdout
    if app.notify_token:
        ran = bench.run("no-token", argv, env={**env, "SECRET_KEY": "s3cret"})
        assert ran.returncode != 0
        assert "NOTIFY_TOKEN must be set when PRODUCTION=1" in ran.stdout, ran.stdout


@every_app
def test_a_reconnecting_client_is_in_its_rooms_before_its_first_event(scene, clients, app):
    """Rooms named in the connect's `auth`, or a user's from its token, are joined before its first event."""
    s = scene(app)
    back = clients("back")
    if s.door.names_rooms:
        back.connect(s.server.url, auth={"name": "back", "rooms": [ROOM]})
    else:
        s.door.connect(back, "back")
    # No join: its first event goes to its room, like one a page buffered while offline.
    s.door.still_works(back, "back", "typed while offline")
    if s.door.names_rooms:
        s.bystander.wait_for_event("system", lambda d: d["text"] == "back is back in lobby")
        s.bystander.wait_for_event("message", lambda d: d["text"] == "typed while offline")

    # A bad `auth` refuses the connection, with its reason.
    bad_auth, reason = s.door.bad_auth
    refused = RefusableClient(reconnection=False)
    reasons = []
    refused.on("connect_error", reasons.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        refused.connect(s.server.url, transports=["polling"], auth=bad_auth)
    assert reasons == [{"message": reason}]
    assert "Traceback" not in s.server.log_text()


# Each WSGI server the chapters run: Werkzeug's (threading mode), gevent's pywsgi, eventlet.wsgi.
SERVERS = ("02-threading", "02-gevent", "02-eventlet")


@pytest.mark.parametrize("app", [APPS[i] for i in SERVERS], ids=SERVERS)
def test_a_websocket_the_server_closes_ends_its_tcp_connection_after_the_close_handshake(scene, app):
    """RFC 6455 §7.1.1: after the close handshake the server closes the TCP connection first.

    gevent's pywsgi and Werkzeug, left to themselves, read on after the WebSocket and never end
    the connection: a browser's close frame, which comes after the server's, may be parsed as the
    next HTTP request, a stray "Invalid HTTP method" or "Bad request syntax" line in the log
    (flask-sock #104), and a 400 is written after the close frame.
    """
    s = scene(app)
    with s.door.raw_websocket("closed") as ws:
        ws.send(GARBAGE["bad-json"])  # the guard closes the connection: one line, one close frame
        rest = ws.after_close_handshake()
    assert rest == b"", f"the server went on after the close handshake: {rest!r}"
    assert len(malformed_lines(s.server)) == 1, malformed_lines(s.server)
    assert "Invalid HTTP method" not in s.server.log_text()
    assert "Bad request syntax" not in s.server.log_text()


def test_under_werkzeug_the_close_frame_is_never_sent_on_a_closed_socket(scene):
    """200 WebSockets closed for an undecodable frame: each gets a close frame; no traceback.

    Werkzeug closes its socket as the request ends: for a WebSocket closed at once, that can
    come before python-engineio's writer thread sends its close frame on the same socket
    (`OSError: [Errno 9] Bad file descriptor` in the thread, or no close frame). The guard hands
    simple-websocket a socket of its own; without it, this fails every time.
    """
    s = scene(APPS["02-threading"])
    for _ in range(200):
        with s.door.raw_websocket("closed") as ws:
            ws.send(GARBAGE["not-engine-io"])
            assert ws.after_close_handshake() == b""
    assert len(malformed_lines(s.server)) == 200
    assert "Traceback" not in s.server.log_text()
