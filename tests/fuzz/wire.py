"""Hostile clients for the fuzz tests, and a reader for the lines they cost in the app's log.

`HostileClient` is a real python-socketio client that sends any arguments with any event;
lab.raw's `RawWebSocket` and `PollingSession` speak Engine.IO by hand. Every wait has a
deadline; every client talks to loopback only.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import socketio
from socketio.packet import EVENT, Packet

# The HTTP server's own lines about each request: an access line (Werkzeug's, gevent's pywsgi's,
# eventlet.wsgi's), and the line Werkzeug or pywsgi adds for a request it cannot parse. Any TCP
# client can cause those with no Socket.IO at all. (After a WebSocket, Werkzeug and pywsgi would
# read the client's close frame as a new request; the guard stops both: tests/test_hardening.py.)
HTTP_SERVER_LINE = re.compile(
    r'^\S+ - \S+ \[[^\]]*\] ("[^"]*" \d{3}\b|code \d{3}, message )'
    r"|^<gevent\._socket3\.socket [^>]*>: \(from \('[\d.]+', \d+\)\) "
)
# python-engineio logs a few errors once per process, then at INFO: bounded, not one per client.
ONCE_PER_PROCESS = "(further occurrences of this error will be logged with level INFO)"
# The one line a malformed packet may cost, and the one line a handler's failure may cost.
CLOSED_LINE = re.compile(r"closed (?P<eio_sid>\S+): malformed packet \(\w+: ")
REFUSED_LINE = re.compile(r"refused '.*' from \S+: \w+: ")
# What a refused long-polling POST answers.
REFUSED_POST = "malformed or oversized packet: connection closed"


class AppLog:
    """One app's log file, read from a mark: what a stretch of fuzzing cost it."""

    def __init__(self, path: Path):
        self.path = path

    def mark(self) -> int:
        """The end of the last whole line: a line being written now comes after the mark."""
        return self.path.read_bytes().rfind(b"\n") + 1

    def since(self, mark: int) -> str:
        """The whole lines written since `mark`: a line may be half written when it is read."""
        with self.path.open("rb") as log:
            log.seek(mark)
            whole, newline, _ = log.read().rpartition(b"\n")
            return (whole + newline).decode(errors="replace")

    def lines_since(self, mark: int) -> list[str]:
        """The lines written since `mark` that a client's input caused; never a traceback.

        Left out: the HTTP server's lines about each request, and python-engineio's
        once-per-process errors.
        """
        text = self.since(mark)
        if "Traceback" in text:  # shown from a little before it, as other threads' lines interleave
            start = max(0, text.index("Traceback") - 400)
            raise AssertionError(f"a traceback in the app's log:\n{text[start : start + 3000]}")
        return [
            line
            for line in text.splitlines()
            if line.strip() and not HTTP_SERVER_LINE.match(line) and ONCE_PER_PROCESS not in line
        ]


def expected_line(line: str, eio_sid: str | None = None) -> bool:
    """A `closed <eio_sid>: malformed packet` line (for this session, if named) or a refusal."""
    closed = CLOSED_LINE.search(line)
    if closed:
        return eio_sid is None or closed["eio_sid"] == eio_sid
    return bool(REFUSED_LINE.search(line))


def largest_frame(event: str, args: tuple) -> int:
    """The size in bytes of the largest WebSocket frame python-socketio sends for this event.

    A binary event is a text frame with placeholders, then one frame per bytes object.
    The ack id (a few digits) is left out: the caller allows for it.
    """
    encoded = Packet(EVENT, data=[event, *args]).encode()
    frames = encoded if isinstance(encoded, list) else [encoded]
    return max(len(("4" + f).encode()) if isinstance(f, str) else len(f) for f in frames)


class HostileClient:
    """A python-socketio client over WebSocket that sends any arguments with any event.

    It connects with `auth` and, where the app wants one, sends the `joining` event that puts it
    in a room. After the server closes the connection (a frame over the size limit), the next
    `send_all` connects again.
    """

    def __init__(self, url: str, *, auth: Any = None, joining: tuple[str, dict] | None = None):
        self.url = url
        self.auth = auth
        self.joining = joining
        self.sio: socketio.Client | None = None
        self._changed = threading.Condition()
        self.errors: list[Any] = []
        self.closed = False

    def _connect(self) -> socketio.Client:
        sio = socketio.Client(reconnection=False)
        sio.on("error", self._on_error)
        sio.on("disconnect", self._on_disconnect)
        with self._changed:
            self.closed = False
        sio.connect(self.url, transports=["websocket"], auth=self.auth, wait_timeout=10)
        if self.joining:  # in a room, so a valid `message` to it goes out to its members like anyone's
            assert sio.call(*self.joining, timeout=10)["ok"]
        return sio

    def _on_error(self, data: Any = None) -> None:
        with self._changed:
            self.errors.append(data)
            self._changed.notify_all()

    def _on_disconnect(self, reason: Any = None) -> None:
        with self._changed:
            self.closed = True
            self._changed.notify_all()

    def send_all(self, calls: list[tuple[str, tuple]], timeout: float) -> tuple[list[Any], bool]:
        """Emit every (event, args) at once; wait for all their acks, or for the server to close.

        Returns each call's ack (a tuple of the ack's arguments; None if unanswered) and
        whether the server closed the connection. Sent together, the calls share one round
        trip: an answer of two frames (an `error` event, then the ack) takes about 40 ms.
        """
        if self.sio is None or self.closed or not self.sio.connected:
            self.sio = self._connect()
        acks: list[Any] = [None] * len(calls)
        with self._changed:
            self.errors.clear()

        def on_ack_of(i: int):
            def on_ack(*values: Any) -> None:
                with self._changed:
                    acks[i] = values
                    self._changed.notify_all()

            return on_ack

        for i, (event, args) in enumerate(calls):
            try:
                self.sio.emit(event, args, callback=on_ack_of(i))
            except socketio.exceptions.SocketIOError:
                break  # closed by the server while this client was still sending
        with self._changed:
            answered = self._changed.wait_for(lambda: None not in acks or self.closed, timeout)
            assert answered, f"no ack and no close within {timeout}s for {calls!r:.300}"
            return list(acks), self.closed

    def heard_errors(self, expected: list[dict], timeout: float) -> bool:
        """Every `expected` error event has arrived since the last `send_all`, as often as listed."""

        def all_heard() -> bool:
            return all(self.errors.count(error) >= expected.count(error) for error in expected)

        with self._changed:
            return self._changed.wait_for(all_heard, timeout)

    def disconnect(self) -> None:
        if self.sio is not None and self.sio.connected:
            self.sio.disconnect()
