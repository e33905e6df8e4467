"""The control room: one page for a chapter's whole demo, served by `python -m lab.serve NN`.

The page draws the topology live (each process the bench started, its state and its open
connections), embeds each side's pages (the chapter and every twin) side by side, and acts
on the real processes: stop, kill or start any of them, add 100 clients to a side. Probe
clients count, per side, the messages sent, delivered and lost, so the room sees a twin
lose what the chapter delivers.

Safety: it acts only on services the bench started, looked up by name (never a pid from the
request); it answers a fault button only from loopback, with a JSON body and its own Origin
(so another web page open in the instructor's browser cannot press one). Every process is
started and stopped on one long-lived thread (see `Actions`): Linux kills a bench child when
the thread that started it ends (PR_SET_PDEATHSIG), so a request thread must never start one.
"""

from __future__ import annotations

import contextlib
import json
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import requests
import socketio

from lab.chapters import Chapter, Topology
from lab.clients import in_parallel
from lab.hosts import Network
from lab.processes import REPO_ROOT, LabBench, Service, process_tree
from sitegen.twins import header

PAGE = Path(__file__).with_name("control_room.html")
ACTIONS = ("stop", "kill", "start")
# With `serve --hosts`: an instance's link to its Redis goes dark, and Redis's host forgets its
# connections with it (lab/hosts.py), as a NAT past its timeout does; then the link comes back.
HOST_ACTIONS = ("cut", "heal")
CROWD_SIZE = 100


class Actions:
    """Work that starts or stops processes, queued by request threads and run by one thread."""

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[Callable[[], Any], Future]] = queue.Queue()

    def submit(self, work: Callable[[], Any], timeout: float = 60) -> Any:
        """Run `work` on the owner thread and return its result (or raise its error)."""
        done: Future = Future()
        self._queue.put((work, done))
        return done.result(timeout)

    def run_pending(self, wait: float) -> None:
        """On the owner thread: run whatever is queued, waiting up to `wait` for the first."""
        try:
            work, done = self._queue.get(timeout=wait)
        except queue.Empty:
            return
        while True:
            try:
                done.set_result(work())
            except Exception as error:  # the request that asked gets it, with its message
                done.set_exception(error)
            try:
                work, done = self._queue.get_nowait()
            except queue.Empty:
                return


@dataclass
class Side:
    """The chapter or one twin: its processes by name, and the addresses its pages open."""

    label: str
    topology: Topology
    services: list[str]
    entries: list[str]
    probe: Probe | None = None
    crowd: list[socketio.Client] = field(default_factory=list)

    @property
    def mistake(self) -> str | None:
        return self.topology.mistake()

    def summary(self) -> str:
        """The first line of the mistake file's header (the twin's title), or of the chapter's docstring."""
        path = REPO_ROOT / (self.mistake or self.topology.script)
        return next(iter(header(path).splitlines()), path.name)


def kind_of(name: str) -> str:
    """What a service is, from the name the bench gave it (<side>-redis, <side>-worker-2, ...)."""
    for suffix, kind in (
        ("-redis", "redis"),
        ("-nginx", "balancer"),
        ("-haproxy", "balancer"),
        ("-beat", "beat"),
    ):
        if name.endswith(suffix):
            return kind
    return "worker" if re.search(r"-worker-\d+$", name) else "instance"


@dataclass
class ProbeClient:
    """One probe's connection: where it goes, and whether it is ready (joined its room, say)."""

    name: str
    url: str
    sio: socketio.Client
    ready: bool = False
    connecting: bool = False
    last_try: float = 0.0

    @property
    def live(self) -> bool:
        return self.ready and self.sio.connected


class Probe:
    """Probe clients on every entry of one side, plus one outsider, counting what each hears.

    Each second one probe sends something every probe should hear (`send`). Each probe that
    hears it is a delivery; one that has not within LOST_AFTER seconds, a loss. The outsider
    should hear none of it: each one it hears leaked. A subclass says what is sent and heard.
    """

    LOST_AFTER = 5.0
    INTERVAL = 1.0
    RETRY = 2.0
    # What the page shows, in order: (key in figures(), label).
    COUNTERS: tuple[tuple[str, str], ...] = (
        ("sent", "sent"),
        ("delivered", "delivered"),
        ("lost", "lost"),
        ("leaked", "leaked"),
        ("slowest_ms", "slowest ms"),
        ("in_room", "in the room"),
        ("connects", "connects"),
        ("failed_connects", "failed connects"),
    )

    def __init__(self, label: str, entries: list[str], transport: str | None):
        self.label = label
        self.transports = [transport] if transport else None
        self._lock = threading.Lock()
        self.sent = self.delivered = self.lost = self.leaked = self.connects = self.failed_connects = 0
        self.last_error = ""  # shown when the counters are hovered
        self.latencies: list[tuple[float, float]] = []  # (when, seconds) of recent deliveries
        self.pending: dict[Any, tuple[float, set[str]]] = {}
        self.clients = [self._client(f"probe-{i}", url) for i, url in enumerate(entries, 1)]
        self.outsider = self._client("outsider", entries[0], outsider=True)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"probe-{label}", daemon=True)

    def _client(self, name: str, url: str, outsider: bool = False) -> ProbeClient:
        # The probe's own loop reconnects it (every RETRY seconds), not python-socketio's thread:
        # one thread per side, and nothing left retrying when the demo stops.
        sio = socketio.Client(reconnection=False)
        client = ProbeClient(name, url, sio)

        def connected() -> None:
            with self._lock:
                self.connects += 1  # the first time, and every reconnect: a page that flaps counts up
            self.connected(client, outsider)

        def disconnected(reason: Any = None) -> None:
            client.ready = False
            with self._lock:
                self.last_error = f"disconnected: {reason}"

        sio.on("connect", connected)
        sio.on("disconnect", disconnected)
        self.listen(client, outsider)
        return client

    def listen(self, client: ProbeClient, outsider: bool) -> None:
        """Register the client's handlers for what it hears; set `client.ready` once it may be sent to."""
        raise NotImplementedError

    def connected(self, client: ProbeClient, outsider: bool) -> None:
        """The client (re)connected: what a page does then (join its room, say)."""

    def send(self, sender: ProbeClient, n: int, audience: list[ProbeClient]) -> None:
        """Send the n-th probe from `sender`; call expect() with what every one in `audience` should hear."""
        raise NotImplementedError

    def connect(self, client: ProbeClient) -> None:
        client.sio.connect(client.url, transports=self.transports, wait_timeout=3)

    def start(self) -> None:
        self._thread.start()

    def halt(self) -> list[socketio.Client]:
        """Stop sending and connecting; returns the clients to close. A send or connect under
        way (3 s at most) is not waited for: the thread is a daemon, and its clients close next."""
        self._stop.set()
        return [client.sio for client in (*self.clients, self.outsider)]

    def expect(self, key: Any, audience: list[ProbeClient]) -> None:
        """Each of `audience` should now hear `key`."""
        with self._lock:
            self.pending[key] = (time.monotonic(), {client.name for client in audience})
            self.sent += 1

    def heard(self, client: ProbeClient, key: Any) -> None:
        """`client` heard `key`: a delivery, a leak, or nothing (a repeat, or not ours)."""
        with self._lock:
            if client is self.outsider:
                self.leaked += 1
                return
            sent_at, waiting = self.pending.get(key, (0.0, set()))
            if client.name in waiting:
                waiting.discard(client.name)
                self.delivered += 1
                now = time.monotonic()
                self.latencies.append((now, now - sent_at))

    def _run(self) -> None:
        n, turn = 0, 0
        while not self._stop.wait(self.INTERVAL):
            for client in (*self.clients, self.outsider):
                if not self._stop.is_set():
                    self._connect_if_down(client)
            now = time.monotonic()
            with self._lock:
                for key, (sent_at, waiting) in list(self.pending.items()):
                    if now - sent_at >= self.LOST_AFTER:
                        self.lost += len(waiting)
                        del self.pending[key]
                self.latencies = [(t, s) for t, s in self.latencies if now - t < 10]
            audience = [client for client in self.clients if client.live]
            if not audience or self._stop.is_set():
                continue
            sender = audience[turn % len(audience)]
            turn += 1
            n += 1
            with contextlib.suppress(socketio.exceptions.SocketIOError):
                self.send(sender, n, audience)

    def _connect_if_down(self, client: ProbeClient) -> None:
        """Connect a client that is down, at most every RETRY seconds, as a page does, on a thread
        of its own (a failed connect takes its whole `wait_timeout`), and one client of a side at
        a time. Connects made together through one balancer interleave their requests: behind
        round-robin nginx over three instances, a connect's handshake, POST and GET then
        sometimes all land on one instance by luck, and it connects (1 run in 4, measured here).
        One at a time, with nothing else going through that balancer, the two requests after a
        handshake always go to the other two."""
        if client.sio.connected or client.connecting or time.monotonic() - client.last_try < self.RETRY:
            return
        if any(other.connecting for other in (*self.clients, self.outsider)):
            return
        client.connecting = True

        def attempt() -> None:
            try:
                self.connect(client)
            except (socketio.exceptions.ConnectionError, OSError) as error:
                with self._lock:
                    self.failed_connects += 1
                    self.last_error = str(error)[:200]
            finally:
                client.last_try, client.connecting = time.monotonic(), False

        threading.Thread(target=attempt, name=f"probe-{self.label}-{client.name}", daemon=True).start()

    def figures(self) -> dict[str, Any]:
        with self._lock:
            recent = [seconds for _, seconds in self.latencies]
            live = sum(1 for client in self.clients if client.live)
            return {
                "sent": self.sent,
                "delivered": self.delivered,
                "lost": self.lost,
                "leaked": self.leaked,
                "slowest_ms": round(max(recent) * 1000) if recent else None,
                "in_room": f"{live}/{len(self.clients)}",
                "connects": self.connects,
                "failed_connects": self.failed_connects,
                "last_error": self.last_error,
            }


class ChatProbe(Probe):
    """The chat chapters (01-04): the probes share a room, the outsider is in another.

    Each second one probe writes "probe <side> #n" to the room; every probe in the room
    should hear it, the outsider never.
    """

    ROOM, ELSEWHERE = "control-room", "control-elsewhere"

    def listen(self, client: ProbeClient, outsider: bool) -> None:
        client.sio.on("message", lambda data: self._message(client, data))

    def connected(self, client: ProbeClient, outsider: bool) -> None:
        """A reconnect lands in no room: join again each time, as the chapter pages do."""

        def joined(answer: Any = None) -> None:
            client.ready = isinstance(answer, dict) and answer.get("ok") is True

        room = self.ELSEWHERE if outsider else self.ROOM
        client.sio.emit("join", {"room": room, "name": client.name}, callback=joined)

    def _message(self, client: ProbeClient, data: Any) -> None:
        text = str(data.get("text", "")) if isinstance(data, dict) else ""
        if match := re.fullmatch(rf"probe {re.escape(self.label)} #(\d+)", text):
            self.heard(client, int(match.group(1)))

    def send(self, sender: ProbeClient, n: int, audience: list[ProbeClient]) -> None:
        self.expect(n, audience)
        sender.sio.emit("message", self.message(n))

    def message(self, n: int) -> dict[str, str]:
        return {"room": self.ROOM, "text": f"probe {self.label} #{n}"}


class DeliveryProbe(ChatProbe):
    """Chapter 06: the chat probe, each message with the id chapter 06 stores it under, once."""

    def message(self, n: int) -> dict[str, str]:
        return {**super().message(n), "id": uuid.uuid4().hex}


class TaskProbe(Probe):
    """Chapter 05: the probes are one user's pages, one per instance; the outsider is another user.

    Each second one page starts a one-step report. Every page of the user should get its
    result, whichever instance it is on and whichever worker ran it; the other user never.
    It also counts the dashboard figures the first page hears: one producer, one a second.
    """

    COUNTERS = (
        ("sent", "tasks started"),
        ("delivered", "results delivered"),
        ("lost", "lost"),
        ("leaked", "leaked"),
        ("slowest_ms", "slowest ms"),
        ("figures_per_s", "figures/s"),
        ("producers", "producers"),
        ("in_room", "pages in"),
        ("connects", "connects"),
        ("failed_connects", "failed connects"),
    )
    FIGURES_OVER = 5.0  # seconds the figure rate is averaged over

    def __init__(self, label: str, entries: list[str], transport: str | None):
        self.early: dict[str, list[tuple[ProbeClient, float]]] = {}  # results that beat their ack
        self.figures_heard: list[tuple[float, str]] = []  # (when, producer)
        super().__init__(label, entries, transport)

    def user(self, client: ProbeClient) -> str:
        """Every probe page is one user; the outsider is another."""
        return f"{client.name}-{self.label}" if client.name == "outsider" else f"probe-{self.label}"

    def listen(self, client: ProbeClient, outsider: bool) -> None:
        client.sio.on("welcome", lambda data=None: setattr(client, "ready", True))
        client.sio.on("result", lambda data: self._result(client, data))
        if client.name == "probe-1":  # one page counts the figures: each goes to every page
            client.sio.on("figure", self._figure, namespace="/dashboard")

    def connect(self, client: ProbeClient) -> None:
        """Log in (POST /login, as the page does) at every connect and reconnect: a callable auth."""

        def auth() -> dict[str, str]:
            answer = requests.post(f"{client.url}/login", json={"name": self.user(client)}, timeout=3)
            answer.raise_for_status()
            return {"token": answer.json()["token"]}

        client.sio.connect(client.url, transports=self.transports, wait_timeout=3, auth=auth)

    def send(self, sender: ProbeClient, n: int, audience: list[ProbeClient]) -> None:
        reply = sender.sio.call("start", {"steps": 1}, timeout=3)
        if not (isinstance(reply, dict) and reply.get("ok")):
            with self._lock:  # not started, so not counted: the reason shows on hover
                self.last_error = f"start refused: {reply}"[:200]
            return
        task = reply["task"]
        self.expect(task, audience)
        with self._lock:
            early = self.early.pop(task, [])
        for client, _ in early:
            self.heard(client, task)

    def _result(self, client: ProbeClient, data: Any) -> None:
        task = data.get("task") if isinstance(data, dict) else None
        with self._lock:
            if task not in self.pending and client is not self.outsider:
                # Before its ack (call() returns after the handler thread runs): keep it 10 s.
                now = time.monotonic()
                self.early = {t: heard for t, heard in self.early.items() if now - heard[0][1] < 10}
                self.early.setdefault(task, []).append((client, now))
                return
        self.heard(client, task)

    def _figure(self, data: Any) -> None:
        producer = str(data.get("producer")) if isinstance(data, dict) else "?"
        with self._lock:
            now = time.monotonic()
            self.figures_heard = [(t, p) for t, p in self.figures_heard if now - t < self.FIGURES_OVER]
            self.figures_heard.append((now, producer))

    def figures(self) -> dict[str, Any]:
        figures = super().figures()
        with self._lock:
            now = time.monotonic()
            recent = [producer for t, producer in self.figures_heard if now - t < self.FIGURES_OVER]
            figures["figures_per_s"] = round(len(recent) / self.FIGURES_OVER, 1)
            figures["producers"] = len(set(recent))
        return figures


# Which probe a chapter's demo runs: what its pages send and should hear.
PROBES: dict[str, type[Probe]] = {
    **dict.fromkeys(("01", "02", "03", "04"), ChatProbe),
    "05": TaskProbe,
    "06": DeliveryProbe,
}


def _quietly_disconnect(sio: socketio.Client) -> None:
    """Disconnect, or stop reconnecting (shutdown does both), whatever state the client is in."""
    with contextlib.suppress(Exception):
        sio.shutdown()


class ControlRoom:
    """The state the page draws and the actions its buttons take, for one running chapter."""

    def __init__(
        self,
        bench: LabBench,
        chapter: Chapter,
        sides: list[Side],
        actions: Actions,
        network: Network | None = None,
    ):
        self.bench, self.chapter, self.sides, self.actions = bench, chapter, sides, actions
        self.network = network
        self.cut: set[str] = set()  # instances cut from their Redis (serve --hosts)
        self.stopped_by_hand: set[str] = set()
        self._connections: tuple[float, dict[int, int], set[int]] = (0.0, {}, set())

    # -- what the page draws -------------------------------------------------------------------

    def service(self, name: str) -> Service:
        """The bench's latest service of that name (a restart adds a new one)."""
        for service in reversed(self.bench.services):
            if service.name == name:
                return service
        raise KeyError(name)

    def _sockets(self) -> tuple[dict[int, int], set[int]]:
        """Established TCP connections per service port (server side), and the ports listened on;
        read at most twice a second. Only the bench's own process trees are asked: a system-wide
        psutil.net_connections() needs root on macOS, a process's own sockets do not."""
        when, counts, listening = self._connections
        if time.monotonic() - when > 0.5:
            counts, listening = {}, set()
            for service in self.bench.services:
                for proc in process_tree(service.pid) if service.alive() else []:
                    try:
                        connections = proc.net_connections("tcp")
                    except (psutil.NoSuchProcess, psutil.AccessDenied):
                        continue
                    for conn in connections:
                        if conn.status == psutil.CONN_LISTEN:
                            listening.add(conn.laddr.port)
                        elif conn.status == psutil.CONN_ESTABLISHED and conn.laddr.port == service.port:
                            counts[service.port] = counts.get(service.port, 0) + 1
            self._connections = (time.monotonic(), counts, listening)
        return counts, listening

    def _service_state(self, name: str) -> dict[str, Any]:
        service = self.service(name)
        counts, listening = self._sockets()
        alive, kind = service.alive(), kind_of(name)
        has_port = kind not in ("worker", "beat")  # Celery processes listen on nothing
        if not alive:
            state = "stopped" if name in self.stopped_by_hand else "crashed"
        elif not has_port or service.port in listening:
            state = "up"
        else:
            state = "not listening"
        return {
            "name": name,
            "kind": kind,
            "port": service.port if has_port else None,
            "url": service.url or None,
            "state": state,
            "connections": counts.get(service.port, 0) if alive and has_port else None,
            "pid": service.pid if alive else None,
            # On hosts, an instance can be cut from its Redis: whether it is, else None.
            "cut": (name in self.cut) if self._redis_host_of(name) else None,
        }

    def state(self) -> dict[str, Any]:
        return {
            "chapter": self.chapter.number,
            "title": self.chapter.title,
            "demo": self.chapter.demo,
            "sides": [
                {
                    "label": side.label,
                    "mistake": side.mistake,
                    "summary": side.summary(),
                    "entries": side.entries,
                    "services": [self._service_state(name) for name in side.services],
                    "probe": side.probe.figures() if side.probe else None,
                    "counters": side.probe.COUNTERS if side.probe else [],
                    "crowd": {
                        "asked": len(side.crowd),
                        "connected": sum(1 for sio in side.crowd if sio.connected),
                    },
                }
                for side in self.sides
            ],
        }

    def log_tail(self, name: str, lines: int = 40) -> str:
        return "\n".join(self.service(name).log_text().splitlines()[-lines:])

    # -- what the buttons do -------------------------------------------------------------------

    def act(self, name: str, action: str) -> dict[str, Any]:
        """Stop (SIGTERM), kill (SIGKILL) or start one service the bench started; on hosts, cut an
        instance from its Redis, or heal that."""
        if action not in ACTIONS + HOST_ACTIONS:
            raise ValueError(f"unknown action {action!r}: one of {', '.join(ACTIONS + HOST_ACTIONS)}")
        if not any(name in side.services for side in self.sides):
            raise KeyError(name)
        if action in HOST_ACTIONS:
            return self._cut_or_heal(name, action)

        def work() -> None:
            service = self.service(name)
            if action == "start":
                if not service.alive():
                    self.bench.restart(service)
                self.stopped_by_hand.discard(name)
            elif service.alive():
                self.stopped_by_hand.add(name)
                if action == "stop":
                    service.stop()
                else:
                    service.kill()

        self.actions.submit(work)
        self._connections = (0.0, {}, set())  # what changed shows at once
        return self._service_state(name)

    def _redis_host_of(self, name: str) -> str | None:
        """The name of the Redis host of an instance on a host of its own, else None."""
        if not self.network or kind_of(name) != "instance" or name not in self.network.hosts:
            return None
        side = next(side for side in self.sides if name in side.services)
        redis = f"{side.label}-redis"
        return redis if redis in self.network.hosts else None

    def _cut_or_heal(self, name: str, action: str) -> dict[str, Any]:
        redis = self._redis_host_of(name)
        if redis is None:
            raise ValueError(f"{name} is not an instance on a host of its own (serve --hosts)")
        instance, store = self.network.hosts[name], self.network.hosts[redis]

        def work() -> None:
            if action == "cut" and name not in self.cut:
                self.network.cut_link(instance, store)
                self.network.forget(store, instance)
                self.cut.add(name)
            elif action == "heal" and name in self.cut:
                self.network.heal_link(instance, store)
                self.cut.discard(name)

        self.actions.submit(work)
        return self._service_state(name)

    def crowd(self, label: str, add: int) -> dict[str, int]:
        """Add `add` idle clients to a side, spread over its entries (0: remove them all)."""
        side = next(side for side in self.sides if side.label == label)
        if add <= 0:
            leaving, side.crowd = side.crowd, []
            in_parallel(_quietly_disconnect, leaving)
            return {"asked": 0, "connected": 0}
        joining = [socketio.Client(reconnection=False) for _ in range(min(add, CROWD_SIZE))]

        def connect(i_sio: tuple[int, socketio.Client]) -> None:
            i, sio = i_sio
            with contextlib.suppress(socketio.exceptions.ConnectionError):
                sio.connect(side.entries[i % len(side.entries)], transports=["websocket"], wait_timeout=5)

        side.crowd.extend(joining)
        in_parallel(connect, list(enumerate(joining)))
        return {"asked": len(side.crowd), "connected": sum(1 for sio in side.crowd if sio.connected)}

    def close(self) -> None:
        """Every probe and crowd client of every side leaves at once: a polite websocket
        disconnect takes about 3 s, one side after another would add up past Ctrl-C's patience."""
        leaving = [side.probe.halt() for side in self.sides if side.probe]
        leaving += [side.crowd for side in self.sides]
        in_parallel(_quietly_disconnect, [sio for group in leaving for sio in group])


def make_handler(room: ControlRoom, origin_ports: set[int]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "control-room"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the terminal is the instructor's: keep it for what the demo prints

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, data: Any) -> None:
            self._send(status, json.dumps(data).encode(), "application/json")

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/":
                self._send(HTTPStatus.OK, PAGE.read_bytes(), "text/html; charset=utf-8")
            elif path == "/api/state":
                self._json(HTTPStatus.OK, room.state())
            elif match := re.fullmatch(r"/api/services/([\w.-]+)/log", path):
                try:
                    self._send(
                        HTTPStatus.OK, room.log_tail(match.group(1)).encode(), "text/plain; charset=utf-8"
                    )
                except KeyError:
                    self._json(HTTPStatus.NOT_FOUND, {"error": f"no service {match.group(1)!r}"})
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})

        def _refusal(self) -> str | None:
            """Why this request may not press a button, or None."""
            if not self.client_address[0].startswith("127."):
                return "the buttons answer only the machine running the demo (loopback)"
            if self.headers.get_content_type() != "application/json":
                return "send JSON (Content-Type: application/json)"
            origin = self.headers.get("Origin")
            if origin is not None:
                match = re.fullmatch(r"http://(?:127\.0\.0\.1|localhost):(\d+)", origin)
                if not match or int(match.group(1)) not in origin_ports:
                    return f"foreign Origin {origin!r}"
            return None

        def do_POST(self) -> None:
            if refusal := self._refusal():
                self._json(HTTPStatus.FORBIDDEN, {"error": refusal})
                return
            length = min(int(self.headers.get("Content-Length") or 0), 4096)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                body = None
            if not isinstance(body, dict):
                self._json(HTTPStatus.BAD_REQUEST, {"error": "the body must be a JSON object"})
                return
            try:
                if match := re.fullmatch(r"/api/services/([\w.-]+)/(\w+)", self.path):
                    self._json(HTTPStatus.OK, room.act(match.group(1), match.group(2)))
                elif match := re.fullmatch(r"/api/sides/([\w.-]+)/crowd", self.path):
                    add = body.get("add", CROWD_SIZE)
                    if not isinstance(add, int) or isinstance(add, bool):
                        raise ValueError("'add' must be a whole number")
                    self._json(HTTPStatus.OK, room.crowd(match.group(1), add))
                else:
                    self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})
            except (KeyError, StopIteration) as error:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no such service or side: {error}"})
            except ValueError as error:
                self._json(HTTPStatus.BAD_REQUEST, {"error": str(error)})
            except Exception as error:  # a start that failed: its log is in the message
                self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": str(error)[-2000:]})

    return Handler


def serve_control_room(room: ControlRoom, host: str, port: int) -> ThreadingHTTPServer:
    """Serve the page and its API on a daemon thread; returns the server (its port is real)."""
    server = ThreadingHTTPServer((host, port), make_handler(room, set()))
    server.daemon_threads = True
    # The page's own origin: the port the OS picked when asked for 0.
    server.RequestHandlerClass = make_handler(room, {server.server_address[1]})
    threading.Thread(target=server.serve_forever, name="control-room", daemon=True).start()
    return server
