"""A lean load client: thousands of Socket.IO connections from one asyncio process.

python-socketio's own client costs many times more CPU per received message (the
chapter 02 bench measures both), so a bench built on it would measure the client.
This one speaks just enough Engine.IO v4 / Socket.IO v5 over a hand-rolled WebSocket
client (RFC 6455, no dependency) to connect, answer heartbeats, emit with acks and count
`broadcast` deliveries:

    open       GET /socket.io/?EIO=4&transport=websocket -> server: 0{"sid": .., "pingInterval": ..}
    connect    client: 40                                -> server: 40{"sid": ..}
    heartbeat  server: 2                                 -> client: 3
    event      42["name",data]; with an ack: 42<id>["name",data] -> server: 43<id>[answer]

Every broadcast it triggers carries a sequence number in its text (`#17#`) and the
client keeps the send times, so a delivery's latency is its receive time minus the
send time of its trigger, on one clock. Per connection it checks that sequence
numbers only go up (exactly once, in order); per broadcast it counts deliveries
against the connections that were open when it was sent (none lost).

What a delivery costs. All sockets sit in one epoll set (Linux; elsewhere the `selectors`
module's, kqueue on macOS: `LoadClient(epoll=False)`) read by one event-loop callback, each
read is cut into frames in one loop, and in a burst sockets are read at most every
millisecond (BURST_READ_INTERVAL), so a delivery costs a share of one recv()
plus a few slices and counters. The bench records the client's own CPU per delivery in
every burst (`client_cost` in docs/bench/02-async-modes.json), so the client is shown
not to be the bottleneck. Neither the `websockets` library (a frame object and a
callback per frame) nor uvloop (the loop wakes about once a millisecond in a burst)
came close, when we measured them.

Like a browser, it offers per-message compression (RFC 7692) and inflates what a server that
agrees compresses; `deflate=False` offers none. `msgpack=` speaks python-socketio's msgpack
serializer (each Socket.IO packet one binary frame, as socket.io-msgpack-parser does in a browser).

Traffic goes to 127.0.0.0/8 only, and every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import itertools
import json
import os
import resource
import select
import selectors
import socket
import time
import zlib
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from time import perf_counter
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from lab.deps import require_loopback_addresses

BROADCAST_PREFIX = b'42["broadcast",'
SEQ_MARK = b"#"
# In a burst (measure(sequential=False)) sockets are read at most this often: each pass then
# finds many sockets with data, so the event loop wakes ~1,000 times a second instead of once
# per few deliveries, and a delivery costs a third less CPU. A burst's latencies (tens of ms
# and up) read up to this much late; one-at-a-time rounds read at once, so theirs are exact.
BURST_READ_INTERVAL = 0.001
READ_SIZE = 64 * 1024  # per recv(): Socket.IO frames here are tiny; a larger buffer costs more to allocate
HANDSHAKE_PATH = "/socket.io/?EIO=4&transport=websocket"
WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
MAX_RESPONSE_HEAD = 16 * 1024
# What a browser offers (Chromium and Firefox send exactly this): per-message deflate, RFC 7692.
DEFLATE_OFFER = "permessage-deflate; client_max_window_bits"
DEFLATE_TAIL = b"\x00\x00\xff\xff"  # RFC 7692 section 7.2.2: stripped by the sender, added back here
# Socket.IO packet types (the msgpack serializer sends them as numbers in a map).
CONNECT, EVENT, ACK, CONNECT_ERROR = 0, 2, 3, 4


def loopback_sources(count: int) -> tuple[str, ...]:
    """127.0.0.1, 127.0.1.1, 127.0.2.1, ...: each source address has its own ~28k ephemeral ports.

    Linux answers on all of them; macOS on 127.0.0.1 alone until lo0 is aliased, and LoadClient
    then refuses to start, naming the command (lab/deps.py LO0_ALIASES).
    """
    return tuple(f"127.0.{i}.1" for i in range(count))


HAS_EPOLL = hasattr(select, "epoll")  # Linux only
READABLE = getattr(select, "EPOLLIN", selectors.EVENT_READ)  # the one event the fleet asks for


class SelectorPoll:
    """The part of select.epoll the fleet uses, on selectors.DefaultSelector: kqueue on macOS.

    For where epoll is missing, and for tests that force it on Linux (where DefaultSelector is
    epoll again, behind the selectors module's keys). Its own fd is registered with the event
    loop, as epoll's is, so it must be a selector that has one (epoll, kqueue, devpoll).
    """

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        if not hasattr(self._selector, "fileno"):
            self._selector.close()
            raise RuntimeError(
                f"{type(self._selector).__name__} has no file descriptor of its own: "
                "the load client needs epoll (Linux) or kqueue (macOS, BSD)"
            )

    def register(self, fd: int, _mask: int) -> None:
        self._selector.register(fd, selectors.EVENT_READ)

    def unregister(self, fd: int) -> None:
        self._selector.unregister(fd)

    def poll(self, timeout: float) -> list[tuple[int, int]]:
        return [(key.fd, events) for key, events in self._selector.select(timeout)]

    def fileno(self) -> int:
        return self._selector.fileno()  # type: ignore[attr-defined]  (checked in __init__)

    def close(self) -> None:
        self._selector.close()


# Under gevent every websocket costs the server two descriptors (simple-websocket keeps a
# duplicate of the socket), so 10,000 clients need more than 20,000.
WANTED_FDS = 65_536


def raise_fd_limit() -> dict[str, Any]:
    """Raise RLIMIT_NOFILE as far as allowed, and say what it is now (and why not, if not).

    The soft limit goes up to the hard limit; the hard limit itself only with privilege
    (root, or CAP_SYS_RESOURCE). Children started afterwards (the servers) inherit it.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < WANTED_FDS:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, WANTED_FDS))
            hard = WANTED_FDS
        except (ValueError, OSError):
            pass  # unprivileged: the hard limit stays, and the report below says what it is
    # An unlimited hard limit is still capped by the kernel's nr_open.
    target = hard if hard != resource.RLIM_INFINITY else 1_048_576
    report: dict[str, Any] = {"soft_before": soft, "hard": hard}
    if target <= soft:
        return {**report, "soft": soft, "raised": False, "note": "already at the hard limit"}
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        return {**report, "soft": soft, "raised": False, "note": f"could not raise the soft limit: {exc}"}
    return {**report, "soft": target, "raised": True}


def require_loopback(host: str) -> None:
    """Refuse any address outside 127.0.0.0/8: the bench loads this machine only."""
    if host == "localhost":
        return
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"{host} is not a loopback address; the load client only talks to 127.0.0.0/8")


def _server_address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    require_loopback(parts.hostname or "")
    return parts.hostname or "", parts.port or 80


def latency_summary(latencies: Any) -> dict[str, float | int | None]:
    """p50, p99 and max of latencies in seconds, reported in milliseconds."""
    ordered = sorted(latencies)
    if not ordered:
        return {"count": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {"count": len(ordered), "p50_ms": at(0.50), "p99_ms": at(0.99), "max_ms": at(1.0)}


def websocket_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One final client frame (RFC 6455 section 5.2), masked with an all-zero key.

    Clients must mask (section 5.3) and every server checks the mask bit, but a zero key leaves
    the payload as it is: no XOR in Python. The RFC asks for an unpredictable key so that a
    client's crafted bytes cannot poison the caches of intermediaries that misread the
    stream; on loopback, to our own servers, there are none.
    """
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 0x10000:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + b"\0\0\0\0" + payload


def _accept_key(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + WEBSOCKET_GUID).digest())


class LeanConnection:
    """One Socket.IO connection over a hand-rolled WebSocket client (RFC 6455; RFC 7692 if asked).

    Its socket is read by the fleet (`LoadClient._drain`), which hands each read to
    `data_received`. After the HTTP upgrade, a read is cut into frames in one loop and each text
    message goes straight to the fleet's `on_packet`: no frame objects, no message queue and no
    task wake-up per message, which is what a general-purpose WebSocket library spends its time on.
    """

    def __init__(
        self, fleet: LoadClient, index: int, sock: socket.socket, host: str, port: int, latencies: array
    ):
        self.fleet = fleet
        self.index = index
        self.latencies = latencies
        self.sock = sock
        self.fd = sock.fileno()
        self.closed = False
        self.sid = ""
        self.last_seq = -1
        self.alive = True
        self.pending: dict[int, asyncio.Future] = {}
        self.events: list[tuple[str, Any]] = []
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[bytes] = loop.create_future()  # the Engine.IO open packet
        self.joined: asyncio.Future[dict] = loop.create_future()  # the namespace's 40{"sid": ..}
        self._host = host if ":" not in host else f"[{host}]"
        self._port = port
        self._key = base64.b64encode(os.urandom(16))
        self._upgraded = False
        self._ready = False  # the open packet is in: packets go to the fleet
        self._buffer = bytearray()  # an incomplete frame (or response head), kept between reads
        self._need = 0  # bytes the buffer must hold before it is worth parsing again
        self.wire_bytes = 0  # every byte read from the server, HTTP upgrade and frames alike
        self._fragments: list[bytes] | None = None  # a fragmented text message being assembled
        self._unsent = bytearray()  # what the socket would not take yet
        self._inflater: Any = None  # zlib's decompressor, when the server accepted per-message deflate

    def start(self) -> None:
        """Ask for the upgrade; the answer comes through `data_received` like everything after it."""
        extensions = f"Sec-WebSocket-Extensions: {DEFLATE_OFFER}\r\n" if self.fleet.deflate else ""
        self._write(
            f"GET {HANDSHAKE_PATH} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {self._key.decode()}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extensions}\r\n".encode()
        )

    # --8<-- [start:frames]
    def data_received(self, data: bytes) -> None:
        self.wire_bytes += len(data)
        buffer = self._buffer
        if buffer:
            buffer += data
            if len(buffer) < self._need:
                return  # a large frame still arriving: parse it once, when it is all here
            data = bytes(buffer)
            buffer.clear()
        if not self._upgraded:
            data = self._upgrade(data)
            if not data:
                return
        # Server frames are unmasked: byte 0 is FIN and the opcode, byte 1 the length (126: a
        # 2-byte length follows, 127: an 8-byte one), then the payload. A read holds many.
        self._need = 0
        end = len(data)
        pos = 0
        ready = self._ready
        on_packet = self.fleet.on_packet
        while pos + 2 <= end:
            head = data[pos]
            start = pos + 2
            size = data[pos + 1]
            if size >= 126:
                if size == 126:
                    start += 2
                elif size == 127:
                    start += 8
                else:
                    self._protocol_error("a masked frame from the server")
                    return
                if start > end:
                    break
                size = int.from_bytes(data[pos + 2 : start], "big")
            stop = start + size
            if stop > end:
                self._need = stop - pos
                break
            pos = stop
            if head == 0x81 and ready:  # a final text frame: one Engine.IO packet
                on_packet(self, data[start:stop])
            else:
                self._on_frame(head, data[start:stop])
                if self.closed:
                    return
                ready = self._ready
        if pos < end:
            buffer += data[pos:]  # compacted once per read, not per frame

    # --8<-- [end:frames]

    # -- the rare paths ------------------------------------------------------------------------

    def _upgrade(self, data: bytes) -> bytes:
        """Check the server's 101 answer; return what follows it (frames), b"" until it is all in."""
        head_end = data.find(b"\r\n\r\n")
        if head_end < 0:
            if len(data) > MAX_RESPONSE_HEAD:
                self._protocol_error("no end to the HTTP response head")
            else:
                self._buffer += data
                self._need = len(data) + 1
            return b""
        status, *lines = data[:head_end].decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if status.split(" ", 2)[1:2] != ["101"]:
            self._protocol_error(f"the server refused the upgrade: {status!r:.80}")
        elif headers.get("sec-websocket-accept", "").encode() != _accept_key(self._key):
            self._protocol_error("wrong Sec-WebSocket-Accept")
        else:
            self._upgraded = True
            if "permessage-deflate" in headers.get("sec-websocket-extensions", ""):
                # The server keeps its compression context between messages (no
                # server_no_context_takeover was asked for), so one decompressor per connection.
                self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            return data[head_end + 4 :]
        return b""

    def _on_frame(self, head: int, payload: bytes) -> None:
        opcode = head & 0x0F
        if head & 0x40:  # RSV1: a compressed message (RFC 7692), only if the extension was agreed
            if self._inflater is None or not head & 0x80:
                self._protocol_error("a compressed frame that was not agreed, or fragmented")
                return
            payload = self._inflater.decompress(payload + DEFLATE_TAIL)
        if opcode == 0x2 and head & 0x80 and self._ready:  # binary: a msgpack Socket.IO packet
            self.fleet.on_binary(self, payload)
        elif opcode == 0x1:  # text: before the open packet, or the first of a fragmented message
            if head & 0x80:
                self._on_message(payload)
            else:
                self._fragments = [payload]
        elif opcode == 0x0:  # a continuation (of a binary message, if no text is being assembled)
            if self._fragments is not None:
                self._fragments.append(payload)
                if head & 0x80:
                    message, self._fragments = b"".join(self._fragments), None
                    self._on_message(message)
        elif opcode == 0x9:  # a ping: answer with a pong carrying the same payload
            self._write(websocket_frame(payload, 0xA))
        elif opcode == 0x8:  # the server closes: for the bench, a lost connection
            self.abort("the server sent a close frame")
        elif opcode != 0xA:  # binary and not msgpack (Socket.IO attachments): never sent to this client
            self.fleet.unexpected += 1

    def _on_message(self, message: bytes) -> None:
        if self._ready:
            self.fleet.on_packet(self, message)
        elif message[:2] == b"0{":  # 0{"sid":..}: the server sends nothing else until we join
            self._ready = True
            self.opened.set_result(message)
        else:
            self._protocol_error(f"expected an Engine.IO open packet, got {message!r:.80}")

    def _protocol_error(self, what: str) -> None:
        if self.opened.done():
            self.fleet.unexpected += 1
        else:
            self.opened.set_exception(ConnectionError(what))
        self.abort(what)

    # -- sending -------------------------------------------------------------------------------

    def send(self, text: str) -> None:
        """Send one Engine.IO packet as a text frame: written now, no await needed."""
        if not self.alive:
            raise ConnectionError("the connection is closed")
        self._write(websocket_frame(text.encode()))

    def send_binary(self, data: bytes) -> None:
        """Send one binary message (a msgpack Socket.IO packet)."""
        if not self.alive:
            raise ConnectionError("the connection is closed")
        self._write(websocket_frame(data, 0x2))

    def _write(self, data: bytes) -> None:
        if self.closed:
            return
        if not self._unsent:
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self.abort(f"send failed: {exc}")
                return
            if sent == len(data):
                return
            data = data[sent:]
            asyncio.get_running_loop().add_writer(self.fd, self._flush)
        self._unsent += data

    def _flush(self) -> None:
        try:
            sent = self.sock.send(self._unsent)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.abort(f"send failed: {exc}")
            return
        del self._unsent[:sent]
        if not self._unsent:
            asyncio.get_running_loop().remove_writer(self.fd)

    def abort(self, why: str = "aborted") -> None:
        """Close the socket now (no close handshake) and report the loss once."""
        if self.closed:
            return
        self.closed = True
        if self._unsent:
            asyncio.get_running_loop().remove_writer(self.fd)
        self.fleet.forget(self)
        self.sock.close()
        if self._ready:
            self.fleet.on_lost(self)
        elif not self.opened.done():
            self.opened.set_exception(ConnectionError(f"connection lost during the handshake: {why}"))


@dataclass
class ConnectReport:
    requested: int
    connected: int
    seconds: float
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return self.requested - self.connected


@dataclass
class DeliveryReport:
    """What came back for a set of broadcasts: deliveries, losses, latencies and the client's own cost."""

    broadcasts: int
    expected: int
    delivered: int
    seconds: float
    client_cpu_seconds: float
    latency: dict[str, float | int | None]
    disorder: int  # deliveries that came after a later broadcast (or twice) on one connection
    dropped: int  # connections lost while it ran
    latency_by_server: list[dict[str, float | int | None]] = field(default_factory=list)
    read_interval: float = 0.0  # sockets read at most this often: latencies may read up to this late

    @property
    def lost(self) -> int:
        return self.expected - self.delivered

    @property
    def complete(self) -> bool:
        """Every broadcast reached every connection (order is `disorder`'s business)."""
        return self.lost == 0 and self.dropped == 0

    def as_dict(self) -> dict[str, Any]:
        per_delivery = self.client_cpu_seconds / self.delivered if self.delivered else None
        return {
            "broadcasts": self.broadcasts,
            "expected": self.expected,
            "delivered": self.delivered,
            "lost": self.lost,
            "disorder": self.disorder,
            "dropped": self.dropped,
            "seconds": round(self.seconds, 4),
            "deliveries_per_s": round(self.delivered / self.seconds) if self.seconds > 0 else None,
            "client_cpu_s": round(self.client_cpu_seconds, 4),
            "client_us_per_delivery": round(per_delivery * 1e6, 2) if per_delivery else None,
            # Above 1.0 the client would be the bottleneck: it used all of one core.
            "client_cpu_share": round(self.client_cpu_seconds / self.seconds, 3) if self.seconds else None,
            "latency": self.latency,
            "read_interval_ms": self.read_interval * 1000,
            **({"latency_by_server": self.latency_by_server} if len(self.latency_by_server) > 1 else {}),
        }


class LoadClient:
    """A fleet of lean connections to one server, sharing counters so each delivery costs little.

    `url` is one server, or several (instances of one app): connection i goes to url i mod n,
    and latencies are also kept per server (`DeliveryReport.latency_by_server`);
    `sources` are the loopback addresses connections are bound to, round-robin;
    `concurrency` bounds the handshakes in flight (a threading server drops a storm);
    `keep_events` records every event's payload per connection (for correctness tests, not load);
    `answer_heartbeats=False` leaves the server's pings unanswered (to show that it matters);
    `texts`: broadcast n's text is `#n#` then texts[n % len(texts)] (what it carries, for its size);
    `deflate` offers per-message compression, as every browser does (False: no offer);
    `msgpack` (the msgpack module) speaks python-socketio's msgpack serializer instead of JSON;
    `epoll=False` reads the sockets through the `selectors` module (SelectorPoll), as where
    there is no epoll.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        sources: tuple[str, ...] = ("127.0.0.1",),
        concurrency: int = 64,
        connect_timeout: float = 10.0,
        keep_events: bool = False,
        answer_heartbeats: bool = True,
        texts: Sequence[str] = (),
        deflate: bool = True,
        msgpack: ModuleType | None = None,
        epoll: bool = HAS_EPOLL,
    ):
        self.servers = [_server_address(one) for one in ([url] if isinstance(url, str) else url)]
        for source in sources:
            require_loopback(source)
        require_loopback_addresses(sources)  # bound once each: macOS answers on 127.0.0.1 alone
        if epoll and not HAS_EPOLL:
            raise ValueError("select.epoll is Linux only: use epoll=False (the selectors module)")
        self.epoll = epoll
        self.sources = sources
        self.concurrency = concurrency
        self.connect_timeout = connect_timeout
        self.keep_events = keep_events
        self.answer_heartbeats = answer_heartbeats
        self.heartbeats = 0  # server pings answered
        self.texts = list(texts)
        # The same texts as JSON string contents, for the packets written by hand.
        self._texts_json = [json.dumps(text)[1:-1] for text in self.texts]
        self.deflate = deflate
        self.msgpack = msgpack
        self.connections: list[LeanConnection] = []  # joined the namespace, in order
        self._opened: list[LeanConnection] = []  # every websocket opened, to abort at close()
        self._by_fd: dict[int, LeanConnection] = {}
        # Every connection's socket, read by _drain: an epoll set, or SelectorPoll standing in.
        self._epoll: select.epoll | SelectorPoll | None = None
        self._read_interval = 0.0  # > 0: after a read, wait this long before the next (a burst)
        self._reading = False  # the epoll fd is registered with the event loop
        self._ack_ids = itertools.count()
        self._indexes = itertools.count()
        # Broadcast bookkeeping, indexed by sequence number.
        self.sent_at: list[float] = []
        self.expected: list[int] = []
        self.delivered = array("q")
        # One array per server: a delivery's latency goes to its connection's server's array.
        self.latencies = [array("d") for _ in self.servers]
        self.last_delivery_at = 0.0
        self.disorder = 0
        self.dropped = 0
        self.unexpected = 0
        self.late = 0  # deliveries of broadcasts whose wait had already given up
        self._counting_from = 0
        self._outstanding = 0
        self._all_in: asyncio.Future | None = None
        self._closing = False

    @property
    def live(self) -> int:
        return sum(1 for conn in self.connections if conn.alive)

    # -- connecting ---------------------------------------------------------------------------

    async def open(self, count: int, *, timeout: float, auth: dict[str, Any] | None = None) -> ConnectReport:
        """Open `count` more connections, at most `concurrency` handshakes at a time, by a deadline.

        `auth` goes with each connect, as a browser's `io(url, {auth})` sends it (chapter 06's cursors).
        """
        started = time.perf_counter()
        gate = asyncio.Semaphore(self.concurrency)
        errors: Counter[str] = Counter()

        async def one(index: int) -> None:
            async with gate:
                try:
                    async with asyncio.timeout(self.connect_timeout):
                        self.connections.append(await self._connect_one(index, auth))
                except Exception as exc:  # every failure is a result: counted by kind
                    errors[f"{type(exc).__name__}: {exc}"[:160]] += 1

        before = len(self.connections)
        tasks = [asyncio.create_task(one(next(self._indexes))) for _ in range(count)]
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            errors[f"not connected within the {timeout:.0f}s deadline"] += len(pending)
            await asyncio.wait(pending, timeout=5)
        connected = len(self.connections) - before
        return ConnectReport(count, connected, time.perf_counter() - started, dict(errors))

    async def _connect_one(self, index: int, auth: dict[str, Any] | None = None) -> LeanConnection:
        servers = len(self.servers)
        host, port = self.servers[index % servers]
        source = self.sources[(index // servers) % len(self.sources)]
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        conn: LeanConnection | None = None
        try:
            # The caller's deadline bounds all of it: TCP connect, upgrade, open packet, join.
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as asyncio's transports do
            sock.bind((source, 0))
            await asyncio.get_running_loop().sock_connect(sock, (host, port))
            conn = LeanConnection(self, index, sock, host, port, self.latencies[index % servers])
            self._opened.append(conn)
            self._watch(conn)
            conn.start()
            await conn.opened  # the upgrade and 0{"sid": ..}
            if self.msgpack:
                connect = {"type": CONNECT, "nsp": "/", **({"data": auth} if auth else {})}
                conn.send_binary(self.msgpack.packb(connect))
            else:
                conn.send("40" + (json.dumps(auth, separators=(",", ":")) if auth else ""))
            conn.sid = (await conn.joined).get("sid", "")
        except BaseException:
            if conn is None:
                sock.close()
            else:
                conn.opened.cancel()  # nobody waits on these any more
                conn.joined.cancel()
                conn.abort("gave up connecting")
            raise
        return conn

    def _watch(self, conn: LeanConnection) -> None:
        if self._epoll is None:
            self._epoll = select.epoll() if self.epoll else SelectorPoll()
            self._resume_reading()
        self._by_fd[conn.fd] = conn
        self._epoll.register(conn.fd, READABLE)

    def forget(self, conn: LeanConnection) -> None:
        """Stop reading a connection's socket (before it is closed, so its fd is not reused yet)."""
        if self._by_fd.pop(conn.fd, None) is conn and self._epoll is not None:
            self._epoll.unregister(conn.fd)

    def _drain(self) -> None:
        """Read every socket that has data, in one event-loop callback.

        The connections' sockets sit in one epoll set of our own, and only that set's fd is
        registered with the event loop, so a burst pauses reading with one call (see
        BURST_READ_INTERVAL) where asyncio transports would need one per connection, each way.
        A read costs a recv() and a dict lookup. Level-triggered: a socket with more left is
        reported again on the next pass.
        """
        events = self._epoll.poll(0)  # type: ignore[union-attr]  (set before any socket)
        if events and self._read_interval:
            asyncio.get_running_loop().remove_reader(self._epoll.fileno())  # type: ignore[union-attr]
            self._reading = False
            asyncio.get_running_loop().call_later(self._read_interval, self._resume_reading)
        by_fd = self._by_fd
        for fd, _ in events:
            conn = by_fd.get(fd)
            if conn is None:
                continue
            try:
                data = conn.sock.recv(READ_SIZE)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                conn.abort(f"recv failed: {exc}")
                continue
            if data:
                conn.data_received(data)
            else:
                conn.abort("the server closed the connection")

    def _resume_reading(self) -> None:
        if self._epoll is not None and not self._reading:
            asyncio.get_running_loop().add_reader(self._epoll.fileno(), self._drain)
            self._reading = True

    # -- receiving (called through data_received for every packet) -----------------------------

    # --8<-- [start:hot-path]
    def on_packet(self, conn: LeanConnection, data: bytes) -> None:
        if data.startswith(BROADCAST_PREFIX):
            self._on_broadcast(conn, data)
        elif data == b"2":
            if self.answer_heartbeats and conn.alive:
                self.heartbeats += 1
                conn.send("3")
        elif data[:2] == b"43":
            self._on_ack(conn, data)
        elif data[:2] == b"42":
            if self.keep_events:
                name, *args = json.loads(data[2:])
                conn.events.append((name, args[0] if args else None))
        elif data[:2] == b"40":
            if not conn.joined.done():
                conn.joined.set_result(json.loads(data[2:] or b"{}"))
        elif data[:2] == b"44":
            if not conn.joined.done():
                conn.joined.set_exception(ConnectionRefusedError(f"namespace refused: {data[2:]!r:.80}"))
        elif data[:1] == b"1" or data[:2] == b"41":  # the server closes the session
            conn.abort("the server closed the session")
        else:
            self.unexpected += 1

    def _on_broadcast(self, conn: LeanConnection, data: bytes) -> None:
        now = perf_counter()
        if self.keep_events:
            conn.events.append(("broadcast", json.loads(data[2:])[1]))
        start = data.find(SEQ_MARK, 15) + 1
        try:
            seq = int(data[start : data.index(SEQ_MARK, start)])
        except ValueError:
            return  # someone else's broadcast
        self._count_delivery(conn, seq, now)

    def _count_delivery(self, conn: LeanConnection, seq: int, now: float) -> None:
        try:
            sent = self.sent_at[seq]
        except IndexError:
            return  # someone else's broadcast
        if seq <= conn.last_seq:
            self.disorder += 1  # counted all the same: a repeat shows as more deliveries than expected
        else:
            conn.last_seq = seq
        self.delivered[seq] += 1
        conn.latencies.append(now - sent)
        self.last_delivery_at = now
        if seq < self._counting_from:
            self.late += 1
        else:
            self._outstanding -= 1
            if self._outstanding == 0 and self._all_in is not None and not self._all_in.done():
                self._all_in.set_result(None)

    # --8<-- [end:hot-path]

    def on_binary(self, conn: LeanConnection, data: bytes) -> None:
        """A msgpack Socket.IO packet: {"type": .., "nsp": "/", "data": .., "id": ..}."""
        packet = self.msgpack.unpackb(data) if self.msgpack else {}
        kind, args = packet.get("type"), packet.get("data")
        if kind == EVENT and isinstance(args, list) and args[:1] == ["broadcast"]:
            now = perf_counter()
            if self.keep_events:
                conn.events.append(("broadcast", args[1]))
            _, _, rest = str(args[1].get("text", "")).partition("#")  # "#<seq>#..."
            seq, mark, _ = rest.partition("#")
            if mark and seq.isdigit():
                self._count_delivery(conn, int(seq), now)
        elif kind == EVENT and isinstance(args, list):
            if self.keep_events:
                conn.events.append((args[0], args[1] if len(args) > 1 else None))
        elif kind == ACK:
            future = conn.pending.pop(packet.get("id"), None)
            if future is not None and not future.done():
                future.set_result(args[0] if len(args) == 1 else args)
        elif kind == CONNECT:
            if not conn.joined.done():
                conn.joined.set_result(args or {})
        elif kind == CONNECT_ERROR:
            if not conn.joined.done():
                conn.joined.set_exception(ConnectionRefusedError(f"namespace refused: {args!r:.80}"))
        else:
            self.unexpected += 1

    def _send_event(self, conn: LeanConnection, payload: list[Any], ack_id: int | None = None) -> None:
        """One Socket.IO event, in JSON text (`42<id>[...]`) or as a msgpack map."""
        if self.msgpack:
            packet: dict[str, Any] = {"type": EVENT, "nsp": "/", "data": payload}
            if ack_id is not None:
                packet["id"] = ack_id
            conn.send_binary(self.msgpack.packb(packet))
        else:
            ack = "" if ack_id is None else str(ack_id)
            conn.send(f"42{ack}" + json.dumps(payload, separators=(",", ":")))

    def _on_ack(self, conn: LeanConnection, data: bytes) -> None:
        bracket = data.find(b"[")
        future = conn.pending.pop(int(data[2:bracket]), None)
        if future is not None and not future.done():
            args = json.loads(data[bracket:])
            future.set_result(args[0] if len(args) == 1 else args)

    def on_lost(self, conn: LeanConnection) -> None:
        if conn.alive and not self._closing:
            self.dropped += 1
        conn.alive = False
        for future in conn.pending.values():
            if not future.done():
                future.set_exception(ConnectionError("connection lost before the ack"))
        if not conn.joined.done():
            conn.joined.set_exception(ConnectionError("connection lost before joining"))

    # -- sending -------------------------------------------------------------------------------

    async def emit(self, conn: LeanConnection, event: str, data: Any = None) -> None:
        self._send_event(conn, [event] if data is None else [event, data])

    async def call(self, conn: LeanConnection, event: str, data: Any = None, *, timeout: float = 5.0) -> Any:
        """Emit with an ack id and return the server's answer (its single argument, like python-socketio)."""
        ack_id = next(self._ack_ids)
        future = asyncio.get_running_loop().create_future()
        conn.pending[ack_id] = future
        payload = [event] if data is None else [event, data]
        try:
            self._send_event(conn, payload, ack_id)
            async with asyncio.timeout(timeout):
                return await future
        finally:
            conn.pending.pop(ack_id, None)

    async def round_trip(self, conn: LeanConnection, *, timeout: float = 10.0) -> float:
        """Seconds from emitting `ping` to receiving its ack."""
        started = time.perf_counter()
        await self.call(conn, "ping", timeout=timeout)
        return time.perf_counter() - started

    async def trigger_broadcast(self, sender: LeanConnection) -> int:
        """Ask the server to broadcast a numbered text; every live connection should get it once."""
        seq = self.expect_broadcast()
        which = seq % len(self.texts) if self.texts else None
        if self.msgpack:
            text = self.texts[which] if which is not None else ""
            self._send_event(sender, ["broadcast", {"text": f"#{seq}#{text}"}])
        else:
            text = self._texts_json[which] if which is not None else ""
            sender.send(f'42["broadcast",{{"text":"#{seq}#{text}"}}]')
        return seq

    def expect_broadcast(self) -> int:
        """The next broadcast's number, its send time now: every live connection should get it once.

        What `trigger_broadcast` sends before it; a subclass that triggers another event calls it too.
        """
        seq = len(self.sent_at)
        expected = self.live
        self.expected.append(expected)
        self.delivered.append(0)
        self._outstanding += expected
        self.sent_at.append(time.perf_counter())
        return seq

    async def wait_delivered(self, timeout: float) -> bool:
        """Wait until every broadcast sent so far reached every connection; False at the deadline."""
        if self._outstanding <= 0:
            return True
        self._all_in = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(self._all_in, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            self._all_in = None

    def _give_up_waiting(self) -> None:
        """Deliveries of broadcasts sent so far no longer count towards the next wait."""
        self._counting_from = len(self.sent_at)
        self._outstanding = 0

    # -- measuring -----------------------------------------------------------------------------

    async def measure(
        self, broadcasts: int, *, sequential: bool, timeout: float, sender: int = 0
    ) -> DeliveryReport:
        """Trigger `broadcasts` broadcasts from connection `sender` and count what comes back.

        sequential=True waits for each broadcast to reach everyone before sending the next
        (latency of one fan-out); False sends them back to back (a burst: throughput), and reads
        sockets at most every BURST_READ_INTERVAL (the report says so).
        """
        first_seq = len(self.sent_at)
        first_latency = [len(each) for each in self.latencies]
        disorder, dropped = self.disorder, self.dropped
        deadline = time.monotonic() + timeout
        cpu_started = time.process_time()
        started = time.perf_counter()
        self.last_delivery_at = started
        conn = self.connections[sender]
        self._read_interval = 0.0 if sequential else BURST_READ_INTERVAL
        try:
            for _ in range(broadcasts):
                await self.trigger_broadcast(conn)
                if sequential and not await self.wait_delivered(deadline - time.monotonic()):
                    break
            await self.wait_delivered(max(0.0, deadline - time.monotonic()))
        finally:
            self._read_interval = 0.0
        cpu = time.process_time() - cpu_started
        self._give_up_waiting()
        seqs = range(first_seq, len(self.sent_at))
        fresh = [each[start:] for each, start in zip(self.latencies, first_latency, strict=True)]
        return DeliveryReport(
            broadcasts=len(seqs),
            expected=sum(self.expected[s] for s in seqs),
            delivered=sum(self.delivered[s] for s in seqs),
            seconds=self.last_delivery_at - started,
            client_cpu_seconds=cpu,
            latency=latency_summary(itertools.chain.from_iterable(fresh)),
            latency_by_server=[latency_summary(each) for each in fresh],
            disorder=self.disorder - disorder,
            dropped=self.dropped - dropped,
            read_interval=0.0 if sequential else BURST_READ_INTERVAL,
        )

    # -- closing -------------------------------------------------------------------------------

    async def close(self) -> None:
        """Drop every connection at once (an abort, not a polite close: thousands of close
        handshakes would take longer than the measurement)."""
        self._closing = True
        for conn in self._opened:
            conn.abort("closed by the load client")
        self._opened.clear()
        if self._epoll is not None:
            if self._reading:
                asyncio.get_running_loop().remove_reader(self._epoll.fileno())
                self._reading = False
            self._epoll.close()
            self._epoll = None
        await asyncio.sleep(0)

    async def __aenter__(self) -> LoadClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
