"""Chapter 06's client protocol in Python, and the tally the delivery drills keep per client.

ReliableClient does what chapters/06_delivery_guarantees/templates/index.html does in the
browser: a cursor per room sent in the connect `auth`, messages shown once each in number
order, gaps asked for (`fetch`), `resync` taken as what it says, and an outbox that sends each
message until it is acknowledged, under one id. PlainClient is chapter 04's page: it rejoins
its rooms in `auth` and shows what arrives, as it arrives. Both count what they showed, so a
drill can say, per client, how many messages were lost, shown twice and shown out of order.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from lab.clients import RecordingClient
from lab.processes import REPO_ROOT

START = "0-0"
ROOMLOG = REPO_ROOT / "chapters" / "06_delivery_guarantees" / "roomlog.py"


@functools.cache
def roomlog() -> ModuleType:
    """The chapter's roomlog.py, loaded by path ("06_delivery_guarantees" is no package name):
    tests and the bench write to a room's log as the chapter does, or as a producer would."""
    spec = importlib.util.spec_from_file_location("chapter06_roomlog", ROOMLOG)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def room_log(redis_url: str, *, window_seconds: float = 3600, maxlen: int = 10_000) -> Any:
    """The room log the chapter's instances write, as its app.py builds it (the channel is the prefix)."""
    return roomlog().RoomLog(
        redis_url, prefix="flask-socketio", maxlen=maxlen, window_seconds=window_seconds, dedupe_seconds=60
    )


def seq_of(entry_id: str) -> int:
    return int(entry_id.split("-")[1])


@dataclass
class RoomView:
    """What one client shows of one room: `shown` is each message's key, in display order."""

    cursor: str = START
    shown: list[Any] = field(default_factory=list)
    pending: dict[int, dict] = field(default_factory=dict)
    replaying: bool = False
    fetching: bool = False
    dropped: int = 0  # arrivals it already had: the price of at-least-once, paid by the client
    fetches: int = 0
    resyncs: list[int | None] = field(default_factory=list)
    replays_done: int = 0

    @property
    def last(self) -> int:
        return seq_of(self.cursor)


@dataclass(frozen=True)
class Tally:
    """One client's account of one room, against what the senders had acknowledged."""

    lost: int
    shown_twice: int
    out_of_order: int
    fingerprint: str  # a digest of the order shown: equal across clients that showed one order

    def clean(self) -> bool:
        return self.lost == self.shown_twice == self.out_of_order == 0


def tally(shown: list[Any], expected: list[Any]) -> Tally:
    """Compare what a client showed with what was sent, in the order it was acknowledged."""
    counts = Counter(shown)
    rank = {key: i for i, key in enumerate(expected)}
    ranks = [rank[key] for key in dict.fromkeys(shown) if key in rank]
    return Tally(
        lost=len(set(expected) - set(shown)),
        shown_twice=sum(n - 1 for n in counts.values() if n > 1),
        out_of_order=sum(1 for a, b in zip(ranks, ranks[1:], strict=False) if b < a),
        fingerprint=hashlib.sha256(repr(shown).encode()).hexdigest()[:16],
    )


class ReliableClient(RecordingClient):
    """A chapter 06 client: shows each room's messages once, in order, and asks for what it lacks.

    `shown` keys are message numbers (seq). The browser page does the same in JavaScript.
    """

    def __init__(self, label: str, *, source: str | None = None):
        super().__init__(label, source=source, reconnection=True, in_order=True)
        self.rooms: dict[str, RoomView] = {}
        self._lock = threading.RLock()
        for event, handler in {
            "message": self._on_message,
            "replay": self._on_replay,
            "replay_done": self._on_replay_done,
            "resync": self._on_resync,
            "head": self._on_head,
            "replay_failed": self._on_replay_failed,
            "disconnect": self._on_disconnect,
        }.items():
            self.sio.on(event, self._recorded(event, handler))

    def _recorded(self, event: str, handler: Any) -> Any:
        def on(data: Any = None) -> None:
            with self._lock:
                handler(data)
            self._record(event, data)

        return on

    def auth(self) -> dict:
        """What every connect and reconnect sends: asked afresh each time (python-socketio calls it)."""
        with self._lock:
            cursors = {room: view.cursor for room, view in self.rooms.items()}
            for view in self.rooms.values():
                view.replaying = True
            return {"name": self.label, "rooms": list(cursors), "cursors": cursors}

    def start(self, url: str, rooms: list[str], transport: str | None = "websocket") -> ReliableClient:
        """Connect, join `rooms` from their current head, and wait until each is joined."""
        self.connect(url, transport, auth=self.auth)
        for room in rooms:
            ack = self.call("join", {"room": room, "name": self.label})
            assert ack.get("ok"), (self.label, ack)
            with self._lock:
                self.rooms[room] = RoomView(cursor=ack["head"])
        return self

    def shown(self, room: str) -> list[int]:
        with self._lock:
            return list(self.rooms[room].shown)

    def view(self, room: str) -> RoomView:
        return self.rooms[room]

    # What arrives, in the read loop's order (_InOrderEngineIO); nothing here may block.
    def _on_message(self, entry: dict) -> None:
        self._arrive(entry)
        self._ask_for_gaps(entry["room"])

    def _on_replay(self, page: dict) -> None:
        for entry in page["entries"]:
            self._arrive(entry)

    def _on_replay_done(self, done: dict) -> None:
        view = self.rooms.get(done["room"])
        if view is None:
            return
        view.replaying = view.fetching = False
        view.replays_done += 1
        self._ask_for_gaps(done["room"])

    def _on_replay_failed(self, failed: dict) -> None:
        view = self.rooms.get(failed["room"])
        if view is not None:  # the next head, message or reconnect asks again
            view.replaying = view.fetching = False

    def _on_disconnect(self, reason: str | None = None) -> None:
        for view in self.rooms.values():
            view.fetching = False  # what it asked for went with the connection

    def _on_resync(self, resync: dict) -> None:
        view = self.rooms.get(resync["room"])
        if view is None:
            return
        view.resyncs.append(resync["lost"])
        view.cursor = resync["after"]
        view.pending = {seq: e for seq, e in view.pending.items() if seq > view.last}
        self._drain(view)

    def _on_head(self, head: dict) -> None:
        view = self.rooms.get(head["room"])
        if view is not None and seq_of(head["head"]) > view.last:
            self._fetch(head["room"], view)

    def _arrive(self, entry: dict) -> None:
        view = self.rooms.get(entry["room"])
        if view is None:
            return
        if entry["seq"] <= view.last or entry["seq"] in view.pending:
            view.dropped += 1
            return
        view.pending[entry["seq"]] = entry
        self._drain(view)

    def _drain(self, view: RoomView) -> None:
        while (entry := view.pending.pop(view.last + 1, None)) is not None:
            view.shown.append(entry["seq"])
            view.cursor = entry["id"]

    def _ask_for_gaps(self, room: str) -> None:
        view = self.rooms[room]
        if view.pending:
            self._fetch(room, view)

    def _fetch(self, room: str, view: RoomView) -> None:
        if view.replaying or view.fetching or not self.sio.connected:
            return
        view.fetching = True
        view.fetches += 1
        self.sio.emit("fetch", {"room": room, "after": view.cursor})


class PlainClient(RecordingClient):
    """Chapter 04's page: back in its rooms on a reconnect (`auth`), showing what arrives as it arrives.

    `shown` keys are the texts of the room's messages.
    """

    def __init__(self, label: str, *, source: str | None = None):
        super().__init__(label, source=source, reconnection=True, in_order=True)
        self.joined: list[str] = []

    def auth(self) -> dict:
        return {"name": self.label, "rooms": list(self.joined)}

    def start(self, url: str, rooms: list[str], transport: str | None = "websocket") -> PlainClient:
        self.connect(url, transport, auth=self.auth)
        for room in rooms:
            assert self.call("join", {"room": room, "name": self.label}).get("ok")
            self.joined.append(room)
        return self

    def shown(self, room: str) -> list[str]:
        return [m["text"] for m in self.received("message") if m["room"] == room]


class Sender:
    """Sends numbered texts into one room from one client, each until acknowledged, in order.

    Against chapter 06 each message carries an id, and a retry reuses it; `acked` lists the ids
    the log gave them. Against chapter 04 there is nothing to retry: an acknowledged message is
    only a published one. `texts` is what was sent, in order.
    """

    def __init__(self, client: RecordingClient, room: str, *, with_ids: bool, retry_for: float = 30.0):
        self.client, self.room, self.with_ids, self.retry_for = client, room, with_ids, retry_for
        self.texts: list[str] = []
        self.acked: list[str] = []
        self.attempts = 0
        self.retries = 0
        # One message at a time, from any thread: acknowledged in the order sent, as a page's outbox.
        self._one_at_a_time = threading.Lock()

    def send(self, text: str) -> None:
        with self._one_at_a_time:
            self._send(text)

    def _send(self, text: str) -> None:
        payload = {"room": self.room, "text": text}
        if self.with_ids:
            payload["id"] = uuid.uuid4().hex
        deadline = time.monotonic() + self.retry_for
        while True:
            self.attempts += 1
            try:
                ack = self.client.call("message", payload, timeout=2)
            except Exception as error:  # a timeout, or not connected: the same message again
                ack = {"ok": False, "error": repr(error)}
            if ack.get("ok"):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.client.label}: {text!r} was never acknowledged: {ack}")
            self.retries += 1
            time.sleep(0.1)  # a bounded retry loop: the deadline above ends it
        self.texts.append(text)
        if "id" in ack:
            self.acked.append(ack["id"])
