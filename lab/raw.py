"""Engine.IO by hand, over a WebSocket or long-polling: for tests that send what no Socket.IO client would.

Garbage frames, packet types a client never sends, bodies over the size limit. Every wait
has a deadline (RAW_TIMEOUT): a server that hangs fails the test instead of stalling it.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
import websocket

# A healthy server answers in milliseconds; a hung request fails its test after this long.
RAW_TIMEOUT = 2.0
_GONE = (websocket.WebSocketException, ConnectionError, OSError)
_closer = ThreadPoolExecutor(max_workers=8, thread_name_prefix="raw-websocket-close")


def _connect_packet(auth: Any = None) -> str:
    """Socket.IO's CONNECT to the default namespace: `40`, then the `auth` payload as JSON, if any."""
    return "40" if auth is None else "40" + json.dumps(auth)


class RawWebSocket:
    """One Engine.IO session over a WebSocket, connected to the default namespace, driven by hand.

    `auth`, if given, goes in the Socket.IO CONNECT packet, as a page sends it with `io(url, {auth: ...})`.
    """

    def __init__(self, url: str, auth: Any = None):
        self.ws = websocket.create_connection(
            url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket", timeout=RAW_TIMEOUT
        )
        self.dropped = False  # the server has sent its close frame, or the connection is gone
        opened = self.ws.recv()  # 0{"sid": ..., "pingInterval": ...}
        self.eio_sid: str = json.loads(opened[1:])["sid"]
        self.ws.send(_connect_packet(auth))
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

    def after_close_handshake(self) -> bytes:
        """Answer the server's close frame, as a browser does, then the server's next bytes:
        b"" when it ends the connection, as it should (RFC 6455 section 7.1.1)."""
        while self.ws.recv_data(control_frame=True)[0] != websocket.ABNF.OPCODE_CLOSE:
            pass  # websocket-client answers the close frame with its own
        self.ws.sock.settimeout(RAW_TIMEOUT)
        return self.ws.sock.recv(4096)

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
    closed fails the next POST with RemoteDisconnected. `auth` as for RawWebSocket.
    """

    def __init__(self, url: str, auth: Any = None):
        self.base = f"{url}/socket.io/?EIO=4&transport=polling"
        opened = self._request("GET", self.base)
        opened.raise_for_status()
        self.eio_sid: str = json.loads(opened.text[1:])["sid"]
        self.url = f"{self.base}&sid={self.eio_sid}"
        assert self.post(_connect_packet(auth).encode()).status_code == 200
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
