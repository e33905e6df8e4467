"""Chapter 02 under load: threading, gevent and eventlet side by side, Node.js as the yardstick.

For each mode it starts the chapter's server, then adds clients in steps
(100, 500, 1,000, 2,000, 5,000, 10,000) and at each step measures:

- broadcast latency: one client triggers a broadcast, every client (the sender
  too) receives it; the next goes out once all have it. p50/p99 over all
  deliveries of all rounds, in ms, from the trigger's send to each receipt.
- deliveries per second: a burst of broadcasts sent back to back, every
  delivery counted, divided by the time to the last one; the load client's
  CPU per delivery is measured over the same burst.
- server memory per connection: the RSS growth of the server's process tree
  since it started, divided by the clients.

A mode stops at the first step where a client fails to connect or a delivery
is missing at the deadline, and the record says where and why. Then each app,
correct and antipattern, answers `ping`s while another client runs `slow_io`
and `cpu_work`: the longest round trip is how long everybody else waited.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import socketio
from tqdm import tqdm

from bench import common, plots, report
from bench.loadclient import LoadClient, latency_summary, loopback_sources
from lab.apps import start_app
from lab.deps import require_binary
from lab.processes import REPO_ROOT, LabBench, Service, ServiceFailed

NAME = "02-async-modes"  # docs/bench/<NAME>.json
PLOT = plots.async_modes  # its figures, drawn again by --report-only
CHAPTER_DIR = "chapters/02_async_modes"
NODE_SERVER = REPO_ROOT / "bench" / "node_reference" / "server.js"
# The most CPU the load client may spend per delivery in its hardest burst: above it, the client,
# not the server, may be what sets the deliveries per second.
CLIENT_US_PER_DELIVERY_TARGET = 10


@dataclass(frozen=True)
class Server:
    """One way to serve the chapter: a script (or a command run in its folder)."""

    script: str
    command: Callable[[int], list[str]] | None = None
    # Handshakes in flight at once: Werkzeug's threads drop a large storm.
    concurrency: int = 64
    has_cpu_work: bool = True
    # The documented failure is that it never starts serving (antipatterns/02_late_monkey_patch.py).
    hangs_at_start: bool = False


def _node(_port: int) -> list[str]:
    return [require_binary("node"), str(NODE_SERVER)]


def _gunicorn(_port: int) -> list[str]:
    # The command the chapter documents, with this interpreter's gunicorn.
    return [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]


MODES: dict[str, Server] = {
    "threading": Server(f"{CHAPTER_DIR}/run_threading.py", concurrency=16),
    "gevent": Server(f"{CHAPTER_DIR}/run_gevent.py"),
    "eventlet": Server(f"{CHAPTER_DIR}/run_eventlet.py"),
    "gunicorn-gevent": Server(f"{CHAPTER_DIR}/wsgi.py", command=_gunicorn),
    "node": Server("bench/node_reference/server.js", command=_node, has_cpu_work=False),
}
DEFAULT_MODES = ("threading", "gevent", "eventlet", "node")
ANTIPATTERNS: dict[str, Server] = {
    "antipattern: blocking sleep": Server("antipatterns/02_blocking_sleep.py"),
    "antipattern: CPU-bound handler": Server("antipatterns/02_cpu_bound_handler.py"),
    "antipattern: late monkey patch": Server("antipatterns/02_late_monkey_patch.py", hangs_at_start=True),
}


@dataclass(frozen=True)
class Settings:
    steps: tuple[int, ...]
    rounds: int  # sequential broadcasts per step (latency)
    burst_deliveries: int  # about this many deliveries per burst (throughput)
    work_seconds: float  # how long slow_io / cpu_work run in the round-trip check
    total_seconds: float  # the whole run's budget
    mode_seconds: float  # one mode's load steps' budget
    sources: int  # loopback source addresses to spread connections over


FULL = Settings((100, 500, 1000, 2000, 5000, 10000), 10, 60_000, 1.0, 14 * 60, 180, 4)
QUICK = Settings((20, 100, 200), 3, 2_000, 0.4, 60, 12, 2)


def settings_for(quick: bool, max_clients: int | None) -> Settings:
    base = QUICK if quick else FULL
    if max_clients is None:
        return base
    steps = tuple(n for n in base.steps if n < max_clients) + (max_clients,)
    return dataclasses.replace(base, steps=steps)


def run(quick: bool, max_clients: int | None, modes: list[str], out: str | None) -> dict[str, Any]:
    """Run every scenario for `modes`, write the JSON, plots and summary, and return the record."""
    settings = settings_for(quick, max_clients)
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise SystemExit(f"unknown mode(s) {unknown}; choose from {sorted(MODES)}")
    record: dict[str, Any] = {**common.new_record("02", quick, settings), "modes": {}, "round_trips": {}}
    budget = common.Budget(settings.total_seconds)
    apps = {**{m: MODES[m] for m in modes}, **ANTIPATTERNS}
    total_steps = len(modes) * len(settings.steps) + len(apps)
    env = {"MAX_CLIENTS": str(max(settings.steps) + 100), **common.FLOOD_ENV}
    with (
        LabBench(common.log_dir("02")) as bench,
        tqdm(total=total_steps, desc="bench 02", unit="step", file=sys.stderr) as progress,
    ):
        for mode in modes:
            mode_budget = common.Budget(min(settings.mode_seconds, budget.left()))
            progress.set_postfix_str(mode)
            record["modes"][mode] = _load_mode(bench, mode, MODES[mode], env, settings, mode_budget, progress)
        for label, server in apps.items():
            progress.set_postfix_str(label)
            record["round_trips"][label] = _round_trip_check(bench, label, server, env, settings)
            progress.update(1)
        progress.set_postfix_str("python-socketio's client")
        reference = reference_client_cost(bench, env, quick)
    record["targets"] = targets(record, settings)
    record["client_cost"] = {**client_cost(record), "python_socketio_client": reference}
    out_dir = common.output_dir(quick, out)
    common.write_results(record, out_dir, NAME, PLOT, summary_markdown, headline)
    return record


# -- load steps ---------------------------------------------------------------------------------


def _start(bench: LabBench, name: str, server: Server, env: dict[str, str], timeout: float = 60) -> Service:
    return start_app(bench, server.script, name=name, env=env, command=server.command, timeout=timeout)


def _load_mode(
    bench: LabBench,
    mode: str,
    server: Server,
    env: dict[str, str],
    settings: Settings,
    budget: common.Budget,
    progress: tqdm,
) -> dict[str, Any]:
    try:
        service = _start(bench, f"load-{mode}", server, env)
    except (ServiceFailed, OSError) as exc:
        progress.update(len(settings.steps))
        broke = {"clients": 0, "reason": f"did not start: {exc}"}
        return {"steps": [], "max_clients_ok": 0, "broke": broke, "disorder": 0}
    try:
        result = asyncio.run(_load_steps(service, server, settings, budget, progress))
    finally:
        service.stop()
    passed = len(result["steps"]) - (1 if result["broke"] else 0)  # a broken step is recorded too
    progress.update(len(settings.steps) - passed)
    return result


async def _load_steps(
    service: Service, server: Server, settings: Settings, budget: common.Budget, progress: tqdm
) -> dict[str, Any]:
    base_rss = common.tree_rss(service.pid)
    base_fds = common.tree_fds(service.pid)
    steps: list[dict[str, Any]] = []
    broke: dict[str, Any] | None = None
    max_ok = 0
    fleet = LoadClient(
        service.url, sources=loopback_sources(settings.sources), concurrency=server.concurrency
    )
    async with fleet:
        for clients in settings.steps:
            step, why = await _one_step(fleet, service, clients, (base_rss, base_fds), settings, budget)
            steps.append(step)
            if why:
                broke = {"clients": clients, "reason": why, "connected": fleet.live}
                log = service.log_text()
                broke["server_errors"] = common.log_errors(log)
                broke["server_log_tail"] = common.log_tail(log)
                break
            max_ok = clients
            progress.update(1)
    return {
        "server_rss_at_start_mb": round(base_rss / 2**20, 1),
        "max_clients_ok": max_ok,
        "broke": broke,
        "steps": steps,
        "disorder": disorder(steps),
    }


def disorder(steps: list[dict[str, Any]]) -> int:
    """Deliveries that arrived after a later broadcast, over every step's rounds and burst."""
    return sum(step[kind]["disorder"] for step in steps for kind in ("latency", "burst") if kind in step)


async def _one_step(
    fleet: LoadClient,
    service: Service,
    clients: int,
    base: tuple[int, int],
    settings: Settings,
    budget: common.Budget,
) -> tuple[dict[str, Any], str | None]:
    """One step: connect up to `clients`, then latency rounds and a burst. Returns (record, why it broke)."""
    step: dict[str, Any] = {"clients": clients}
    if budget.spent():
        return step, "stopped: this mode's time budget was spent before the step"
    missing = clients - len(fleet.connections)
    opened = await fleet.open(missing, timeout=min(budget.left(), 20 + clients * 0.01))
    step["connect"] = {"seconds": round(opened.seconds, 2), "failed": opened.failed, "errors": opened.errors}
    if opened.failed or not service.alive():
        alive = "" if service.alive() else " (the server process died)"
        return step, f"connection failures: {opened.failed} of {missing} new clients{alive}"
    base_rss, base_fds = base
    rss = common.tree_rss(service.pid)
    step["server_rss_mb"] = round(rss / 2**20, 1)
    step["memory_per_connection_kb"] = round((rss - base_rss) / clients / 1024, 1)
    # What `ulimit -n` a server needs: under gevent, simple-websocket dup()s each websocket's socket.
    step["fds_per_connection"] = round((common.tree_fds(service.pid) - base_fds) / clients, 2)

    # Latency: one broadcast at a time.
    timeout = common.delivery_deadline(budget, clients * settings.rounds)
    latency = await fleet.measure(settings.rounds, sequential=True, timeout=timeout)
    step["latency"] = latency.as_dict()
    if not latency.complete:
        return step, _lost(latency.as_dict(), timeout)

    # Throughput: a burst of broadcasts back to back.
    burst_count = max(2, min(50, settings.burst_deliveries // clients))
    timeout = common.delivery_deadline(budget, clients * burst_count)
    burst = await fleet.measure(burst_count, sequential=False, timeout=timeout)
    step["burst"] = burst.as_dict()
    if not burst.complete:
        return step, _lost(burst.as_dict(), timeout)
    return step, None


def _lost(report: dict[str, Any], timeout: float) -> str:
    parts = [f"{report['lost']} of {report['expected']} deliveries missing after {timeout:.0f}s"]
    if report["disorder"]:
        parts.append(f"{report['disorder']} repeated or out of order")
    if report["dropped"]:
        parts.append(f"{report['dropped']} connections dropped")
    return "lost deliveries: " + ", ".join(parts)


# -- blocked vs cooperative round trips -----------------------------------------------------------


def _round_trip_check(
    bench: LabBench, label: str, server: Server, env: dict[str, str], settings: Settings
) -> dict[str, Any]:
    if not (REPO_ROOT / server.script).exists():
        return {"skipped": f"{server.script} does not exist"}
    # An app that hangs on purpose gets 15 s, several times what the others need to start.
    timeout = 15 if server.hangs_at_start else 30
    try:
        service = _start(
            bench, "rtt-" + label.replace(":", "").replace(" ", "-"), server, env, timeout=timeout
        )
    except (ServiceFailed, OSError) as exc:
        expected = " (its documented symptom)" if server.hangs_at_start else ""
        return {
            "skipped": f"never started serving{expected}: " + str(exc).splitlines()[0],
            "server_errors": common.log_errors(str(exc)),
        }
    try:
        return {"script": server.script, **asyncio.run(_round_trips(service, server, settings.work_seconds))}
    finally:
        service.stop()


async def _round_trips(service: Service, server: Server, seconds: float) -> dict[str, Any]:
    """Ping round trips on one connection while another runs slow_io, then cpu_work, for `seconds`."""
    async with LoadClient(service.url, concurrency=2) as fleet:
        opened = await fleet.open(2, timeout=20)
        if opened.failed:
            return {"skipped": f"could not connect: {opened.errors}"}
        worker, prober = fleet.connections
        result: dict[str, Any] = {"work_seconds": seconds}
        result["idle"] = latency_summary([await fleet.round_trip(prober) for _ in range(10)])
        for work in ("slow_io", "cpu_work"):
            if work == "cpu_work" and not server.has_cpu_work:
                result[work] = None
                continue
            job = asyncio.create_task(fleet.call(worker, work, {"seconds": seconds}, timeout=seconds + 15))
            # Ping until the work's own ack is back: the longest wait is the stall others felt.
            trips: list[float] = []
            deadline = time.monotonic() + seconds + 15
            while not job.done() and time.monotonic() < deadline:
                trips.append(await fleet.round_trip(prober, timeout=seconds + 15))
            try:
                ack = await job
            except (TimeoutError, ConnectionError) as exc:
                ack = f"{type(exc).__name__}: {exc}"
            summary = latency_summary(trips)
            stalled = (summary["max_ms"] or 0) >= 500 * seconds
            result[work] = {**summary, "pings": len(trips), "ack": ack, "others_stalled": stalled}
        return result


# -- why the bench has its own client -----------------------------------------------------------


def reference_client_cost(bench: LabBench, env: dict[str, str], quick: bool) -> dict[str, Any]:
    """python-socketio's own client on the gevent app, measured like the load client: CPU per delivery.

    It runs after every asyncio measurement, alone in this process, so process_time is its own.
    """
    clients, broadcasts = (10, 10) if quick else (50, 40)
    expected = clients * broadcasts
    try:
        service = _start(bench, "reference-client-gevent", MODES["gevent"], env)
    except (ServiceFailed, OSError) as exc:
        return {"skipped": "did not start: " + str(exc).splitlines()[0]}
    received = itertools.count(1)
    all_in = threading.Event()

    def on_broadcast(_data: Any) -> None:
        if next(received) == expected:
            all_in.set()

    fleet = [socketio.Client(reconnection=False) for _ in range(clients)]
    try:
        for client in fleet:
            client.on("broadcast", on_broadcast)
            client.connect(service.url, transports=["websocket"], wait_timeout=10)
        cpu_started = time.process_time()
        for i in range(broadcasts):
            fleet[0].emit("broadcast", {"text": f"reference {i}"})
        complete = all_in.wait(timeout=60)
        cpu = time.process_time() - cpu_started
    finally:
        service.stop()  # first: a client whose server is gone disconnects at once
        for client in fleet:
            client.disconnect()
    delivered = next(received) - 1
    return {
        "clients": clients,
        "deliveries": delivered,
        "complete": complete,
        "us_per_delivery": round(cpu / max(1, delivered) * 1e6, 2),
    }


# -- verdicts and summary -----------------------------------------------------------------------


def _step(record: dict[str, Any], mode: str, clients: int) -> dict[str, Any] | None:
    for step in record["modes"].get(mode, {}).get("steps", []):
        if step["clients"] == clients:
            return step
    return None


def _bursts(record: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (mode, step) for mode, data in record["modes"].items() for step in data["steps"] if "burst" in step
    ]


def client_cost(record: dict[str, Any]) -> dict[str, Any]:
    """The load client's CPU per delivery in its hardest burst: the most deliveries per second."""
    bursts = _bursts(record)
    if not bursts:
        return {"us_per_delivery": None, "target_us": CLIENT_US_PER_DELIVERY_TARGET}
    mode, step = max(bursts, key=lambda b: b[1]["burst"]["deliveries_per_s"] or 0)
    burst = step["burst"]
    every = sorted(
        b["burst"]["client_us_per_delivery"] for _, b in bursts if b["burst"]["client_us_per_delivery"]
    )
    return {
        "us_per_delivery": burst["client_us_per_delivery"],
        "measured_in": f"{mode}, {step['clients']} clients, {burst['deliveries_per_s']} deliveries/s",
        "client_cpu_share": burst["client_cpu_share"],
        "us_per_delivery_all_bursts_median": every[len(every) // 2] if every else None,
        "target_us": CLIENT_US_PER_DELIVERY_TARGET,
    }


def targets(record: dict[str, Any], settings: Settings) -> list[dict[str, Any]]:
    """The chapter's claims, pass or fail (None: this run did not measure it)."""
    found: list[dict[str, Any]] = []
    gevent = record["modes"].get("gevent")
    measured_10k = gevent is not None and 10000 in settings.steps
    held = gevent["max_clients_ok"] if gevent else None
    found.append(
        {
            "target": "gevent holds 10,000 clients with every message delivered",
            "measured": f"{held} clients" if held is not None else None,
            "pass": (held >= 10000) if measured_10k else None,
        }
    )
    step = _step(record, "gevent", 2000)
    p99 = step["latency"]["latency"]["p99_ms"] if step and "latency" in step else None
    found.append(
        {
            "target": "gevent: broadcast p99 at 2,000 clients <= 150 ms",
            "measured": f"{p99} ms" if p99 is not None else None,
            "pass": (p99 <= 150) if p99 is not None else None,
        }
    )
    cost = client_cost(record)["us_per_delivery"]
    found.append(
        {
            "target": f"the load client uses <= {CLIENT_US_PER_DELIVERY_TARGET} µs of CPU per delivery "
            "in a burst",
            "measured": f"{cost} µs" if cost is not None else None,
            "pass": (cost <= CLIENT_US_PER_DELIVERY_TARGET) if cost is not None else None,
        }
    )
    return found


def headline(record: dict[str, Any]) -> dict[str, str | None]:
    """What a reader compares across machines: gevent at 2,000 clients, gevent's best rate, and
    the load client's own cost, which says whether the client or the server set the rate."""
    latency = (_step(record, "gevent", 2000) or {}).get("latency", {}).get("latency", {})
    rates = [step["burst"]["deliveries_per_s"] for mode, step in _bursts(record) if mode == "gevent"]
    return {
        "gevent p50 at 2,000 (ms)": report.figure(latency.get("p50_ms"), ".0f"),
        "gevent p99 at 2,000 (ms)": report.figure(latency.get("p99_ms"), ".0f"),
        "gevent best deliveries/s": report.figure(max(filter(None, rates), default=None), ","),
        "load client µs per delivery": report.figure(record["client_cost"].get("us_per_delivery")),
    }


def summary_markdown(record: dict[str, Any]) -> str:
    """The tables the docs include (`--8<-- "docs/bench/02-summary.md"`): written by the bench only."""
    lines = report.machine_line(record, "02")
    rows = []
    for mode, data in record["modes"].items():
        best = max((s["burst"]["deliveries_per_s"] or 0 for s in data["steps"] if "burst" in s), default=None)
        ok_step = _step(record, mode, data["max_clients_ok"]) or {}
        broke = data["broke"]
        rows.append(
            [
                mode,
                f"{data['max_clients_ok']:,}",
                _broke_cell(broke),
                _latency_cell(record, mode, 1000),
                _latency_cell(record, mode, 2000),
                f"{best:,}" if best else None,
                ok_step.get("memory_per_connection_kb"),
                ok_step.get("fds_per_connection"),
                disorder(data["steps"]),
            ]
        )
    header = ["mode", "most clients, all delivered", "stopped at", "p50 / p99 at 1,000 (ms)"]
    header += ["p50 / p99 at 2,000 (ms)", "best deliveries/s", "server KB per connection"]
    header += ["server file descriptors per connection", "out of order"]
    lines.append(report.markdown_table(header, rows))
    lines.append("Round trips of `ping` while another client's `slow_io` / `cpu_work` runs:\n")
    rows = []
    for label, data in record["round_trips"].items():
        if "skipped" in data:
            rows.append([label, None, None, None, data["skipped"]])
            continue
        cells = [label, data["idle"]["p50_ms"]]
        stalls = []
        for work in ("slow_io", "cpu_work"):
            work_data = data[work]
            cells.append(work_data["max_ms"] if work_data else None)
            if work_data and work_data["others_stalled"]:
                stalls.append(work)
        cells.append(("stalled by " + " and ".join(stalls)) if stalls else "stays responsive")
        rows.append(cells)
    seconds = record["settings"]["work_seconds"]
    header = ["app", "idle p50 (ms)", f"longest during {seconds:g} s slow_io (ms)"]
    header += [f"longest during {seconds:g} s cpu_work (ms)", "verdict"]
    lines.append(report.markdown_table(header, rows))
    cost = record["client_cost"]
    lines.append(
        f"The load client's own CPU: {cost.get('us_per_delivery')} µs per delivery in its hardest burst "
        f"({cost.get('measured_in')}), median over all bursts "
        f"{cost.get('us_per_delivery_all_bursts_median')} µs."
    )
    reference = cost.get("python_socketio_client") or {}
    if reference.get("us_per_delivery") is not None:
        lines.append(
            f"For comparison, python-socketio's own client, measured the same way on the gevent app "
            f"({reference['clients']} clients, {reference['deliveries']:,} deliveries): "
            f"{reference['us_per_delivery']} µs per delivery."
        )
    lines.append("")
    lines.append(report.targets_table(record["targets"]))
    return "\n".join(lines)


def _broke_cell(broke: dict[str, Any] | None) -> str:
    """Where a mode stopped, and the server's own words for why, when it logged any."""
    if not broke:
        return "did not break"
    cell = f"{broke['clients']:,}: {broke['reason']}"
    errors = [
        e for e in broke.get("server_errors", []) if "Errno" in e or e.startswith(("OSError", "RuntimeError"))
    ]
    return f"{cell} (server: `{errors[-1]}`)" if errors else cell


def _latency_cell(record: dict[str, Any], mode: str, clients: int) -> str | None:
    step = _step(record, mode, clients)
    if not step or "latency" not in step:
        return None
    latency = step["latency"]["latency"]
    return f"{latency['p50_ms']:.0f} / {latency['p99_ms']:.0f}" if latency["count"] else None
