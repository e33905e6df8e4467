"""Every app against a client that is not its page: bad calls get a reason, and harm no one else.

A python-socketio client can send what the apps' pages never do: an event with two
arguments, a sid as a room name, an event named `connect` or `disconnect`. Each test sends
one kind and checks three things: the sender gets a reason (an `error` event and a
failed ack), a bystander goes on working as before, and the log holds one line per refused
event, never a traceback.

The apps let clients in two ways. The chats (chapters 01-04) let anyone join a room by name:
the bystander is in room `lobby`, and its own lines there come back to it. Chapter 05 and
the recipe let in a user with a token from `POST /login`, into that user's own room: the
bystander logs in, and what is sent to its room reaches it. `APPS` says which app is which.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from typing import Any

import pytest
import redis
import requests
import socketio
import websocket

from lab.apps import healthz, start_app
from lab.clients import TRANSPORTS, RecordingClient, emit_through_queue
from lab.processes import REPO_ROOT, Service, wait_until
from lab.raw import RAW_TIMEOUT, PollingSession, RawWebSocket
from lab.redis_server import start_redis

MAX_EVENT_BYTES = 16 * 1024
ROOM = "lobby"
FORGED_CONNECT = "a client cannot send 'connect'; it is connected already"
FORGED_DISCONNECT = "a client cannot send 'disconnect'; close the connection instead"


# -- how a client gets in, and how a bystander shows it still works -------------------------------


class Door:
    """How clients get into one running app; a subclass for each way in."""

    # An event whose handler changes something, and a payload it accepts.
    probe: tuple[str, Any]
    # An event any client may send as often as it likes, a payload, and its ack.
    cheap: tuple[str, Any, dict]
    # A bad `auth` for the connect, and the reason the client reads.
    bad_auth: tuple[Any, str]
    # Whether clients name the rooms they join (the chat), or each is in its user's room.
    names_rooms: bool

    def __init__(self, url: str, redis_url: str | None):
        self.url = url
        self.redis_url = redis_url

    def auth(self, name: str) -> Any:
        """What a page of `name` sends with its connect."""
        return None

    def joining(self, name: str) -> tuple[str, dict] | None:
        """The event that puts a connected client in its room, if the connect does not."""
        return None

    def connect(self, client: RecordingClient, name: str, transport: str = "websocket") -> RecordingClient:
        return client.connect(self.url, transport, auth=self.auth(name))

    def join(self, client: RecordingClient, name: str) -> RecordingClient:
        if joining := self.joining(name):
            assert client.call(*joining)["ok"]
        return client

    def enter(self, client: RecordingClient, name: str, transport: str = "websocket") -> RecordingClient:
        return self.join(self.connect(client, name, transport), name)

    def say(self, client: RecordingClient, name: str, text: str) -> None:
        """Send `text` to `name`'s room, as `name`."""
        raise NotImplementedError

    def lines(self, client: RecordingClient, name: str) -> list[str]:
        """What `client` heard `name` say, in order."""
        raise NotImplementedError

    def raw_websocket(self, name: str) -> RawWebSocket:
        return RawWebSocket(self.url)

    def polling_session(self, name: str) -> PollingSession:
        return PollingSession(self.url)

    def join_raw(self, raw: RawWebSocket | PollingSession, name: str) -> None:
        """Put a raw session in its room; the bystander hears it come in, where it can."""

    def left_at_once(self, bystander: RecordingClient, name: str, eio_sid: str, transport: str) -> None:
        """`name`'s connection, closed by the server, is out of its rooms now, not a ping timeout later."""
        raise NotImplementedError

    def ran_nothing(self, bystander: RecordingClient, hostile: RecordingClient) -> None:
        """The probe's handler never ran."""
        raise NotImplementedError


class ChatDoor(Door):
    """Chapters 01-04: a client joins room `lobby` by name; what it says there comes back to it."""

    probe = ("join", {"room": ROOM, "name": "x"})
    cheap = ("message", {"room": ROOM, "text": "flood"}, {"ok": True})
    bad_auth = ({"name": "x", "rooms": ROOM}, "auth: 'rooms' must be a list of at most 10 rooms")
    names_rooms = True

    def joining(self, name: str) -> tuple[str, dict]:
        return ("join", {"room": ROOM, "name": name})

    def say(self, client: RecordingClient, name: str, text: str) -> None:
        assert client.call("message", {"room": ROOM, "text": text}) == {"ok": True}

    def lines(self, client: RecordingClient, name: str) -> list[str]:
        return [d["text"] for d in client.received("message") if d.get("name") == name]

    def join_raw(self, raw: RawWebSocket | PollingSession, name: str) -> None:
        raw.join(ROOM, name)

    def left_at_once(self, bystander: RecordingClient, name: str, eio_sid: str, transport: str) -> None:
        # The room hears it leave: at once, not after the ping timeout (about 45 s).
        bystander.wait_for_event("system", lambda d: d.get("text") == f"{name} left {ROOM}", timeout=3)

    def ran_nothing(self, bystander: RecordingClient, hostile: RecordingClient) -> None:
        # Nobody joined: the bystander heard no one come in.
        assert [d["text"] for d in bystander.received("system")] == [f"bystander joined {ROOM}"]


class UserDoor(Door):
    """A client logs in with `POST /login` and connects with its token in `auth`; the connect
    puts it in its user's room, its only room. Nobody hears a user's connection leave."""

    bad_auth = ({"token": "forged"}, "invalid token")
    names_rooms = False

    def __init__(self, url: str, redis_url: str | None):
        super().__init__(url, redis_url)
        self.tokens: dict[str, str] = {}

    def auth(self, name: str) -> dict:
        if name not in self.tokens:
            response = requests.post(f"{self.url}/login", json={"name": name}, timeout=5)
            response.raise_for_status()
            self.tokens[name] = response.json()["token"]
        return {"token": self.tokens[name]}

    def raw_websocket(self, name: str) -> RawWebSocket:
        return RawWebSocketWithAuth(self.url, self.auth(name))

    def polling_session(self, name: str) -> PollingSession:
        return PollingSessionWithAuth(self.url, self.auth(name))

    def left_at_once(self, bystander: RecordingClient, name: str, eio_sid: str, transport: str) -> None:
        """A WebSocket's Engine.IO session is gone at once, and its Socket.IO session and rooms with it.

        Over long-polling the guard ends the Socket.IO session and leaves the Engine.IO one to
        time out: the DISCONNECT a raw session's next GET brings shows it (the callers check it).
        """
        if transport == "websocket":
            wait_until(lambda: engineio_session_gone(self.url, eio_sid), timeout=3, what=f"{name} to leave")


class RecipeDoor(UserDoor):
    """recipes/auth_on_connect: `notify_me` sends a `notice` to every tab of its user."""

    probe = ("notify_me", {"text": "x"})
    cheap = ("notify_me", {"text": "flood"}, {"ok": True})

    def say(self, client: RecordingClient, name: str, text: str) -> None:
        assert client.call("notify_me", {"text": text}) == {"ok": True}

    def lines(self, client: RecordingClient, name: str) -> list[str]:
        return [d["text"] for d in client.received("notice") if d.get("user") == name]

    def ran_nothing(self, bystander: RecordingClient, hostile: RecordingClient) -> None:
        assert hostile.received("notice") == []  # a notice would have come before the ack


class TaskboardDoor(UserDoor):
    """Chapter 05's web instance, with no Celery worker: the guard is in the web instance.

    A worker reaches a page by publishing on the Socket.IO queue to its user's room: here
    the test publishes, as a worker would (lab.clients.emit_through_queue). Chapter 05's own
    tests run the workers.
    """

    probe = ("start", {"steps": 1})
    cheap = ("ping", None, {"ok": True, "instance": "app-1"})

    def say(self, client: RecordingClient, name: str, text: str) -> None:
        assert client.call("ping") == {"ok": True, "instance": "app-1"}
        emit_through_queue(self.redis_url, "probe", {"name": name, "text": text}, to=f"user:{name}")

    def lines(self, client: RecordingClient, name: str) -> list[str]:
        return [d["text"] for d in client.received("probe") if d.get("name") == name]

    def ran_nothing(self, bystander: RecordingClient, hostile: RecordingClient) -> None:
        # No task was queued: Celery's queue, a Redis list, is empty.
        assert redis.Redis.from_url(self.redis_url).llen("celery") == 0


def still_works(door: Door, client: RecordingClient, name: str, marker: str) -> None:
    """`name`'s own line comes back to it: its room and its connection work as before."""
    door.say(client, name, marker)
    client.wait_for(f"{marker!r} back", lambda c: marker in door.lines(c, name))


def engineio_session_gone(url: str, eio_sid: str) -> bool:
    """python-engineio answers a request on a session it no longer has `Invalid session <sid>`.

    Only for a WebSocket session: a GET on a live long-polling one would wait for packets.
    """
    answer = requests.get(f"{url}/socket.io/?EIO=4&transport=polling&sid={eio_sid}", timeout=RAW_TIMEOUT)
    return answer.status_code == 400 and "Invalid session" in answer.text


class RawWebSocketWithAuth(RawWebSocket):
    """lab.raw's RawWebSocket, whose Socket.IO connect carries `auth` (a token)."""

    def __init__(self, url: str, auth: dict):
        self.ws = websocket.create_connection(
            url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket", timeout=RAW_TIMEOUT
        )
        self.dropped = False
        self.eio_sid = json.loads(self.ws.recv()[1:])["sid"]
        self.ws.send("40" + json.dumps(auth))
        assert self.receive_until(lambda frame: frame.startswith("40")), "no Socket.IO connect"


class PollingSessionWithAuth(PollingSession):
    """lab.raw's PollingSession, whose Socket.IO connect carries `auth` (a token)."""

    def __init__(self, url: str, auth: dict):
        self.base = f"{url}/socket.io/?EIO=4&transport=polling"
        opened = self._request("GET", self.base)
        opened.raise_for_status()
        self.eio_sid = json.loads(opened.text[1:])["sid"]
        self.url = f"{self.base}&sid={self.eio_sid}"
        assert self.post(("40" + json.dumps(auth)).encode()).status_code == 200
        assert self.get_until(lambda packet: packet.startswith("40")), "no Socket.IO connect"


# -- the apps --------------------------------------------------------------------------------------

CHAT_EVENTS = ("join", "leave", "message")
NO_NAMED_ROOMS = "no client names a room: a connection is in its user's room, from its token, and only there"


@dataclass(frozen=True)
class App:
    """One app under test, and what the suites need to know of it."""

    script: str
    door: type[Door]
    events: tuple[str, ...]  # every event it answers; the fuzz suite sends each
    redis: bool = False  # it needs a redis-server (REDIS_URL)
    handles_disconnect: bool = True  # it has a disconnect handler, which a client could try to run
    counts_online_in_redis: bool = False  # /healthz counts the users online, for the whole cluster
    notify_token: bool = False  # it has POST /notify, whose NOTIFY_TOKEN production requires too
    no_named_rooms: str = ""  # why the tests of the rooms a client names do not apply


CHAT_02 = ("broadcast", "ping", "slow_io", "cpu_work")
# Each app, chapter 03's twins too (they carry the same guards). None needs a Celery worker.
APPS = {
    "01": App("chapters/01_basic_chat/app.py", ChatDoor, CHAT_EVENTS),
    "02-threading": App("chapters/02_async_modes/run_threading.py", ChatDoor, CHAT_EVENTS + CHAT_02),
    "02-gevent": App("chapters/02_async_modes/run_gevent.py", ChatDoor, CHAT_EVENTS + CHAT_02),
    "02-eventlet": App("chapters/02_async_modes/run_eventlet.py", ChatDoor, CHAT_EVENTS + CHAT_02),
    "03": App(
        "chapters/03_redis_scaling/app.py",
        ChatDoor,
        (*CHAT_EVENTS, "broadcast", "ping"),
        redis=True,
        counts_online_in_redis=True,
        notify_token=True,
    ),
    "03-no-queue": App(
        "antipatterns/03_no_message_queue.py",
        ChatDoor,
        (*CHAT_EVENTS, "broadcast", "ping"),
        redis=True,
        counts_online_in_redis=True,
        notify_token=True,
    ),
    # It counts the users online in each process's memory, not in Redis.
    "03-counter-in-memory": App(
        "antipatterns/03_counter_in_process_memory.py",
        ChatDoor,
        (*CHAT_EVENTS, "broadcast", "ping"),
        redis=True,
        notify_token=True,
    ),
    "04": App(
        "chapters/04_nginx_lb/app.py",
        ChatDoor,
        (*CHAT_EVENTS, "broadcast", "ping"),
        redis=True,
        counts_online_in_redis=True,
    ),
    # The web instance alone: Redis is its queue and its task store; no worker runs a task.
    "05": App(
        "chapters/05_celery/app.py",
        TaskboardDoor,
        ("start", "cancel", "ping"),
        redis=True,
        handles_disconnect=False,
        no_named_rooms=NO_NAMED_ROOMS,
    ),
    "recipe": App(
        "recipes/auth_on_connect/app.py",
        RecipeDoor,
        ("whoami", "notify_me"),
        handles_disconnect=False,
        no_named_rooms=NO_NAMED_ROOMS,
    ),
}


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
    still_works(s.door, s.bystander, "bystander", "after the extra argument")
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
        assert hostile.call("message", {"room": room, "text": "psst"}) == refused
    # It may name a chat room after a sid; that room is its own, not the bystander's connection.
    assert hostile.call("join", {"room": other, "name": "hostile"})["ok"]
    assert hostile.call("message", {"room": other, "text": "psst"}) == {"ok": True}

    still_works(s.door, bystander, "bystander", "after the sid rooms")  # the barrier: all before it came
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
    still_works(s.door, s.hostile, "hostile", "still here")
    still_works(s.door, s.bystander, "bystander", "after the forged events")
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

    still_works(s.door, s.bystander, "bystander", "during the flood")  # the bystander's budget is its own
    # The hostile client's own budget refills, at 5 a second.
    accepted_again = lambda: s.hostile.call(event, payload) == accepted_ack  # noqa: E731
    wait_until(accepted_again, timeout=5, what="the budget to refill", interval=0.1)
    assert "Traceback" not in s.server.log_text()


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
    still_works(s.door, s.bystander, "bystander", "after the rooms")


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
    still_works(s.door, s.bystander, "bystander", "after the big one")
    assert "Traceback" not in s.server.log_text()
    if transport == "polling":  # a POST: the guard's own check, one line
        [line] = malformed_lines(s.server)
        assert "bytes is more than 16384" in line
    else:  # a WebSocket message: python-engineio's own check, silent
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
    still_works(s.door, s.bystander, "bystander", "after the garbage")
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
    still_works(s.door, s.bystander, "bystander", "after the bad posts")
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
    still_works(s.door, back, "back", "typed while offline")
    if s.door.names_rooms:
        s.bystander.wait_for_event("system", lambda d: d["text"] == "back is back in lobby")
        s.bystander.wait_for_event("message", lambda d: d["text"] == "typed while offline")

    # A bad `auth` refuses the connection, with its reason.
    bad_auth, reason = s.door.bad_auth
    refused = socketio.Client(reconnection=False)
    reasons = []
    refused.on("connect_error", reasons.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        refused.connect(s.server.url, transports=["polling"], auth=bad_auth)
    assert reasons == [{"message": reason}]
    assert "Traceback" not in s.server.log_text()
