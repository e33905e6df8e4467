"""The apps the hardening and fuzz suites attack, and how a client gets into each.

`APPS` names every app under test: its script, whether it needs Redis, the events it
answers, and its `Door`. A door says how a hostile client and a bystander get in, and how
the bystander shows it still works (`Door.still_works`).

The apps let clients in two ways. The chats (chapters 01-04) let anyone join a room by name:
the bystander is in room `lobby`, and its own lines there come back to it. Chapter 05 and
the recipe let in a user with a token from `POST /login`, into that user's own room: the
bystander logs in, and what is sent to its room reaches it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Any

import redis
import requests

from lab.clients import RecordingClient, emit_through_queue
from lab.processes import wait_until
from lab.raw import RAW_TIMEOUT, PollingSession, RawWebSocket

ROOM = "lobby"


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

    def still_works(self, client: RecordingClient, name: str, marker: str) -> None:
        """`name`'s own line comes back to it: its room and its connection work as before."""
        self.say(client, name, marker)
        client.wait_for(f"{marker!r} back", lambda c: marker in self.lines(c, name))

    def raw_websocket(self, name: str) -> RawWebSocket:
        """An Engine.IO session by hand, connected as `name`'s page connects."""
        return RawWebSocket(self.url, auth=self.auth(name))

    def polling_session(self, name: str) -> PollingSession:
        """A long-polling session by hand, connected as `name`'s page connects."""
        return PollingSession(self.url, auth=self.auth(name))

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

    def message(self, room: str, text: str) -> dict:
        """A `message` payload this app accepts."""
        return {"room": room, "text": text}

    def say(self, client: RecordingClient, name: str, text: str) -> None:
        assert client.call("message", self.message(ROOM, text)) == {"ok": True}

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


class DeliveryDoor(ChatDoor):
    """Chapter 06: the chat, where each message carries its sender's id and is acknowledged once stored."""

    cheap = ("ping", None, {"ok": True})

    def message(self, room: str, text: str) -> dict:
        return {"room": room, "text": text, "id": uuid.uuid4().hex}

    def say(self, client: RecordingClient, name: str, text: str) -> None:
        assert client.call("message", self.message(ROOM, text))["ok"]


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


def engineio_session_gone(url: str, eio_sid: str) -> bool:
    """python-engineio answers a request on a session it no longer has `Invalid session <sid>`.

    Only for a WebSocket session: a GET on a live long-polling one would wait for packets.
    """
    answer = requests.get(f"{url}/socket.io/?EIO=4&transport=polling&sid={eio_sid}", timeout=RAW_TIMEOUT)
    return answer.status_code == 400 and "Invalid session" in answer.text


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
CHAPTER_03 = App(
    "chapters/03_redis_scaling/app.py",
    ChatDoor,
    (*CHAT_EVENTS, "broadcast", "ping"),
    redis=True,
    counts_online_in_redis=True,
    notify_token=True,
)
# Each app, chapter 03's twins too (each is its chapter, one mistake apart). None needs a Celery worker.
APPS = {
    "01": App("chapters/01_basic_chat/app.py", ChatDoor, CHAT_EVENTS),
    "02-threading": App("chapters/02_async_modes/run_threading.py", ChatDoor, CHAT_EVENTS + CHAT_02),
    "02-gevent": App("chapters/02_async_modes/run_gevent.py", ChatDoor, CHAT_EVENTS + CHAT_02),
    "02-eventlet": App("chapters/02_async_modes/run_eventlet.py", ChatDoor, CHAT_EVENTS + CHAT_02),
    "03": CHAPTER_03,
    "03-no-queue": replace(CHAPTER_03, script="antipatterns/03_no_message_queue.py"),
    # It counts the users online in each process's memory, not in Redis.
    "03-counter-in-memory": replace(
        CHAPTER_03, script="antipatterns/03_counter_in_process_memory.py", counts_online_in_redis=False
    ),
    # Chapter 03's chat behind nginx, with no POST /notify.
    "04": replace(CHAPTER_03, script="chapters/04_nginx_lb/app.py", notify_token=False),
    # Chapter 04's chat with a log per room in Redis: no online count, and two events more.
    "06": replace(
        CHAPTER_03,
        script="chapters/06_delivery_guarantees/app.py",
        door=DeliveryDoor,
        events=(*CHAT_EVENTS, "fetch", "ping"),
        counts_online_in_redis=False,
        notify_token=False,
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
