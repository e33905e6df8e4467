"""The knobs table: what each setting an engineer can turn does to chapter 02's gevent app under load.

Every row is one change against the same baseline (chapters/02_async_modes under gevent, served
by socketio.run, with simple-websocket and python-socketio's JSON), measured by the same load
client in the same run, at 1,000 and 2,000 clients: broadcast p50/p99 (one broadcast at a time),
deliveries per second (a burst), the server's CPU per delivery over that burst, and its memory
and file descriptors per connection. bench/knob_server.py serves each row: the chapter's own
create_app with the row's SocketIO options added.

The machine drifts over minutes (the same server, measured twice, landed up to a third apart in
CPU per delivery here), so each row is compared with the baseline run just before it and just
after it: baseline, row, baseline, row, ..., baseline. A row changed something only when it lies
further from its two neighbours' mean than they lie from each other, and than the typical gap
between any two neighbouring baselines of the run, at every step.

Two more comparisons have their own baselines:
- the heartbeat: 5,000 idle clients, ping_interval 25 s (the default) against 5 s: the server's
  CPU at rest;
- processes: chapter 04's app behind its nginx with Redis, one instance against two, on this
  machine's cores (the load client needs one of them too).
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from bench import common, report
from bench.loadclient import LoadClient, loopback_sources
from lab.apps import get_json, healthz, start_app
from lab.chapters import Topology, start_topology
from lab.deps import MissingDependency
from lab.processes import REPO_ROOT, LabBench, Service, ServiceFailed

NAME = "knobs"  # docs/bench/<NAME>.json
PLOT = None  # a table, no figures
KNOB_SERVER = "bench/knob_server.py"
CHAPTER02 = "chapters/02_async_modes"
CHAPTER04 = "chapters/04_nginx_lb/app.py"
NGINX_CONF = "chapters/04_nginx_lb/nginx.conf"
# The knobs' own packages, installed apart (requirements/knobs.txt says why); nox -s bench does it.
PACKAGES = REPO_ROOT / ".lab" / "knob-packages"
INSTALL = f"python -m pip install --no-deps --target {PACKAGES} -r {REPO_ROOT / 'requirements' / 'knobs.txt'}"
# A burst is long enough to read the server's CPU to a few per cent (Linux counts it in 10 ms ticks):
# 200,000 deliveries at 2,000 clients, in at most this many broadcasts.
MOST_BROADCASTS = 200
# A difference smaller than this share is never called a change, however close the baselines land.
MIN_NOISE = 0.05


@dataclass(frozen=True)
class Knob:
    """One row: what changes, how the server and the client are told, and what it costs."""

    change: str
    cost: str
    env: dict[str, str] = field(default_factory=dict)  # the knob server's KNOB_* settings
    compression: bool = False  # the server accepts the per-message deflate every client offers
    msgpack: bool = False  # the client speaks the msgpack serializer
    gunicorn: bool = False  # the chapter's gunicorn command instead of the knob server
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
        "gunicorn's gevent worker (`gunicorn -c gunicorn.conf.py wsgi:app`) instead of `socketio.run`",
        "none: the chapter's production command",
        gunicorn=True,
    ),
}


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
    total_seconds: float


FULL = Settings((1000, 2000), 10, 200_000, 3, 64, 5000, 30, (25, 5), (1, 2), 10_000, 20 * 60)
QUICK = Settings((100, 200), 3, 2_000, 1, 4, 300, 5, (25, 5), (1, 2), 400, 3 * 60)


def run(quick: bool, max_clients: int | None, out: str | None) -> dict[str, Any]:
    """Every row, then the heartbeat and the processes; writes the JSON and the summary."""
    try:
        require_packages()
    except MissingDependency as missing:
        raise SystemExit(str(missing)) from None
    settings = common.up_to(QUICK if quick else FULL, max_clients)
    record: dict[str, Any] = {**common.new_record(NAME, quick, settings), "rows": {}}
    budget = common.Budget(settings.total_seconds)
    changes = [key for key in KNOBS if key != BASELINE]
    # After each row, the baseline again: every row has a baseline run on either side of it.
    record["baselines_after"] = []
    with (
        LabBench(common.log_dir(NAME)) as bench,
        tqdm(total=2 * len(changes) + 3, desc="bench knobs", unit="run", file=sys.stderr) as bar,
    ):
        bar.set_postfix_str(BASELINE)
        record["rows"][BASELINE] = _row(bench, BASELINE, KNOBS[BASELINE], settings, budget)
        bar.update(1)
        for key in changes:
            bar.set_postfix_str(key)
            record["rows"][key] = _row(bench, key, KNOBS[key], settings, budget)
            bar.update(1)
            bar.set_postfix_str(f"{BASELINE} after {key}")
            after = _row(bench, f"{BASELINE}-after-{key}", KNOBS[BASELINE], settings, budget)
            record["baselines_after"].append(
                {part: value for part, value in after.items() if part in ("steps", "broke")}
            )
            bar.update(1)
        bar.set_postfix_str("heartbeat at rest")
        record["idle"] = _idle(bench, settings, budget)
        bar.update(1)
        bar.set_postfix_str("one process or two")
        record["processes"] = _processes(bench, settings, budget)
        bar.update(1)
    record["noise"] = noise(record)
    record["verdicts"] = verdicts(record)
    record["targets"] = targets(record)
    out_dir = common.output_dir(quick, out)
    common.write_results(record, out_dir, NAME, PLOT, summary_markdown, headline)
    return record


# -- measuring ----------------------------------------------------------------------------------


def require_packages() -> None:
    """The knobs' packages, installed apart, on this process's path too (the client's msgpack)."""
    if not all((PACKAGES / name).is_dir() for name in ("geventwebsocket", "msgpack", "orjson")):
        raise MissingDependency(f"the knobs' packages are not in {PACKAGES}. Install them with: {INSTALL}")
    if str(PACKAGES) not in sys.path:
        sys.path.append(str(PACKAGES))


def start_row(bench: LabBench, key: str, knob: Knob) -> Service:
    env = {**common.FLOOD_ENV, "MAX_CLIENTS": "12000"}
    name = f"knob-{key}"
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
        row["server"] = (
            get_json(f"{service.url}/knobs", timeout=5) if not knob.gunicorn else healthz(service.url)
        )
        fleet = LoadClient(service.url, sources=loopback_sources(settings.sources), **client_options(knob))
        big = settings.big_clients if knob.big else None
        row.update(asyncio.run(_steps(fleet, lambda: [service.pid], settings, budget, big)))
    finally:
        service.stop()
    return row


async def _steps(
    fleet: LoadClient,
    pids: Callable[[], list[int]],
    settings: Settings,
    budget: common.Budget,
    big: int | None = None,
) -> dict[str, Any]:
    """Each step; then, with `big`, the same fleet grown to `big` clients, recorded apart with its fds."""
    base = _usage(pids())
    found: dict[str, Any] = {"steps": {}}
    async with fleet:
        for clients in settings.client_steps:
            step, why = await load_step(fleet, pids, clients, base, settings, budget)
            found["steps"][str(clients)] = step  # as JSON keys are, so the record reads the same reloaded
            if why:
                return {**found, "broke": f"{clients:,} clients: {why}"}
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
    latency = await fleet.measure(settings.rounds, sequential=True, timeout=timeout)
    step["latency"] = latency.as_dict()["latency"]
    if not latency.complete:
        return step, f"lost {latency.lost} of {latency.expected} deliveries one at a time"
    count = max(2, min(MOST_BROADCASTS, settings.burst_deliveries // clients))
    timeout = common.delivery_deadline(budget, clients * count)
    bursts = []
    for _ in range(settings.bursts):
        cpu_before = _usage(pids())["cpu"]
        burst = await fleet.measure(count, sequential=False, timeout=timeout)
        server_cpu = _usage(pids())["cpu"] - cpu_before
        # The burst's window runs from its first send to its last delivery: the server's CPU for it.
        per_delivery = round(server_cpu / burst.delivered * 1e6, 2) if burst.delivered else None
        bursts.append({**burst.as_dict(), "server_us_per_delivery": per_delivery})
        if not burst.complete:
            step["burst"] = bursts[-1]
            return step, f"lost {burst.lost} of {burst.expected} deliveries in a burst"
    # The median burst by the server's CPU per delivery: one burst caught by a hiccup moves nothing.
    step["burst"] = sorted(bursts, key=lambda b: b["server_us_per_delivery"] or 0)[len(bursts) // 2]
    step["bursts"] = [{key: b[key] for key in ("deliveries_per_s", "server_us_per_delivery")} for b in bursts]
    return step, None


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

METRICS = {
    # key: (what it is, where it is in a step, True when more is better)
    "server_us_per_delivery": ("server CPU per delivery", ("burst", "server_us_per_delivery"), False),
    "deliveries_per_s": ("deliveries/s", ("burst", "deliveries_per_s"), True),
    "p99_ms": ("broadcast p99", ("latency", "p99_ms"), False),
}


def _metric(row: dict[str, Any], clients: int, metric: str) -> float | None:
    step = row.get("steps", {}).get(str(clients))
    value: Any = step
    for part in METRICS[metric][1]:
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _changed(record: dict[str, Any]) -> list[str]:
    """The rows that change something, in the order they ran (each followed by a baseline run)."""
    return [key for key in record["rows"] if key != BASELINE]


def _baseline_runs(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Every run of the baseline, in order: the first, then the one after each row."""
    return [record["rows"][BASELINE], *record["baselines_after"]]


def _neighbours(record: dict[str, Any], key: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The baseline runs just before and just after row `key`."""
    runs = _baseline_runs(record)
    index = _changed(record).index(key)
    return runs[index], runs[index + 1]


def _gap(a: float | None, b: float | None) -> float | None:
    """How far apart two runs of one server landed, as a share of their mean."""
    return abs(a - b) / ((a + b) / 2) if a and b else None


def noise(record: dict[str, Any]) -> dict[str, Any]:
    """Per metric: the gaps between neighbouring baseline runs, their median, and each row's own.

    Neighbouring runs are the same server, minutes apart: what the machine's drift alone does.
    A row's noise is the larger of its own neighbours' gap (the widest at any step) and the
    run's median gap, so two neighbours that agree by luck do not make a small change look real.
    """
    steps = record["settings"]["client_steps"]
    runs = _baseline_runs(record)
    found: dict[str, Any] = {"clients": max(steps), "runs": len(runs)}
    for metric in METRICS:
        gaps = [
            gap
            for before, after in itertools.pairwise(runs)
            for clients in steps
            if (gap := _gap(_metric(before, clients, metric), _metric(after, clients, metric))) is not None
        ]
        typical = statistics.median_high(gaps) if gaps else None
        by_row = {}
        for key in _changed(record):
            before, after = _neighbours(record, key)
            own = [_gap(_metric(before, n, metric), _metric(after, n, metric)) for n in steps]
            known = [gap for gap in own if gap is not None]
            by_row[key] = round(max(MIN_NOISE, typical or 0, *known), 3) if known and typical else None
        found[metric] = {
            "median_gap": round(typical, 3) if typical is not None else None,
            "widest_gap": round(max(gaps), 3) if gaps else None,
            "by_row": by_row,
        }
    return found


def _baseline(record: dict[str, Any], key: str, clients: int, metric: str) -> float | None:
    """Row `key`'s reference: the mean of the baseline runs on either side of it."""
    values = [_metric(run, clients, metric) for run in _neighbours(record, key)]
    values = [v for v in values if v]
    return sum(values) / len(values) if values else None


def verdicts(record: dict[str, Any]) -> dict[str, Any]:
    """Per row, each metric's change against its neighbouring baselines at every step, and a word for it."""
    found: dict[str, Any] = {}
    for key in _changed(record):
        row = record["rows"][key]
        changes: dict[str, dict[str, float | None]] = {}
        for metric in METRICS:
            changes[metric] = {}
            for clients in record["settings"]["client_steps"]:
                value, base = _metric(row, clients, metric), _baseline(record, key, clients, metric)
                changes[metric][str(clients)] = round(value / base - 1, 3) if value and base else None
        limit = record["noise"]["server_us_per_delivery"]["by_row"].get(key)
        found[key] = {"changes": changes, "noise": limit, "verdict": _word(changes, limit, row)}
    return found


def _word(changes: dict[str, dict[str, float | None]], limit: float | None, row: dict[str, Any]) -> str:
    """helps / costs / no measurable change, judged on the server's CPU per delivery.

    A row helps (or costs) only when it does at every step, each time by more than the noise.
    """
    if row.get("broke"):
        return f"broke: {row['broke']}"
    found = list(changes["server_us_per_delivery"].values())
    if not found or None in found or limit is None:
        return "not measured"
    if all(change < -limit for change in found):
        return "helps"
    if all(change > limit for change in found):
        return "costs"
    return "no measurable change"


def targets(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Each row and comparison delivered every message: otherwise its figures mean nothing."""
    found = []
    runs = [*record["rows"].items()]
    runs += [
        (f"{BASELINE} after {key}", run)
        for key, run in zip(_changed(record), record["baselines_after"], strict=True)
    ]
    for key, row in runs:
        found.append(
            {
                "target": f"{key}: every delivery arrives",
                "measured": row.get("broke") or "all",
                "pass": not row.get("broke"),
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
    """What a reader compares across machines: the baseline at the largest step, and each row's change."""
    clients = record["noise"]["clients"]

    def median(metric: str) -> float | None:
        values = [v for run in _baseline_runs(record) if (v := _metric(run, clients, metric))]
        return statistics.median_high(values) if values else None

    found = {
        f"baseline µs per delivery ({clients:,})": report.figure(median("server_us_per_delivery")),
        f"baseline deliveries/s ({clients:,})": report.figure(median("deliveries_per_s"), ",.0f"),
    }
    for key, verdict in record["verdicts"].items():
        change = verdict["changes"]["server_us_per_delivery"].get(str(clients))
        found[f"{key}: CPU per delivery vs baseline (%)"] = report.figure(
            None if change is None else change * 100, ".0f"
        )
    return found


def _pct(change: float | None) -> str | None:
    return None if change is None else f"{change:+.0%}"


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
    clients = record["noise"]["clients"]
    header = ["row", "what changes"]
    header += [f"{n:,} clients: p50 / p99; deliveries/s; server CPU per delivery" for n in steps]
    header += [
        "KB / fds per connection",
        f"server CPU per delivery vs the baselines beside it ({' / '.join(f'{n:,}' for n in steps)})",
        "noise: the larger of its baselines' gap and the run's median gap",
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
        changes = verdict.get("changes", {}).get("server_us_per_delivery", {})
        rows.append(
            [
                key,
                row["change"],
                *(_cell(row, n) for n in steps),
                per_conn,
                " / ".join(_pct(changes.get(str(n))) or "–" for n in steps) if changes else None,
                _share(verdict.get("noise")) if verdict else None,
                verdict.get("verdict") or ("reference: its first run" if key == BASELINE else None),
                row["cost"],
            ]
        )
    lines.append(report.markdown_table(header, rows))
    cpu = record["noise"]["server_us_per_delivery"]
    lines.append(
        f"The baseline ran {record['noise']['runs']} times: first, then after each row, so every row "
        "is compared with the mean of the two baseline runs beside it. Two neighbouring baseline runs "
        f"landed a median {_share(cpu['median_gap'])} apart in server CPU per delivery, and up to "
        f"{_share(cpu['widest_gap'])}. A row *helps* or *costs* only when its server CPU per delivery "
        "moves the same way by more than its noise at every step (never taken as less than "
        f"{MIN_NOISE:.0%}); otherwise it changed nothing this run can see.\n"
    )
    lines.append(_big_lines(record))
    lines.append(_idle_table(record))
    lines.append(_processes_table(record))
    lines.append(report.targets_table(record["targets"]))
    return "\n".join(lines)


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


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


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
