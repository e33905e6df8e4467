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
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import socketio

from lab.chapters import Chapter, Topology
from lab.clients import in_parallel
from lab.processes import REPO_ROOT, LabBench, Service, process_tree
from sitegen.twins import header

PAGE = Path(__file__).with_name("control_room.html")
ACTIONS = ("stop", "kill", "start")
CROWD_SIZE = 100
# The chat chapters' protocol: join a room, write to it, hear "message" from everyone in it.
CHAT_CHAPTERS = {"01", "02", "03", "04"}


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
    probe: ChatProbe | None = None
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


class ChatProbe:
    """Probe clients on every entry of one side, in one room, plus one outsider in another.

    Each second one probe writes "probe <side> #n" to the room. Every probe in the room when
    it was sent should hear it: a delivery. One that has not within LOST_AFTER seconds: lost.
    The outsider should hear none of it: each one it hears leaked out of its room.
    """

    ROOM, ELSEWHERE = "control-room", "control-elsewhere"
    LOST_AFTER = 5.0
    INTERVAL = 1.0

    def __init__(self, label: str, entries: list[str], transport: str | None):
        self.label = label
        self.transports = [transport] if transport else None
        self._lock = threading.Lock()
        self.sent = self.delivered = self.lost = self.leaked = 0
        self.latencies: list[tuple[float, float]] = []  # (when, seconds) of recent deliveries
        self.pending: dict[int, tuple[float, set[str]]] = {}
        self.clients = [self._client(f"probe-{i}", url, self.ROOM) for i, url in enumerate(entries, 1)]
        self.outsider = self._client("outsider", entries[0], self.ELSEWHERE)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"probe-{label}", daemon=True)

    def _client(self, name: str, url: str, room: str) -> dict[str, Any]:
        sio = socketio.Client(reconnection=True, reconnection_delay=0.5, reconnection_delay_max=2)
        client = {"name": name, "url": url, "room": room, "sio": sio, "joined": False, "tried": 0.0}

        def joined(answer: Any = None) -> None:
            client["joined"] = isinstance(answer, dict) and answer.get("ok") is True

        # A reconnect lands in no room: join again each time, as the chapter pages do.
        sio.on("connect", lambda: sio.emit("join", {"room": room, "name": name}, callback=joined))
        sio.on("disconnect", lambda reason=None: client.update(joined=False))
        sio.on("message", lambda data: self._heard(client, data))
        return client

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        in_parallel(lambda client: _quietly_disconnect(client["sio"]), [*self.clients, self.outsider])

    def _heard(self, client: dict[str, Any], data: Any) -> None:
        match = re.fullmatch(rf"probe {re.escape(self.label)} #(\d+)", str((data or {}).get("text", "")))
        if not match:
            return
        n = int(match.group(1))
        with self._lock:
            if client is self.outsider:
                self.leaked += 1
                return
            sent_at, waiting = self.pending.get(n, (0.0, set()))
            if client["name"] in waiting:
                waiting.discard(client["name"])
                self.delivered += 1
                now = time.monotonic()
                self.latencies.append((now, now - sent_at))

    def _run(self) -> None:
        n, turn = 0, 0
        while not self._stop.wait(self.INTERVAL):
            for client in (*self.clients, self.outsider):
                self._connect_if_never_did(client)
            now = time.monotonic()
            with self._lock:
                for number, (sent_at, waiting) in list(self.pending.items()):
                    if now - sent_at >= self.LOST_AFTER:
                        self.lost += len(waiting)
                        del self.pending[number]
                self.latencies = [(t, s) for t, s in self.latencies if now - t < 10]
            in_room = [c for c in self.clients if c["joined"] and c["sio"].connected]
            if not in_room:
                continue
            sender = in_room[turn % len(in_room)]
            turn += 1
            n += 1
            with self._lock:
                self.pending[n] = (time.monotonic(), {c["name"] for c in in_room})
                self.sent += 1
            with contextlib.suppress(socketio.exceptions.SocketIOError):
                sender["sio"].emit("message", {"room": self.ROOM, "text": f"probe {self.label} #{n}"})

    def _connect_if_never_did(self, client: dict[str, Any]) -> None:
        """A client that never connected retries every 2 s; once connected, it reconnects itself."""
        sio = client["sio"]
        if sio.connected or client.get("ever") or time.monotonic() - client["tried"] < 2:
            return
        client["tried"] = time.monotonic()
        try:
            sio.connect(client["url"], transports=self.transports, wait_timeout=3)
            client["ever"] = True
        except socketio.exceptions.ConnectionError:
            pass

    def figures(self) -> dict[str, Any]:
        with self._lock:
            recent = [seconds for _, seconds in self.latencies]
            return {
                "sent": self.sent,
                "delivered": self.delivered,
                "lost": self.lost,
                "leaked": self.leaked,
                "slowest_ms": round(max(recent) * 1000) if recent else None,
                "probes": len(self.clients),
                "in_room": sum(1 for c in self.clients if c["joined"] and c["sio"].connected),
            }


def _quietly_disconnect(sio: socketio.Client) -> None:
    """Disconnect, or stop reconnecting (shutdown does both), whatever state the client is in."""
    with contextlib.suppress(Exception):
        sio.shutdown()


class ControlRoom:
    """The state the page draws and the actions its buttons take, for one running chapter."""

    def __init__(self, bench: LabBench, chapter: Chapter, sides: list[Side], actions: Actions):
        self.bench, self.chapter, self.sides, self.actions = bench, chapter, sides, actions
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
        """Stop (SIGTERM), kill (SIGKILL) or start one service the bench started."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}: one of {', '.join(ACTIONS)}")
        if not any(name in side.services for side in self.sides):
            raise KeyError(name)

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
        for side in self.sides:
            if side.probe:
                side.probe.close()
            self.crowd(side.label, 0)


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
