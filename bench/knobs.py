"""The knobs table: what each setting an engineer can turn does to chapter 02's gevent app under load.

Every row is one change against the same baseline (chapters/02_async_modes under gevent, served
by socketio.run, with simple-websocket and python-socketio's JSON), measured by the same load
client in the same run, at 1,000 and 2,000 clients: broadcast p50/p99 (one broadcast at a time),
deliveries per second (a burst), the server's CPU per delivery over that burst, and its memory
and file descriptors per connection. bench/knob_server.py serves each row: the chapter's own
create_app with the row's SocketIO options added. Node's socket.io server is a row of the same
run, the yardstick. Every client offers per-message deflate, as browsers do.

The machine drifts over minutes (the same server, measured twice, landed up to 40 % apart in
CPU per delivery here), so a row's verdict does not come from those runs. It comes from pairs:
the baseline and the row served side by side, each with its own clients connected, and a burst
on one then on the other, a dozen times, in alternating order. Pairs seconds apart drift little;
what is left is judged by the signed-rank interval of the pairs' ratios (bench/stats.py).

Two more comparisons have their own baselines:
- the heartbeat: 5,000 idle clients, ping_interval 25 s (the default) against 5 s: the server's
  CPU at rest;
- processes: chapter 04's app behind its nginx with Redis, one instance against two, on this
  machine's cores (the load client needs one of them too).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bench import common, plots, report, stats
from bench.loadclient import DeliveryReport, LoadClient, loopback_sources
from lab.apps import get_json, healthz, start_app
from lab.chapters import Topology, start_topology
from lab.deps import MissingDependency, require_binary
from lab.processes import REPO_ROOT, LabBench, Service, ServiceFailed

NAME = "knobs"  # docs/bench/<NAME>.json
PLOT = plots.knobs  # the collections against the broadcasts, in time
KNOB_SERVER = "bench/knob_server.py"
CHAPTER02 = "chapters/02_async_modes"
CHAPTER04 = "chapters/04_nginx_lb/app.py"
NGINX_CONF = "chapters/04_nginx_lb/nginx.conf"
# The knobs' own packages, installed apart (requirements/knobs.txt says why); nox -s bench does it.
PACKAGES = REPO_ROOT / ".lab" / "knob-packages"
PY_SPY = PACKAGES / "bin" / "py-spy"
INSTALL = f"python -m pip install --no-deps --target {PACKAGES} -r {REPO_ROOT / 'requirements' / 'knobs.txt'}"
# A burst is long enough to read the server's CPU to a few per cent (Linux counts it in 10 ms ticks):
# 200,000 deliveries at 2,000 clients, in at most this many broadcasts.
MOST_BROADCASTS = 200
# A pair's interval that lies wholly within this share of no change says "no change beyond" it:
# the smallest change in CPU per delivery worth a dependency or a line of configuration, and about
# what 20 pairs resolve on this 2-core machine (their intervals run some 8 % either side).
SMALLEST_CHANGE = 0.10
NODE_SERVER = REPO_ROOT / "bench" / "node_reference" / "server.js"


@dataclass(frozen=True)
class Knob:
    """One row: what changes, how the server and the client are told, and what it costs."""

    change: str
    cost: str
    env: dict[str, str] = field(default_factory=dict)  # the knob server's KNOB_* settings
    compression: bool = False  # the server accepts the per-message deflate every client offers
    msgpack: bool = False  # the client speaks the msgpack serializer
    gunicorn: bool = False  # the chapter's gunicorn command instead of the knob server
    node: bool = False  # Node's socket.io server (bench/node_reference) instead of the chapter
    big: bool = False  # it also takes the big step (settings.big_clients): 10,000 within the open-files limit


BASELINE = "baseline"
KNOBS: dict[str, Knob] = {
    BASELINE: Knob(
        "chapter 02 under gevent: `socketio.run`, simple-websocket, JSON; clients offer per-message "
        "deflate as browsers do, and the guard strikes the offer",
        "the chapter as it is",
    ),
    "gevent-websocket": Knob(
        "gevent-websocket's handler serves the WebSockets instead of simple-websocket",
        "a dependency whose last release, 0.10.1, dates from 2017; once installed, python-engineio and "
        "Flask-SocketIO use it in every gevent app without being asked",
        env={"KNOB_WEBSOCKET": "gevent-websocket"},
        big=True,
    ),
    "orjson": Knob(
        "`SocketIO(json=...)` with orjson instead of the standard library's json",
        "a compiled dependency; integers beyond 64 bits come back as floats",
        env={"KNOB_JSON": "orjson"},
    ),
    "msgpack": Knob(
        '`SocketIO(serializer="msgpack")`: binary packets instead of JSON text',
        "a protocol change: every client must switch at once (browsers through socket.io-msgpack-parser)",
        env={"KNOB_SERIALIZER": "msgpack"},
        msgpack=True,
    ),
    "deflate": Knob(
        "the guard's `SOCKETIO_GUARD_WEBSOCKET_COMPRESSION = True`: the offer is accepted, and each "
        "connection compresses",
        "nothing to install: it is what browsers get from any server that does not refuse the extension",
        env={"KNOB_COMPRESSION": "on"},
        compression=True,
    ),
    "gunicorn": Knob(
        "gunicorn's gevent worker (`gunicorn -c gunicorn.conf.py wsgi:app`) instead of `socketio.run`, "
        "with the file's garbage-collection settings (the gc-thresholds row's)",
        "none: the chapter's production command",
        gunicorn=True,
    ),
    "gc-freeze": Knob(
        "`gc.freeze()` once the app is built, before it serves: what start-up allocated is never "
        "scanned by a collection again",
        "two lines at start-up; objects frozen then are never freed",
        env={"KNOB_GC": "freeze"},
    ),
    "gc-thresholds": Knob(
        "that, and `gc.set_threshold(50_000, 20, 100)` for Python's `(700, 10, 10)`: collections far "
        "rarer, so the long full ones stop the event loop less often",
        "cyclic garbage waits longer to be freed: a little more memory between collections",
        env={"KNOB_GC": "thresholds"},
    ),
}
# The yardstick, a row of the same run: paired against the chapter's production command (the
# gunicorn row), the setup the cookbook recommends, not against the baseline.
NODE = "node"
P99_TARGET = 1.5  # the recommended setup's broadcast p99 at the largest step, at most this times Node's
RECOMMENDED = "gunicorn"
REFERENCES: dict[str, Knob] = {
    NODE: Knob(
        "Node's socket.io 4 server (`bench/node_reference/server.js`) with its defaults, which refuse "
        "per-message deflate",
        "another runtime: the yardstick, not a knob",
        node=True,
    ),
}
ROWS = {**KNOBS, **REFERENCES}
# What each comparison's pairs measure the row against.
AGAINST = {**{key: BASELINE for key in KNOBS if key != BASELINE}, NODE: RECOMMENDED}


@dataclass(frozen=True)
class Settings:
    client_steps: tuple[int, ...]
    rounds: int  # broadcasts one at a time per step (latency)
    burst_deliveries: int  # about this many deliveries per burst (throughput)
    bursts: int  # per step; the median one is reported
    sources: int  # loopback source addresses
    idle_clients: int
    idle_seconds: float  # how long the server's CPU at rest is measured
    ping_intervals: tuple[float, ...]
    processes: tuple[int, ...]  # chapter 04 instances behind nginx
    big_clients: int  # the gevent target, for the rows that fit it in the open-files limit
    pair_clients: int  # each side's clients in a paired comparison
    pairs: int  # bursts on each side, interleaved, per comparison
    pair_deliveries: int  # about this many deliveries per paired burst
    wire_clients: int  # clients per payload and setting, for the bytes on the wire
    wire_broadcasts: int
    total_seconds: float


FULL = Settings(
    (1000, 2000), 60, 200_000, 3, 64, 5000, 30, (25, 5), (1, 2), 10_000, 1000, 20, 100_000, 100, 200, 35 * 60
)
QUICK = Settings((100, 200), 3, 2_000, 1, 4, 300, 5, (25, 5), (1, 2), 400, 50, 6, 5_000, 10, 20, 4 * 60)


def run(quick: bool, max_clients: int | None, out: str | None) -> dict[str, Any]:
    """Every row, then the heartbeat and the processes; writes the JSON and the summary."""
    try:
        require_packages()
    except MissingDependency as missing:
        raise SystemExit(str(missing)) from None
    settings = common.up_to(QUICK if quick else FULL, max_clients)
    record: dict[str, Any] = {**common.new_record(NAME, quick, settings), "rows": {}}
    budget = common.Budget(settings.total_seconds)
    record["pairs"] = {}
    with (
        LabBench(common.log_dir(NAME)) as bench,
        tqdm(total=len(ROWS) + len(AGAINST) + 4, desc="bench knobs", unit="run", file=sys.stderr) as bar,
    ):
        for key, knob in ROWS.items():
            bar.set_postfix_str(key)
            record["rows"][key] = _row(bench, key, knob, settings, budget)
            bar.update(1)
        for key, against in AGAINST.items():
            bar.set_postfix_str(f"{key} against {against}, in pairs")
            record["pairs"][key] = _pair(bench, against, key, settings, budget)
            bar.update(1)
        bar.set_postfix_str("bytes on the wire")
        record["wire"] = _wire(bench, settings, budget)
        bar.update(1)
        bar.set_postfix_str("heartbeat at rest")
        record["idle"] = _idle(bench, settings, budget)
        bar.update(1)
        bar.set_postfix_str("one process or two")
        record["processes"] = _processes(bench, settings, budget)
        bar.update(1)
        bar.set_postfix_str("a profile of the baseline's bursts")
        record["profile"] = _profile(bench, settings, budget)
        bar.update(1)
    judge(record)
    out_dir = common.output_dir(quick, out)
    common.write_results(record, out_dir, NAME, PLOT, summary_markdown, headline)
    return record


# -- measuring ----------------------------------------------------------------------------------


def require_packages() -> None:
    """The knobs' packages, installed apart, on this process's path too (the client's msgpack)."""
    found = [(PACKAGES / name).is_dir() for name in ("geventwebsocket", "msgpack", "orjson")]
    if not all(found) or not PY_SPY.is_file():
        raise MissingDependency(f"the knobs' packages are not in {PACKAGES}. Install them with: {INSTALL}")
    if str(PACKAGES) not in sys.path:
        sys.path.append(str(PACKAGES))


def start_row(bench: LabBench, key: str, knob: Knob) -> Service:
    env = {**common.FLOOD_ENV, "MAX_CLIENTS": "12000"}
    name = f"knob-{key}"
    if knob.node:
        node = require_binary("node")
        command = [node, str(NODE_SERVER)]
        return start_app(bench, NODE_SERVER, name=name, env=env, command=lambda _port: command)
    if knob.gunicorn:
        command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
        return start_app(bench, f"{CHAPTER02}/wsgi.py", name=name, env=env, command=lambda _port: command)
    env.update({**knob.env, "KNOB_PACKAGES": str(PACKAGES)})
    return start_app(bench, KNOB_SERVER, name=name, env=env)


def client_options(knob: Knob) -> dict[str, Any]:
    options: dict[str, Any] = {}  # every row's clients offer per-message deflate, as browsers do
    if knob.msgpack:
        import msgpack  # from PACKAGES, on the path since run() began

        options["msgpack"] = msgpack
    return options


def _row(bench: LabBench, key: str, knob: Knob, settings: Settings, budget: common.Budget) -> dict[str, Any]:
    row: dict[str, Any] = {"change": knob.change, "cost": knob.cost}
    try:
        service = start_row(bench, key, knob)
    except (ServiceFailed, OSError) as exc:
        return {**row, "broke": f"did not start: {str(exc).splitlines()[0][:200]}", "steps": {}}
    try:
        # What the process really runs with: a knob that did not take would be measured as one that did.
        knobbed = not (knob.gunicorn or knob.node)
        row["server"] = get_json(f"{service.url}/knobs", timeout=5) if knobbed else healthz(service.url)
        fleet = LoadClient(service.url, sources=loopback_sources(settings.sources), **client_options(knob))
        big = settings.big_clients if knob.big else None
        gc_url = f"{service.url}/gc" if knobbed else None
        row.update(asyncio.run(_steps(fleet, lambda: [service.pid], settings, budget, big, gc_url)))
    finally:
        service.stop()
    return row


async def _steps(
    fleet: LoadClient,
    pids: Callable[[], list[int]],
    settings: Settings,
    budget: common.Budget,
    big: int | None = None,
    gc_url: str | None = None,
) -> dict[str, Any]:
    """Each step; then, with `big`, the same fleet grown to `big` clients, recorded apart with its fds.

    `gc_url`: the knob server's /gc, read after the steps, while their clients are still connected.
    """
    base = _usage(pids())
    found: dict[str, Any] = {"steps": {}}
    async with fleet:
        for clients in settings.client_steps:
            step, why = await load_step(fleet, pids, clients, base, settings, budget)
            found["steps"][str(clients)] = step  # as JSON keys are, so the record reads the same reloaded
            if why:
                return {**found, "broke": f"{clients:,} clients: {why}"}
        if gc_url:  # every collection the steps caused, per generation: where a tail may come from
            found["gc"] = await asyncio.to_thread(get_json, gc_url, timeout=30)
        if big:
            step, why = await load_step(fleet, pids, big, base, settings, budget)
            # The descriptors at start and the open-files limit: the fd arithmetic of the summary.
            limit = common.open_files_limit(pids()[0]) or {"soft": None}
            found["big"] = {
                "clients": big,
                **step,
                "broke": why,
                "fds_at_start": int(base["fds"]),
                "fd_limit": limit,
            }
    return found


def _usage(pids: list[int]) -> dict[str, float]:
    """Memory, descriptors and CPU seconds of the server processes and their children, added up."""
    return {
        "rss": sum(common.tree_rss(pid) for pid in pids),
        "fds": sum(common.tree_fds(pid) for pid in pids),
        "cpu": sum(common.tree_cpu(pid) for pid in pids),
    }


async def load_step(
    fleet: LoadClient,
    pids: Callable[[], list[int]],
    clients: int,
    base: dict[str, float],
    settings: Settings,
    budget: common.Budget,
) -> tuple[dict[str, Any], str | None]:
    """Connect up to `clients`, then rounds one broadcast at a time and a burst. (record, why it broke)."""
    step: dict[str, Any] = {}
    if budget.spent():
        return step, "the time budget was spent before this step"
    opened = await fleet.open(
        clients - len(fleet.connections), timeout=min(budget.left(), 20 + clients * 0.01)
    )
    step["connect"] = {"seconds": round(opened.seconds, 2), "failed": opened.failed, "errors": opened.errors}
    if opened.failed:
        return step, f"connection failures: {opened.failed}"
    now = _usage(pids())
    step["kb_per_connection"] = round((now["rss"] - base["rss"]) / clients / 1024, 1)
    step["fds_per_connection"] = round((now["fds"] - base["fds"]) / clients, 2)
    timeout = common.delivery_deadline(budget, clients * settings.rounds)
    first = len(fleet.sent_at)
    latency = await fleet.measure(settings.rounds, sequential=True, timeout=timeout)
    step["latency"] = latency.as_dict()["latency"]
    # When each broadcast went out, one at a time (perf_counter: CLOCK_MONOTONIC on Linux), and
    # when the last delivery came: each round's length, for the timeline against the collections.
    step["rounds_at"] = [round(at, 4) for at in fleet.sent_at[first:]] + [round(fleet.last_delivery_at, 4)]
    if not latency.complete:
        return step, f"lost {latency.lost} of {latency.expected} deliveries one at a time"
    count = max(2, min(MOST_BROADCASTS, settings.burst_deliveries // clients))
    timeout = common.delivery_deadline(budget, clients * count)
    bursts = []
    for _ in range(settings.bursts):
        burst, per_delivery = await _burst(fleet, pids(), count, timeout)
        bursts.append({**burst.as_dict(), "server_us_per_delivery": per_delivery})
        if not burst.complete:
            step["burst"] = bursts[-1]
            return step, f"lost {burst.lost} of {burst.expected} deliveries in a burst"
    # The median burst by the server's CPU per delivery: one burst caught by a hiccup moves nothing.
    step["burst"] = sorted(bursts, key=lambda b: b["server_us_per_delivery"] or 0)[len(bursts) // 2]
    step["bursts"] = [{key: b[key] for key in ("deliveries_per_s", "server_us_per_delivery")} for b in bursts]
    return step, None


def _pair(
    bench: LabBench, against: str, key: str, settings: Settings, budget: common.Budget
) -> dict[str, Any]:
    """Row `key` and the row it is judged against, served side by side and measured in turns."""
    found: dict[str, Any] = {"against": against, "clients": settings.pair_clients, "pairs": []}
    if budget.spent():
        return {**found, "broke": "the time budget was spent before this comparison"}
    services: dict[str, Service] = {}
    try:
        for side, name in (("against", against), ("row", key)):
            services[side] = start_row(bench, f"pair-{key}-{side}", ROWS[name])
        return asyncio.run(_paired_bursts(services, (ROWS[against], ROWS[key]), settings, budget, found))
    except (ServiceFailed, OSError) as exc:
        return {**found, "broke": f"did not start: {str(exc).splitlines()[0][:200]}"}
    finally:
        for service in services.values():
            service.stop()


async def _paired_bursts(
    services: dict[str, Service],
    knobs: tuple[Knob, Knob],
    settings: Settings,
    budget: common.Budget,
    found: dict[str, Any],
) -> dict[str, Any]:
    """Both sides connected at once; then `pairs` bursts on each, in turns (AB, BA, AB, ...).

    While one side bursts, the other's clients sit idle: the same machine, seconds apart.
    """
    clients = settings.pair_clients
    sources = loopback_sources(settings.sources)
    fleets = {
        side: LoadClient(services[side].url, sources=sources, **client_options(knob))
        for side, knob in zip(("against", "row"), knobs, strict=True)
    }
    count = max(2, min(MOST_BROADCASTS, settings.pair_deliveries // clients))
    found["deliveries_per_burst"] = count * clients
    async with fleets["against"], fleets["row"]:
        for side, fleet in fleets.items():
            opened = await fleet.open(clients, timeout=min(budget.left(), 20 + clients * 0.01))
            if opened.failed:
                why = f"{side}: connection failures: {opened.failed}"
                return {**found, "broke": why, "errors": opened.errors}
        timeout = common.delivery_deadline(budget, clients * count)
        for index in range(settings.pairs):
            if budget.spent():
                return {**found, **_interval(found["pairs"]), "broke": "the time budget ran out"}
            order = ("against", "row") if index % 2 == 0 else ("row", "against")
            cost = {}
            for side in order:
                burst, cost[side] = await _burst(fleets[side], [services[side].pid], count, timeout)
                if not burst.complete:
                    return {**found, "broke": f"{side}: lost {burst.lost} of {burst.expected} deliveries"}
            found["pairs"].append({"first": order[0], "against_us": cost["against"], "row_us": cost["row"]})
    return {**found, **_interval(found["pairs"])}


def _interval(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """The row's change in server CPU per delivery against its reference, with its interval."""
    # A burst shorter than the kernel's 10 ms CPU tick can read as no CPU at all: no ratio.
    readable = [
        (pair["against_us"], pair["row_us"]) for pair in pairs if pair["against_us"] and pair["row_us"]
    ]
    if not readable:
        return {"unreadable_pairs": len(pairs)}
    found = stats.ratio_interval(readable)

    def share(value: float) -> float | None:
        return round(value, 3) if math.isfinite(value) else None  # unbounded: too few pairs

    return {
        "change": share(found.estimate),
        "low": share(found.low),
        "high": share(found.high),
        "confidence": round(found.confidence, 3),
        "verdict": stats.verdict(found, SMALLEST_CHANGE),
        "unreadable_pairs": len(pairs) - len(readable),
    }


# What compression is given to work on: chat lines, and a document of repetitive records.
DOCS = REPO_ROOT / "docs"


def chat_lines(count: int = 64, seed: int = 7) -> list[str]:
    """Lines a chat room might carry: sentences of this site's own prose, 20 to 120 characters.

    Real English with a real vocabulary; a few dozen made-up words would flatter compression.
    """
    text = " ".join(path.read_text() for path in sorted(DOCS.glob("**/*.md")))
    plain = re.sub(r"\s+", " ", re.sub(r"[`*_#|\[\]{}()<>]", " ", text))
    sentences = {
        s.strip()
        for s in re.split(r"(?<=[.!?]) ", plain)
        if 20 <= len(s.strip()) <= 120 and s[:1].isupper() and not re.search(r"[/=:;]|\.md|\d", s)
    }
    return random.Random(seed).sample(sorted(sentences), count)


def task_lists(count: int = 16, seed: int = 7) -> list[str]:
    """A dashboard's update: 40 task records as JSON text, the same keys over and over."""
    pick = random.Random(seed)
    states = ("PENDING", "STARTED", "PROGRESS", "SUCCESS")
    return [
        json.dumps(
            [
                {
                    "task_id": f"{pick.getrandbits(64):016x}",
                    "user": pick.choice(("ann", "bob", "cy", "dee")),
                    "state": pick.choice(states),
                    "percent": pick.randint(0, 100),
                    "eta_seconds": pick.randint(0, 600),
                }
                for _ in range(40)
            ]
        )
        for _ in range(count)
    ]


PAYLOADS: dict[str, Callable[[], list[str]]] = {"chat-line": chat_lines, "task-list": task_lists}
WIRE_MAX_TEXT = 8192  # the chapter takes 500 characters of chat; a task list is about 4,100


def _wire(bench: LabBench, settings: Settings, budget: common.Budget) -> dict[str, Any]:
    """Per payload, compression off and on: bytes read per delivery, and server CPU per delivery."""
    found: dict[str, Any] = {}
    for payload, texts in PAYLOADS.items():
        found[payload] = {"text_bytes": round(statistics.mean(len(t.encode()) for t in texts()))}
        for compression in ("off", "on"):
            if budget.spent():
                found[payload][compression] = {"broke": "the time budget was spent before this step"}
                continue
            env = {"KNOB_COMPRESSION": compression, "KNOB_MAX_TEXT": str(WIRE_MAX_TEXT)}
            knob = Knob(f"compression {compression}", "", env=env)
            try:
                service = start_row(bench, f"wire-{compression}", knob)
            except (ServiceFailed, OSError) as exc:
                found[payload][compression] = {"broke": f"did not start: {str(exc).splitlines()[0][:200]}"}
                continue
            try:
                found[payload][compression] = asyncio.run(
                    _bytes_per_delivery(service, texts(), settings, budget)
                )
            finally:
                service.stop()
    return found


async def _bytes_per_delivery(
    service: Service, texts: list[str], settings: Settings, budget: common.Budget
) -> dict[str, Any]:
    async with LoadClient(service.url, texts=texts) as fleet:
        opened = await fleet.open(settings.wire_clients, timeout=min(budget.left(), 30))
        if opened.failed:
            return {"broke": f"connection failures: {opened.failed}"}
        read = sum(conn.wire_bytes for conn in fleet.connections)
        timeout = common.delivery_deadline(budget, settings.wire_clients * settings.wire_broadcasts)
        burst, per_delivery = await _burst(fleet, [service.pid], settings.wire_broadcasts, timeout)
        read = sum(conn.wire_bytes for conn in fleet.connections) - read
        if not burst.complete:
            return {"broke": f"lost {burst.lost} of {burst.expected} deliveries"}
        return {
            "compressed": all(conn._inflater is not None for conn in fleet.connections),
            "bytes_per_delivery": round(read / burst.delivered, 1),
            "server_us_per_delivery": per_delivery,
        }


def _profile(bench: LabBench, settings: Settings, budget: common.Budget) -> dict[str, Any]:
    """Where the baseline's CPU goes in its bursts at the largest step: py-spy's samples, by package.

    py-spy reads the server's stacks from outside (`--nonblocking`: it never pauses the process),
    and counts only samples where a thread is on the CPU, not waiting in the event loop.
    """
    clients = max(settings.client_steps)
    if budget.spent():
        return {"broke": "the time budget was spent before this step"}
    service = start_row(bench, "profile", KNOBS[BASELINE])
    raw = service.log_path.parent / "profile-baseline.txt"
    try:
        return asyncio.run(_sampled_bursts(service, raw, clients, settings, budget))
    finally:
        service.stop()


async def _sampled_bursts(
    service: Service, raw: Path, clients: int, settings: Settings, budget: common.Budget
) -> dict[str, Any]:
    async with LoadClient(service.url, sources=loopback_sources(settings.sources)) as fleet:
        opened = await fleet.open(clients, timeout=min(budget.left(), 20 + clients * 0.01))
        if opened.failed:
            return {"broke": f"connection failures: {opened.failed}"}
        command = [str(PY_SPY), "record", "--pid", str(service.pid), "--rate", "250", "--nonblocking"]
        command += ["--format", "raw", "--output", str(raw)]
        spy = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            # "py-spy> Sampling process 250 times a second. Press Control-C to exit.": attached.
            try:
                said = await asyncio.wait_for(asyncio.to_thread(spy.stdout.readline), timeout=15)
            except TimeoutError:
                said = b"nothing within 15 s"
            if b"Sampling" not in said:
                return {"broke": f"py-spy did not start: {said.decode(errors='replace').strip()[:200]}"}
            count = max(2, min(MOST_BROADCASTS, settings.burst_deliveries // clients))
            timeout = common.delivery_deadline(budget, clients * count * settings.bursts)
            delivered = 0
            for _ in range(settings.bursts):
                burst = await fleet.measure(count, sequential=False, timeout=timeout)
                delivered += burst.delivered
                if not burst.complete:
                    return {"broke": f"lost {burst.lost} of {burst.expected} deliveries"}
        finally:
            spy.send_signal(signal.SIGINT)  # it writes what it sampled, then exits
            try:
                await asyncio.to_thread(spy.wait, 30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()
    return {"clients": clients, "deliveries": delivered, **by_package(raw.read_text())}


def by_package(collapsed: str) -> dict[str, Any]:
    """py-spy's raw output (one stack per line, `frame;frame;... count`) as shares of the samples:
    by the package of the innermost Python frame (where the CPU was), and the top functions."""
    packages: dict[str, int] = {}
    functions: dict[str, int] = {}
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        leaf = stack.rsplit(";", 1)[-1]  # "function (path/to/file.py:line)"
        name, _, where = leaf.partition(" (")
        path = where.rsplit(":", 1)[0]
        package = _package(path)
        packages[package] = packages.get(package, 0) + int(count)
        function = f"{package}: {name}"
        functions[function] = functions.get(function, 0) + int(count)
        total += int(count)
    if not total:
        return {"samples": 0}

    def shares(counts: dict[str, int], most: int) -> dict[str, float]:
        top = sorted(counts.items(), key=lambda item: -item[1])[:most]
        return {key: round(value / total, 3) for key, value in top}

    return {"samples": total, "packages": shares(packages, 12), "functions": shares(functions, 12)}


def _package(path: str) -> str:
    """py-spy names files from their import root: `engineio/socket.py` is engineio; a bare
    `app.py` is the chapter's; any other bare file is a module of the standard library."""
    if "/" in path:
        return path.split("/", 1)[0]
    return "the chapter" if path == "app.py" else f"stdlib {Path(path).stem}"


async def _burst(
    fleet: LoadClient, pids: list[int], count: int, timeout: float
) -> tuple[DeliveryReport, float | None]:
    """`count` broadcasts back to back, and the server's CPU per delivery over them, in µs.

    The burst's window runs from its first send to its last delivery: the server's CPU for it.
    """
    cpu = _usage(pids)["cpu"]
    burst = await fleet.measure(count, sequential=False, timeout=timeout)
    cpu = _usage(pids)["cpu"] - cpu
    return burst, round(cpu / burst.delivered * 1e6, 2) if burst.delivered else None


def _idle(bench: LabBench, settings: Settings, budget: common.Budget) -> dict[str, Any]:
    """The server's CPU with `idle_clients` connected and silent, per ping interval."""
    found: dict[str, Any] = {}
    for interval in settings.ping_intervals:
        knob = Knob(f"ping_interval={interval:g}", "", env={"KNOB_PING_INTERVAL": f"{interval:g}"})
        try:
            service = start_row(bench, f"idle-{interval:g}", knob)
        except (ServiceFailed, OSError) as exc:
            found[f"{interval:g}"] = {"broke": f"did not start: {str(exc).splitlines()[0][:200]}"}
            continue
        try:
            found[f"{interval:g}"] = asyncio.run(_at_rest(service, settings, budget))
        finally:
            service.stop()
    return found


async def _at_rest(service: Service, settings: Settings, budget: common.Budget) -> dict[str, Any]:
    async with LoadClient(service.url, sources=loopback_sources(settings.sources)) as fleet:
        opened = await fleet.open(settings.idle_clients, timeout=min(budget.left(), 60))
        if opened.failed:
            return {"broke": f"connection failures: {opened.failed}", "errors": opened.errors}
        # Settle: the last handshakes' work is not rest.
        await asyncio.sleep(2)
        cpu, beats, started = common.tree_cpu(service.pid), fleet.heartbeats, time.monotonic()
        await asyncio.sleep(settings.idle_seconds)  # the measurement window itself, not a wait on a condition
        seconds = time.monotonic() - started
        cpu, beats = common.tree_cpu(service.pid) - cpu, fleet.heartbeats - beats
        return {
            "clients": fleet.live,
            "dropped": fleet.dropped,
            "seconds": round(seconds, 1),
            "server_cpu_percent": round(cpu / seconds * 100, 2),
            "heartbeats_per_s": round(beats / seconds, 1),
            "server_us_per_heartbeat": round(cpu / beats * 1e6, 1) if beats else None,
        }


def _processes(bench: LabBench, settings: Settings, budget: common.Budget) -> dict[str, Any]:
    """Chapter 04's app behind its nginx, with Redis between the instances: one instance, then two."""
    found: dict[str, Any] = {}
    for count in settings.processes:
        topology = Topology(
            CHAPTER04, instances=count, needs_redis=True, balancer=("nginx", NGINX_CONF), env=common.FLOOD_ENV
        )
        try:
            services = start_topology(bench, topology, prefix=f"procs{count}", timeout=60)
        except ServiceFailed as exc:
            found[str(count)] = {"broke": f"did not start: {str(exc).splitlines()[0][:200]}", "steps": {}}
            continue
        proxy = services[0]
        try:
            # Many source addresses: the config hashes the client's address to pick an instance.
            fleet = LoadClient(proxy.url, sources=loopback_sources(64))
            pids = [s.pid for s in services]
            found[str(count)] = asyncio.run(_steps(fleet, lambda pids=pids: pids, settings, budget))
        finally:
            common.stop_services(services)
    return found


# -- judging ------------------------------------------------------------------------------------


def _metric(row: dict[str, Any], clients: int, *path: str) -> Any:
    value: Any = row.get("steps", {}).get(str(clients))
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    return value


def judge(record: dict[str, Any]) -> None:
    """From the measured pairs and rows: each pair's interval, the verdicts, Node, the targets."""
    record["settings"]["smallest_change"] = SMALLEST_CHANGE
    for pair in record["pairs"].values():
        pair.update(_interval(pair.get("pairs", [])))
    record["verdicts"] = verdicts(record)
    record["against_node"] = against_node(record)
    record["targets"] = targets(record)


def verdicts(record: dict[str, Any]) -> dict[str, Any]:
    """Per compared row: its paired change in server CPU per delivery, and the word for it.

    The server's CPU per delivery is what a knob changes, and what sets how many clients one
    core serves; deliveries per second also depend on the client, which shares the cores.
    """
    found: dict[str, Any] = {}
    for key, pair in record["pairs"].items():
        row = record["rows"].get(key, {})
        if row.get("broke") or pair.get("broke") and not pair.get("pairs"):
            word = f"broke: {row.get('broke') or pair['broke']}"
        else:
            word = pair.get("verdict", "not measured")
        found[key] = {
            "against": pair["against"],
            **{part: pair.get(part) for part in ("change", "low", "high", "confidence")},
            "pairs": len(pair.get("pairs", [])),
            "verdict": word,
        }
    return found


def against_node(record: dict[str, Any]) -> dict[str, Any]:
    """The recommended setup against Node's server, from this run: CPU per delivery and the p99."""
    pair = record["verdicts"].get(NODE, {})
    clients = max(record["settings"]["client_steps"])
    ours = _metric(record["rows"].get(RECOMMENDED, {}), clients, "latency", "p99_ms")
    node = _metric(record["rows"].get(NODE, {}), clients, "latency", "p99_ms")
    # The pair measures Node against ours: Node's change is ours' cost turned around.
    change = pair.get("change")
    return {
        "clients": clients,
        "cpu_ours_over_node": round(1 / (1 + change), 2) if change is not None else None,
        "cpu_interval": [
            round(1 / (1 + pair[edge]), 2) if pair.get(edge) is not None else None for edge in ("high", "low")
        ],
        "p99_ms": {"ours": ours, "node": node},
        "p99_ours_over_node": round(ours / node, 2) if ours and node else None,
    } | {
        "cpu_target_met": None if change is None else 1 / (1 + change) <= 1,
        "p99_target": P99_TARGET,
        "p99_target_met": None if not (ours and node) else ours / node <= P99_TARGET,
    }


def targets(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Each row and pair delivered every message (otherwise its figures mean nothing); and the
    issue's two targets for the recommended setup against Node's server, from this run."""
    found = []
    for key, row in record["rows"].items():
        found.append(
            {
                "target": f"{key}: every delivery arrives",
                "measured": row.get("broke") or "all",
                "pass": not row.get("broke"),
            }
        )
    for key, pair in record["pairs"].items():
        done = len(pair.get("pairs", []))
        found.append(
            {
                "target": f"{key} against {pair['against']}: every delivery of every pair",
                "measured": pair.get("broke") or f"{done} pairs",
                "pass": not pair.get("broke"),
            }
        )
    node = record["against_node"]
    cpu, p99 = node["cpu_ours_over_node"], node["p99_ours_over_node"]  # the figures the targets read
    found.append(
        {
            "target": f"{RECOMMENDED}: server CPU per delivery at most Node's (the pairs' estimate)",
            "measured": f"{cpu}× Node's" if cpu is not None else "not measured",
            "pass": node["cpu_target_met"],
        }
    )
    found.append(
        {
            "target": f"{RECOMMENDED}: broadcast p99 at {node['clients']:,} clients within 1.5× Node's",
            "measured": f"{p99}× Node's" if p99 is not None else "not measured",
            "pass": node["p99_target_met"],
        }
    )
    for payload, found_wire in record["wire"].items():
        for compression in ("off", "on"):
            data = found_wire.get(compression, {})
            found.append(
                {
                    "target": f"{payload}, compression {compression}: every delivery arrives",
                    "measured": data.get("broke") or "all",
                    "pass": "bytes_per_delivery" in data,
                }
            )
    for count, data in record["processes"].items():
        found.append(
            {
                "target": f"{count} process(es) behind nginx: every delivery arrives",
                "measured": data.get("broke") or "all",
                "pass": not data.get("broke"),
            }
        )
    for interval, data in record["idle"].items():
        held = data.get("clients")
        found.append(
            {
                "target": f"ping_interval {interval} s: every idle client stays connected",
                "measured": data.get("broke") or f"{held:,} connected, {data['dropped']} dropped",
                "pass": not data.get("broke") and data.get("dropped") == 0,
            }
        )
    return found


# -- the summary --------------------------------------------------------------------------------


def headline(record: dict[str, Any]) -> dict[str, str | None]:
    """What a reader compares across machines: the baseline at the largest step, and each pair's change."""
    clients = max(record["settings"]["client_steps"])
    baseline = record["rows"][BASELINE]
    found = {
        f"baseline µs per delivery ({clients:,})": report.figure(
            _metric(baseline, clients, "burst", "server_us_per_delivery")
        ),
        f"baseline deliveries/s ({clients:,})": report.figure(
            _metric(baseline, clients, "burst", "deliveries_per_s"), ",.0f"
        ),
    }
    for key, verdict in record["verdicts"].items():
        change = verdict.get("change")  # None in a record from before the pairs
        found[f"{key}: CPU per delivery vs {verdict.get('against', BASELINE)} (%)"] = report.figure(
            None if change is None else change * 100, ".0f"
        )
    return found


def _pct(change: float | None) -> str:
    return "?" if change is None else f"{change:+.0%}"


def _paired(verdict: dict[str, Any]) -> str | None:
    """A pair's change, its interval and how sure it is: `+81% (+70% to +93%, 95.8%)`."""
    if not verdict or verdict.get("change") is None:
        return None
    return (
        f"{_pct(verdict['change'])} ({_pct(verdict['low'])} to {_pct(verdict['high'])}, "
        f"{verdict['confidence']:.1%}; against {verdict['against']})"
    )


def _cell(row: dict[str, Any], clients: int) -> str | None:
    step = row.get("steps", {}).get(str(clients))
    if not step or "burst" not in step:
        return None
    latency, burst = step["latency"], step["burst"]
    return (
        f"{latency['p50_ms']:.0f} / {latency['p99_ms']:.0f} ms; {burst['deliveries_per_s']:,}/s; "
        f"{burst['server_us_per_delivery']} µs"
    )


def summary_markdown(record: dict[str, Any]) -> str:
    lines = report.machine_line(record, NAME)
    steps = record["settings"]["client_steps"]
    clients = max(steps)
    header = ["row", "what changes"]
    header += [f"{n:,} clients: p50 / p99; deliveries/s; server CPU per delivery" for n in steps]
    header += [
        "KB / fds per connection",
        "server CPU per delivery, in pairs: the change (its interval, its confidence)",
        "verdict",
        "what it costs",
    ]
    rows = []
    for key, row in record["rows"].items():
        verdict = record["verdicts"].get(key, {})
        biggest = row.get("steps", {}).get(str(clients), {})
        per_conn = (
            f"{biggest['kb_per_connection']} / {biggest['fds_per_connection']}"
            if "kb_per_connection" in biggest
            else None
        )
        rows.append(
            [
                key,
                row["change"],
                *(_cell(row, n) for n in steps),
                per_conn,
                _paired(verdict),
                verdict.get("verdict") or ("the reference" if key == BASELINE else None),
                row["cost"],
            ]
        )
    lines.append(report.markdown_table(header, rows))
    settings = record["settings"]
    lines.append(
        f"Each row above was served once, at each step. Its verdict comes from pairs: the row and "
        f"the one it is judged against served side by side, {settings['pair_clients']:,} clients "
        f"on each, and {settings['pairs']} bursts of about {settings['pair_deliveries']:,} "
        "deliveries on each side, in turns (against, row; row, against; ...). The change is the "
        "Hodges-Lehmann estimate of the pairs' ratios of server CPU per delivery, with its "
        "Wilcoxon signed-rank interval at the confidence shown. A row *costs* or *helps* when the "
        "interval lies wholly above or below no change; *no change beyond "
        f"±{SMALLEST_CHANGE:.0%}* when it lies wholly within that band; otherwise *undecided*.\n"
    )
    node = record["against_node"]
    if node["cpu_ours_over_node"] is not None or node["p99_ours_over_node"] is not None:
        low, high = node["cpu_interval"]
        lines.append(
            f"**Against Node, in this run.** The chapter's production command ({RECOMMENDED} row) spent "
            f"{node['cpu_ours_over_node']}× Node's server CPU per delivery (from {low}× to {high}×), "
            f"and its broadcast p99 at {node['clients']:,} clients was {node['p99_ms']['ours']:.0f} ms "
            f"against Node's {node['p99_ms']['node']:.0f} ms ({node['p99_ours_over_node']}×).\n"
        )
    lines.append(_gc_lines(record))
    lines.append(_profile_table(record))
    lines.append(_wire_table(record))
    lines.append(_big_lines(record))
    lines.append(_idle_table(record))
    lines.append(_processes_table(record))
    lines.append(report.targets_table(record["targets"]))
    return "\n".join(lines)


def _gc_lines(record: dict[str, Any]) -> str:
    """The garbage collections each knob server ran over its whole run, per generation."""
    rows = []
    for key, row in record["rows"].items():
        gc = row.get("gc")
        if gc:
            rows.append(
                [
                    key,
                    *(
                        f"{gc[g]['count']:,}; {gc[g]['total_ms']:,} ms; {gc[g]['longest_ms']} ms"
                        for g in "012"
                    ),
                ]
            )
    header = [
        "row: collections over its steps",
        *(f"generation {g}: count; total; longest pause" for g in "012"),
    ]
    return report.markdown_table(header, rows) if rows else ""


def _profile_table(record: dict[str, Any]) -> str:
    """The baseline's bursts, sampled: the share of on-CPU samples in each package, and the top functions."""
    found = record.get("profile", {})
    if not found.get("samples"):
        return f"The profile: {found.get('broke', 'no samples')}.\n" if found else ""
    packages = list(found["packages"].items())
    functions = list(found["functions"].items())
    rows = [
        [
            *(packages[i] if i < len(packages) else ("", None)),
            *(functions[i] if i < len(functions) else ("", None)),
        ]
        for i in range(max(len(packages), len(functions)))
    ]
    rows = [
        [a, f"{b:.0%}" if b is not None else "", c, f"{d:.0%}" if d is not None else ""]
        for a, b, c, d in rows
    ]
    header = [
        f"baseline, bursts to {found['clients']:,} clients, sampled: package",
        f"share of {found['samples']:,} samples",
        "function (innermost Python frame)",
        "share",
    ]
    return report.markdown_table(header, rows)


def _wire_table(record: dict[str, Any]) -> str:
    """What compression does to each payload: bytes read per delivery, and the server's CPU."""
    rows = []
    for payload, found in record.get("wire", {}).items():
        off, on = found.get("off", {}), found.get("on", {})
        if "bytes_per_delivery" not in off or "bytes_per_delivery" not in on:
            rows.append([payload, found["text_bytes"], off.get("broke") or on.get("broke"), None, None])
            continue
        saved = 1 - on["bytes_per_delivery"] / off["bytes_per_delivery"]
        cpus = off["server_us_per_delivery"], on["server_us_per_delivery"]
        cpu = f" ({cpus[1] / cpus[0] - 1:+.0%})" if all(cpus) else ""  # a tick of CPU or more each
        rows.append(
            [
                payload,
                f"{found['text_bytes']:,}",
                f"{off['bytes_per_delivery']:,} / {on['bytes_per_delivery']:,} ({saved:.0%} fewer)",
                f"{cpus[0]} / {cpus[1]} µs{cpu}",
                "yes" if on.get("compressed") else "no",
            ]
        )
    header = [
        "payload (one broadcast)",
        "text bytes",
        "bytes read per delivery: off / on",
        "server CPU per delivery: off / on (one run each)",
        "compressed when on",
    ]
    return report.markdown_table(header, rows) if rows else ""


def _largest_step_fds(record: dict[str, Any], row: str) -> float | None:
    """A row's file descriptors per connection at its largest step, or None."""
    steps = record["rows"].get(row, {}).get("steps", {})
    return max(steps.items(), key=lambda kv: int(kv[0]), default=(None, {}))[1].get("fds_per_connection")


def _big_lines(record: dict[str, Any]) -> str:
    """The big step: how many descriptors its clients took, against the limit: the fd arithmetic."""
    lines = []
    simple, under_gunicorn = _largest_step_fds(record, BASELINE), _largest_step_fds(record, "gunicorn")
    for key, row in record["rows"].items():
        big = row.get("big")
        if not big:
            continue
        per = big.get("fds_per_connection")
        limit = big["fd_limit"]["soft"]
        n = big["clients"]
        held = (
            f"held {n:,} clients" if not big.get("broke") else f"did not hold {n:,} clients ({big['broke']})"
        )
        need = big["fds_at_start"] + per * big["clients"] if per is not None else None
        said = f"**{n:,} clients on one process.** With {key}, the server {held}"
        if need is not None and limit:
            said += (
                f", at {per} file descriptors each: {big['fds_at_start']:,} at start plus {per} × {n:,} "
                f"is about {need:,.0f}, against its open-files limit of {limit:,}"
            )
        lines.append(said + ".")
        if simple and limit:
            simple_need = big["fds_at_start"] + simple * n
            where = "beyond" if simple_need > limit else "within"
            lines.append(
                f"simple-websocket holds {simple} per connection on gevent's own server, which "
                f"`socketio.run` starts (the baseline above): {n:,} clients need about "
                f"{simple_need:,.0f} descriptors, {where} a limit of {limit:,}."
            )
        if under_gunicorn:
            lines.append(
                f"Under gunicorn's gevent worker it holds {under_gunicorn} (the gunicorn row): "
                "simple-websocket duplicates the socket only on gevent's own server."
            )
        if big.get("burst"):
            latency, burst = big["latency"], big["burst"]
            lines.append(
                f"At {big['clients']:,}: p50 / p99 {latency['p50_ms']:.0f} / {latency['p99_ms']:.0f} ms, "
                f"{burst['deliveries_per_s']:,} deliveries/s, "
                f"{burst['delivered']:,} of {burst['expected']:,} delivered."
            )
    return " ".join(lines) + "\n" if lines else ""


def _idle_table(record: dict[str, Any]) -> str:
    rows = []
    for interval, data in record["idle"].items():
        if "broke" in data:
            rows.append([f"{interval} s", None, None, None, data["broke"]])
            continue
        rows.append(
            [
                f"{interval} s",
                f"{data['clients']:,}",
                data["server_cpu_percent"],
                data["heartbeats_per_s"],
                data["server_us_per_heartbeat"],
            ]
        )
    header = [
        "ping_interval",
        "idle clients",
        "server CPU at rest (% of a core)",
        "heartbeats/s",
        "µs per heartbeat",
    ]
    return report.markdown_table(header, rows)


def _processes_table(record: dict[str, Any]) -> str:
    steps = record["settings"]["client_steps"]
    rows = []
    for count, data in record["processes"].items():
        rows.append([count, *(_cell(data, n) for n in steps), data.get("broke") or "all delivered"])
    header = ["chapter 04 instances behind nginx"]
    header += [f"{n:,} clients: p50 / p99; deliveries/s; CPU per delivery (nginx + instances)" for n in steps]
    header += ["result"]
    return report.markdown_table(header, rows)
