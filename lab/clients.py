"""Real python-socketio clients that record what they receive, for tests to wait on."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import engineio
import requests
import socketio
from engineio.payload import Payload

from lab.deps import require_loopback_addresses

# python-engineio's client drops a long-polling connection when one poll brings more than
# 16 packets ("Unexpected packet from server, aborting"; python-engineio#142). A busy test
# server easily queues more than that for a client between two polls.
Payload.max_decode_packets = 1000

TRANSPORTS = ("websocket", "polling")


class _SourceBoundAdapter(requests.adapters.HTTPAdapter):
    """Long-polling requests that leave from one loopback address, as from one user's machine."""

    def __init__(self, source: str):
        self.source = source
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, source_address=(self.source, 0), **kwargs)


class _SourceBoundEngineIO(engineio.Client):
    """python-engineio's client, with its WebSocket leaving from `source` too.

    websocket-client cannot bind a source address, but it accepts a connected socket
    (`create_connection(socket=...)`): each connect and reconnect gets a fresh one.
    """

    source: str | None = None

    def _connect_websocket(self, url: str, headers: dict, engineio_path: str) -> bool:
        if self.source is None:
            return super()._connect_websocket(url, headers, engineio_path)
        parts = urlsplit(url)
        try:
            address = (parts.hostname, parts.port or 80)
            sock = socket.create_connection(address, self.request_timeout, source_address=(self.source, 0))
        except OSError:
            # What the library does when its own connect fails: a failed upgrade leaves the
            # client on polling; a failed connect raises the error its reconnect loop retries on.
            if self.sid:
                return False
            raise engineio.exceptions.ConnectionError("Connection error") from None
        self.websocket_extra_options = {"socket": sock}
        try:
            upgraded = super()._connect_websocket(url, headers, engineio_path)
        except BaseException:
            sock.close()
            raise
        if not upgraded:
            sock.close()
        return upgraded


class _SourceBoundClient(socketio.Client):
    def _engineio_client_class(self) -> type[engineio.Client]:
        return _SourceBoundEngineIO


class _InOrderEngineIO(_SourceBoundEngineIO):
    """Runs each message's handler in the read loop, one after the other, as a browser does.

    python-engineio's client starts a thread per message (`run_async=True`), so two messages
    that arrive in order may be handled out of it: a test that counts misordered messages
    would blame the server for its own client. Handlers here must not block (no `call`).
    """

    def _receive_packet(self, pkt: engineio.packet.Packet) -> None:
        if pkt.packet_type == engineio.packet.MESSAGE:
            self._trigger_event("message", pkt.data, run_async=False)
        else:
            super()._receive_packet(pkt)


class _InOrderClient(socketio.Client):
    def _engineio_client_class(self) -> type[engineio.Client]:
        return _InOrderEngineIO


class RefusableClient(socketio.Client):
    """A python-socketio client for a connect the server refuses: the refusal costs it no wait.

    Refused, python-socketio's connect() disconnects at once. Over long-polling, if the refusal
    arrived while python-engineio's write loop was still posting the connect, that loop finds
    the client no longer "connected" and ends without posting the CLOSE that disconnect() queued:
    the server keeps the session, and disconnect() waits on the open long-poll until the server's
    next ping, 25 s on (measured here: 2 refused connects in 12). So what is queued goes out first.
    """

    def disconnect(self) -> None:
        sending = self.eio.queue
        with sending.all_tasks_done:  # queue.Queue's own condition, which join() waits on
            sending.all_tasks_done.wait_for(
                lambda: sending.unfinished_tasks == 0 or self.eio.state != "connected", timeout=5
            )
        super().disconnect()


class RecordingClient:
    """A python-socketio client over one transport that records every event it receives.

    Tests wait on what it has received with a deadline (`wait_for`), never with
    a bare sleep. `source` binds its connections to one loopback address (127.0.3.1),
    so a balancer that hashes the client's address sees many clients, not one;
    `reconnection=True` lets it reconnect on its own, as a browser does (a failover drill).
    Connects and disconnects are recorded as the events "connect" and "disconnect".
    `in_order=True` handles the events one at a time in the order they arrived (_InOrderEngineIO).
    """

    def __init__(
        self,
        label: str = "client",
        *,
        source: str | None = None,
        reconnection: bool = False,
        in_order: bool = False,
    ):
        self.label = label
        self.source = source
        kind = _InOrderClient if in_order else socketio.Client if source is None else _SourceBoundClient
        if source is None:
            self.sio = kind(reconnection=reconnection)
        else:
            # Bound once first: macOS answers on 127.0.0.1 alone until lo0 is aliased, and a
            # client that quietly left from there would stand for no user of its own.
            require_loopback_addresses([source])
            http = requests.Session()
            http.mount("http://", _SourceBoundAdapter(source))
            self.sio = kind(reconnection=reconnection, http_session=http)
            self.sio.eio.source = source
        self.events: list[tuple[str, Any]] = []
        self._changed = threading.Condition()
        self.sio.on("*", self._record)
        self.sio.on("connect", lambda: self._record("connect"))
        self.sio.on("disconnect", lambda reason=None: self._record("disconnect", reason))

    def _record(self, event: str, data: Any = None) -> None:
        with self._changed:
            self.events.append((event, data))
            self._changed.notify_all()

    def connect(
        self, url: str, transport: str | None = "websocket", timeout: float = 10, auth: Any = None
    ) -> RecordingClient:
        """Connect over one transport; `None` is a browser's way: long-polling, then an upgrade
        to WebSocket if the server offers it (python-engineio tries it before connect returns).
        `auth` is sent with the connect, and again with every reconnect."""
        self.sio.connect(url, transports=[transport] if transport else None, wait_timeout=timeout, auth=auth)
        if transport and self.sio.transport() != transport:
            raise AssertionError(f"{self.label} asked for {transport}, got {self.sio.transport()}")
        return self

    def disconnect(self) -> None:
        """Disconnect for good. A client with `reconnection=True` whose server has gone retries
        forever in a thread of its own, which python-socketio's `disconnect()` leaves running.

        From here on a dropped connection starts no reconnect loop; `shutdown()` ends a loop
        already running; and a loop that a drop starts at this very moment (the teardown stops
        the servers first, so drops race this call) gives up after its first failed attempt.
        """
        self.sio.reconnection = False
        self.sio.reconnection_attempts = 1
        self.sio.shutdown()

    def drop(self) -> None:
        """Lose the connection as a wifi blip does: the TCP connection ends with no goodbye.

        The server sees it at once. A polite disconnect() over WebSocket takes about 3 s
        (the client waits out the close handshake), long enough for a short task to finish.
        """
        self.sio.eio.ws.sock.shutdown(socket.SHUT_RDWR)
        self.wait_for("the connection to drop", lambda client: not client.sio.connected)

    def call(self, event: str, data: Any = None, timeout: float = 5) -> Any:
        """Emit and wait for the server's acknowledgement."""
        return self.sio.call(event, data, timeout=timeout)

    def emit(self, event: str, data: Any = None) -> None:
        self.sio.emit(event, data)

    def received(self, event: str) -> list[Any]:
        with self._changed:
            return [data for name, data in self.events if name == event]

    def wait_for(self, what: str, condition: Callable[[RecordingClient], bool], timeout: float = 5) -> None:
        """Block until `condition(self)` holds, or fail naming `what` and what did arrive."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"{self.label}: timed out after {timeout}s waiting for {what}; "
                        f"received {self.events!r}"
                    )
                self._changed.wait(remaining)

    def wait_for_event(
        self, event: str, predicate: Callable[[Any], bool] = lambda data: True, timeout: float = 5
    ) -> Any:
        """Wait for one `event` whose payload satisfies `predicate`, and return that payload."""
        found: list[Any] = []

        def arrived(client: RecordingClient) -> bool:
            found[:] = [data for data in client.received(event) if predicate(data)]
            return bool(found)

        self.wait_for(f"a {event!r} event", arrived, timeout)
        return found[0]


def address_of_user(i: int) -> str:
    """User i's own address, 127.0.<i+1>.1: many users, each on their own machine.

    This and address_in_one_subnet are among lab/deps.py SPREAD_ADDRESSES, whose fix
    (LO0_ALIASES) makes macOS answer on them.
    """
    return f"127.0.{i + 1}.1"


def address_in_one_subnet(i: int) -> str:
    """User i's address in one /24, 127.0.0.<i+2>: one office, one campus."""
    return f"127.0.0.{i + 2}"


def address_behind_one_nat(i: int) -> None:
    """No address of its own: every user leaves from 127.0.0.1, as behind one NAT."""
    return None


def in_parallel(work: Callable, items: Sequence) -> list:
    """Run `work(item)` for all the items at once: they are I/O waits (connects, calls)."""
    with ThreadPoolExecutor(max_workers=max(1, len(items))) as pool:
        return list(pool.map(work, items))


def disconnect_all(clients: Sequence[RecordingClient]) -> None:
    """Disconnect every client at once: from a live python-engineio server, one websocket
    disconnect takes about 3 s by itself, so doing them in turn adds up."""
    in_parallel(RecordingClient.disconnect, clients)


def polling_session(url: str, requests_after_open: int) -> tuple[str, list[tuple[int, str]]]:
    """Open a raw Engine.IO long-polling session, then send it up to N requests.

    Each request goes on a new TCP connection, as a browser's long-poll GET and its
    POSTs do, so whatever balances connections decides afresh where each one goes.
    The first request after the open is the Socket.IO connect (`40`); the rest are
    pongs (`3`), which a server accepts at any time. Stops at the first answer that is
    not 200. Returns the session id and the (status, body) of each request sent.
    """
    opened = requests.get(
        f"{url}/socket.io/?EIO=4&transport=polling", headers={"Connection": "close"}, timeout=5
    )
    opened.raise_for_status()
    sid = json.loads(opened.text[1:])["sid"]  # the open packet: 0{"sid": ..., "upgrades": ...}
    answers: list[tuple[int, str]] = []
    for n in range(requests_after_open):
        response = requests.post(
            f"{url}/socket.io/?EIO=4&transport=polling&sid={sid}",
            data="40" if n == 0 else "3",
            headers={"Connection": "close"},
            timeout=5,
        )
        answers.append((response.status_code, response.text))
        if response.status_code != 200:
            break
    return sid, answers


def emit_through_queue(
    redis_url: str, event: str, data: Any = None, *, to: str | None = None, channel: str = "flask-socketio"
) -> None:
    """Publish one event on a Socket.IO Redis queue, as a worker would: a barrier for tests.

    Each instance delivers what it reads from the queue in order, so once a client has this
    event, anything published before it that was ever going to reach the client has.
    """
    manager = socketio.RedisManager(redis_url, channel=channel, write_only=True)
    manager.emit(event, data, namespace="/", room=to)
