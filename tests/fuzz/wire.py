"""Hostile clients for the fuzz tests, and a reader for the lines they cost in the app's log.

`HostileClient` is a real python-socketio client that sends any arguments with any event.
`RawWebSocket` and `PollingSession` speak Engine.IO by hand, so they can send what no
Socket.IO client would. Every wait has a deadline; every client talks to loopback only.
"""

from __future__ import annotations

import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
import socketio
import websocket
from socketio.packet import EVENT, Packet

# The HTTP server's own lines about each request: an access line (Werkzeug's, gevent's pywsgi's,
# eventlet.wsgi's), and the line Werkzeug or pywsgi adds for a request it cannot parse. Any TCP
# client can cause those with no Socket.IO at all; and after python-engineio has closed a
# WebSocket, both servers read the client's close frame as a new request and write them too.
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

# A healthy server answers in milliseconds; a hung request fails its test after this long.
RAW_TIMEOUT = 2.0
_GONE = (websocket.WebSocketException, ConnectionError, OSError)
_closer = ThreadPoolExecutor(max_workers=8, thread_name_prefix="raw-websocket-close")


class AppLog:
    """One app's log file, read from a mark: what a stretch of fuzzing cost it."""

    def __init__(self, path: Path):
        self.path = path

    def mark(self) -> int:
        return self.path.stat().st_size

    def since(self, mark: int) -> str:
        with self.path.open("rb") as log:
            log.seek(mark)
            return log.read().decode(errors="replace")

    def lines_since(self, mark: int) -> list[str]:
        """The lines written since `mark` that a client's input caused; never a traceback.

        Left out: the HTTP server's lines about each request, and python-engineio's
        once-per-process errors.
        """
        text = self.since(mark)
        assert "Traceback" not in text, f"a traceback in the app's log, ending:\n{text[-1200:]}"
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

    It joins `room` as it connects. After the server closes the connection (a frame over
    the size limit), the next `send_all` connects again.
    """

    def __init__(self, url: str, room: str):
        self.url = url
        self.room = room
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
        sio.connect(self.url, transports=["websocket"], wait_timeout=10)
        # In a room, so a valid `message` to it goes out to its members like anyone's.
        assert sio.call("join", {"room": self.room, "name": "hostile"}, timeout=10)["ok"]
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


class RawWebSocket:
    """One Engine.IO session over a WebSocket, connected to the default namespace, driven by hand."""

    def __init__(self, url: str):
        self.ws = websocket.create_connection(
            url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket", timeout=RAW_TIMEOUT
        )
        self.dropped = False  # the server has sent its close frame, or the connection is gone
        opened = self.ws.recv()  # 0{"sid": ..., "pingInterval": ...}
        self.eio_sid: str = json.loads(opened[1:])["sid"]
        self.ws.send("40")
        assert self.receive_until(lambda frame: frame.startswith("40")), "no Socket.IO connect"

    def __enter__(self) -> RawWebSocket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        # As a browser does: a close frame, then the server's answer is awaited. In the
        # background, as that answer comes ~40 ms late (Nagle, the client's delayed ACK).
        _closer.submit(self.ws.close, timeout=1)

    def send(self, *frames: str | bytes) -> bool:
        """Send frames in one write, so the server reads them back to back, before it can
        react to the first; False when the server has closed the connection already."""
        binary, text = websocket.ABNF.OPCODE_BINARY, websocket.ABNF.OPCODE_TEXT
        wire = b"".join(
            websocket.ABNF.create_frame(frame, binary if isinstance(frame, bytes) else text).format()
            for frame in frames
        )
        try:
            self.ws.sock.sendall(wire)
        except _GONE:
            return False
        return True

    def receive_until(self, wanted: Any) -> str | None:
        """Read frames until `wanted(frame)`; None once the server closes the session.

        The session is closed at the Engine.IO CLOSE packet (`1`), not at the WebSocket
        close frame after it, which comes ~40 ms later (Nagle, and the client's delayed
        ACK); or when the connection drops. Nothing for RAW_TIMEOUT raises TimeoutError.
        """
        while True:
            try:
                frame = self.ws.recv()
            except websocket.WebSocketTimeoutException:
                raise TimeoutError(f"the server sent nothing for {RAW_TIMEOUT}s") from None
            except _GONE:
                self.dropped = True
                return None
            if frame == "":  # a WebSocket close frame
                self.dropped = True
                return None
            if frame == "1" and not wanted(frame):  # Engine.IO CLOSE
                return None
            if isinstance(frame, str) and wanted(frame):
                return frame

    def join(self, room: str, name: str) -> None:
        """Join `room` as `name`: done when the room announces it (the ack follows, unread).

        Waiting for the ack would cost ~40 ms: the server writes the announcement and the
        ack apart (Nagle), and the ack waits for the client's delayed ACK of the first.
        """
        self.send("420" + json.dumps(["join", {"room": room, "name": name}]))
        joined = ["system", {"room": room, "text": f"{name} joined {room}"}]
        assert self.receive_until(lambda frame: frame.startswith("42[") and json.loads(frame[2:]) == joined)

    def settle(self) -> str:
        """Wait until the server has read every frame sent so far: "open", "closed" or "silent".

        An Engine.IO UPGRADE packet (`5`) is answered with a NOOP (`6`) on any open
        session, in order, whatever state its namespaces are in.
        """
        if not self.send("5"):
            return "closed"
        try:
            return "open" if self.receive_until(lambda frame: frame == "6") else "closed"
        except TimeoutError:
            return "silent"

    def wait_dropped(self) -> None:
        """After a CLOSE, wait for the WebSocket close frame or the end of the connection:
        by then the server has done all it will with the frames it was sent."""
        if not self.dropped:
            self.receive_until(lambda frame: False)


class PollingSession:
    """One Engine.IO long-polling session, connected to the default namespace, driven by hand.

    Each request goes on a TCP connection of its own, as lab.clients.polling_session's do.
    Kept alive, each answer from gevent's pywsgi would wait ~40 ms for the client's delayed
    ACK (it writes headers and body apart); and a pooled connection the server has just
    closed fails the next POST with RemoteDisconnected.
    """

    def __init__(self, url: str):
        self.base = f"{url}/socket.io/?EIO=4&transport=polling"
        opened = self._request("GET", self.base)
        opened.raise_for_status()
        self.eio_sid: str = json.loads(opened.text[1:])["sid"]
        self.url = f"{self.base}&sid={self.eio_sid}"
        assert self.post(b"40").status_code == 200
        assert self.get_until(lambda packet: packet.startswith("40")), "no Socket.IO connect"

    @staticmethod
    def _request(method: str, url: str, body: bytes | None = None) -> requests.Response:
        return requests.request(method, url, data=body, headers={"Connection": "close"}, timeout=RAW_TIMEOUT)

    def post(self, body: bytes) -> requests.Response:
        """POST a body; a server that does not answer within the deadline fails the test."""
        try:
            return self._request("POST", self.url, body)
        except requests.Timeout:
            raise AssertionError(f"no answer within {RAW_TIMEOUT}s to a POST of {body!r:.200}") from None

    def get(self) -> requests.Response:
        return self._request("GET", self.url)

    def get_until(self, wanted: Any) -> str | None:
        """GET until a packet satisfies `wanted`; None if the session ends first."""
        for _ in range(5):
            response = self.get()
            if response.status_code != 200:
                return None
            for packet in response.text.split("\x1e"):
                if wanted(packet):
                    return packet
        return None

    def join(self, room: str, name: str) -> None:
        assert self.post(("420" + json.dumps(["join", {"room": room, "name": name}])).encode()).ok
        ack = self.get_until(lambda packet: packet.startswith("430"))
        assert ack is not None and json.loads(ack[3:])[0]["ok"], ack

    def close(self) -> None:
        """End the session with an Engine.IO CLOSE, as a leaving client does."""
        self._request("POST", self.url, b"1")
