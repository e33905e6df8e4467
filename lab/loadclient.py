"""A lean load client: thousands of Socket.IO connections from one asyncio process.

python-socketio's own client costs about 80 µs of CPU per received message, so a
bench built on it would measure the client. This one speaks just enough
Engine.IO v4 / Socket.IO v5 over the pinned `websockets` library to connect,
answer heartbeats, emit with acks and count `broadcast` deliveries, at a few µs each:

    open       GET /socket.io/?EIO=4&transport=websocket -> server: 0{"sid": .., "pingInterval": ..}
    connect    client: 40                                -> server: 40{"sid": ..}
    heartbeat  server: 2                                 -> client: 3
    event      42["name",data]; with an ack: 42<id>["name",data] -> server: 43<id>[answer]

Every broadcast it triggers carries a sequence number in its text (`#17#`) and the
client keeps the send times, so a delivery's latency is its receive time minus the
send time of its trigger, on one clock. Per connection it checks that sequence
numbers only go up (exactly once, in order); per broadcast it counts deliveries
against the connections that were open when it was sent (none lost).

Traffic goes to 127.0.0.0/8 only, and every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import json
import resource
import time
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.frames import Frame, Opcode

BROADCAST_PREFIX = b'42["broadcast",'
SEQ_MARK = b"#"
READ_SIZE = 64 * 1024


def loopback_sources(count: int) -> tuple[str, ...]:
    """127.0.0.1, 127.0.1.1, 127.0.2.1, ...: each source address has its own ~28k ephemeral ports."""
    return tuple(f"127.0.{i}.1" for i in range(count))


def raise_fd_limit() -> dict[str, Any]:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit, and say what it is now (and why not, if not).

    Children started afterwards (the servers under test) inherit the raised limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
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


def _websocket_url(url: str) -> str:
    parts = urlsplit(url)
    require_loopback(parts.hostname or "")
    return f"ws://{parts.hostname}:{parts.port}/socket.io/?EIO=4&transport=websocket"


def latency_summary(latencies: Any) -> dict[str, float | int | None]:
    """p50, p99 and max of latencies in seconds, reported in milliseconds."""
    ordered = sorted(latencies)
    if not ordered:
        return {"count": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {"count": len(ordered), "p50_ms": at(0.50), "p99_ms": at(0.99), "max_ms": at(1.0)}


class LeanConnection(ClientConnection):
    """One Socket.IO connection. Once its fleet is set, each text frame goes straight to the
    fleet's `on_packet`: no message queue and no task wake-up per message, which is most of
    what a `recv()` loop costs."""

    fleet: LoadClient | None = None
    index = -1
    latencies: array
    sid = ""
    last_seq = -1
    alive = True
    pending: dict[int, asyncio.Future]
    joined: asyncio.Future
    events: list[tuple[str, Any]]
    _fragments: list[bytes] | None = None

    def process_event(self, event: Frame) -> None:
        fleet = self.fleet
        if fleet is None:  # the handshake: recv() reads the Engine.IO open packet
            super().process_event(event)
            return
        opcode = event.opcode
        if opcode is Opcode.TEXT:
            if event.fin:
                fleet.on_packet(self, event.data)
            else:
                self._fragments = [event.data]
        elif opcode is Opcode.CONT and self._fragments is not None:
            self._fragments.append(event.data)
            if event.fin:
                data, self._fragments = b"".join(self._fragments), None
                fleet.on_packet(self, data)
        elif opcode is Opcode.BINARY:
            fleet.unexpected += 1
        else:  # close, ping and pong frames: the websockets protocol answers them
            super().process_event(event)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.fleet is not None:
            self.fleet.on_lost(self)


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
    `text_padding` lengthens each broadcast's text by that many characters.
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
        text_padding: int = 0,
    ):
        self.ws_urls = [_websocket_url(one) for one in ([url] if isinstance(url, str) else url)]
        for source in sources:
            require_loopback(source)
        self.sources = sources
        self.concurrency = concurrency
        self.connect_timeout = connect_timeout
        self.keep_events = keep_events
        self.answer_heartbeats = answer_heartbeats
        self.heartbeats = 0  # server pings answered
        self.padding = "." * text_padding
        self.connections: list[LeanConnection] = []  # joined the namespace, in order
        self._opened: list[LeanConnection] = []  # every websocket opened, to abort at close()
        self._tasks: set[asyncio.Task] = set()
        self._ack_ids = itertools.count()
        self._indexes = itertools.count()
        # Broadcast bookkeeping, indexed by sequence number.
        self.sent_at: list[float] = []
        self.expected: list[int] = []
        self.delivered = array("q")
        # One array per server: a delivery's latency goes to its connection's server's array.
        self.latencies = [array("d") for _ in self.ws_urls]
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

    async def open(self, count: int, *, timeout: float) -> ConnectReport:
        """Open `count` more connections, at most `concurrency` handshakes at a time, by a deadline."""
        started = time.perf_counter()
        gate = asyncio.Semaphore(self.concurrency)
        errors: Counter[str] = Counter()

        async def one(index: int) -> None:
            async with gate:
                try:
                    async with asyncio.timeout(self.connect_timeout):
                        self.connections.append(await self._connect_one(index))
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

    async def _connect_one(self, index: int) -> LeanConnection:
        servers = len(self.ws_urls)
        source = self.sources[(index // servers) % len(self.sources)]
        conn = await connect(
            self.ws_urls[index % servers],
            create_connection=LeanConnection,
            compression=None,  # permessage-deflate would cost more CPU than everything else
            proxy=None,
            ping_interval=None,  # Engine.IO has its own heartbeat (packets 2 and 3)
            open_timeout=None,  # the caller's deadline applies
            close_timeout=1,
            user_agent_header=None,
            local_addr=(source, 0),
        )
        self._opened.append(conn)
        # asyncio reads with recv(256 KiB); a buffer that size costs ~35 µs per read on Linux
        # (glibc maps fresh pages for it), more than everything else a delivery costs. Socket.IO
        # frames here are tiny, so 64 KiB loses nothing.
        if hasattr(conn.transport, "max_size"):
            conn.transport.max_size = READ_SIZE
        opening = await conn.recv()  # 0{"sid":..}: the server sends nothing else until we join
        if not isinstance(opening, str) or not opening.startswith("0{"):
            raise ConnectionError(f"expected an Engine.IO open packet, got {opening!r:.80}")
        conn.index = index
        conn.latencies = self.latencies[index % servers]
        conn.pending = {}
        conn.events = []
        conn.joined = asyncio.get_running_loop().create_future()
        conn.fleet = self  # from here on every packet goes to on_packet
        await conn.send("40")
        conn.sid = (await conn.joined).get("sid", "")
        return conn

    # -- receiving (called by the event loop for every packet) --------------------------------

    # --8<-- [start:hot-path]
    def on_packet(self, conn: LeanConnection, data: bytes) -> None:
        if data[:15] == BROADCAST_PREFIX:
            self._on_broadcast(conn, data)
        elif data == b"2":
            if self.answer_heartbeats:
                self.heartbeats += 1
                self._spawn(conn.send("3"))
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
            self._abort(conn)
        else:
            self.unexpected += 1

    def _on_broadcast(self, conn: LeanConnection, data: bytes) -> None:
        now = perf_counter()
        if self.keep_events:
            conn.events.append(("broadcast", json.loads(data[2:])[1]))
        start = data.find(SEQ_MARK, 15) + 1
        try:
            seq = int(data[start : data.index(SEQ_MARK, start)])
            sent = self.sent_at[seq]
        except (ValueError, IndexError):
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
        payload = [event] if data is None else [event, data]
        await conn.send("42" + json.dumps(payload, separators=(",", ":")))

    async def call(self, conn: LeanConnection, event: str, data: Any = None, *, timeout: float = 5.0) -> Any:
        """Emit with an ack id and return the server's answer (its single argument, like python-socketio)."""
        ack_id = next(self._ack_ids)
        future = asyncio.get_running_loop().create_future()
        conn.pending[ack_id] = future
        payload = [event] if data is None else [event, data]
        try:
            await conn.send(f"42{ack_id}" + json.dumps(payload, separators=(",", ":")))
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
        seq = len(self.sent_at)
        expected = self.live
        self.expected.append(expected)
        self.delivered.append(0)
        self._outstanding += expected
        self.sent_at.append(time.perf_counter())
        await sender.send(f'42["broadcast",{{"text":"#{seq}#{self.padding}"}}]')
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
        (latency of one fan-out); False sends them back to back (a burst: throughput).
        """
        first_seq = len(self.sent_at)
        first_latency = [len(each) for each in self.latencies]
        disorder, dropped = self.disorder, self.dropped
        deadline = time.monotonic() + timeout
        cpu_started = time.process_time()
        started = time.perf_counter()
        self.last_delivery_at = started
        conn = self.connections[sender]
        for _ in range(broadcasts):
            await self.trigger_broadcast(conn)
            if sequential and not await self.wait_delivered(deadline - time.monotonic()):
                break
        await self.wait_delivered(max(0.0, deadline - time.monotonic()))
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
        )

    # -- closing -------------------------------------------------------------------------------

    async def close(self) -> None:
        """Drop every connection at once (an abort, not a polite close: thousands of close
        handshakes would take longer than the measurement)."""
        self._closing = True
        for conn in self._opened:
            self._abort(conn)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.sleep(0)
        self._opened.clear()

    async def __aenter__(self) -> LoadClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _abort(self, conn: LeanConnection) -> None:
        transport = getattr(conn, "transport", None)
        if transport is not None:
            transport.abort()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_ignore_closed)


def _ignore_closed(task: asyncio.Task) -> None:
    """A heartbeat answer to a connection that just closed is not an error worth a traceback."""
    if not task.cancelled():
        with contextlib.suppress(Exception):
            task.result()
