"""What the guard costs: chapter 02's gevent app's CPU per inbound event, with its SocketIOGuard and without.

Every event a client sends passes the guard: its packet is decoded once more to check it, the
handler is called through the guard's wrapper, and the connection's token bucket is counted.
This measures what that adds to the server. bench/knob_server.py serves the chapter as it ships
(the guard on) and, with KNOB_GUARD=off, the same app with the guard's init_app made a no-op.

The event is `ping`: the chapter answers it with an ack and does nothing else (no broadcast, no
room, no payload to check), so the server's CPU per event is what every inbound event costs
(the packet read and decoded, the handler called, the ack encoded and sent) plus the guard's
share, as little diluted as any event can make it. Every connection keeps one `ping` in flight
and sends the next when its ack comes back; the chapter's rate limit is lifted (FLOOD_ENV) so
that none is refused, and every ack must be the handler's own `{"ok": true}`.

Runs alternate, each a fresh server: on, off, on, off, ..., on. The machine drifts over minutes,
so each run with the guard off is compared with the mean of the two runs with it on just before
and just after it, and the difference counts only when it is larger than those neighbours' own
gap and the run's median gap between neighbouring guarded runs, every time (bench/knobs.py
judges its rows the same way).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import itertools
import os
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bench import common, report
from bench.knobs import KNOB_SERVER
from bench.loadclient import LeanConnection, LoadClient, loopback_sources
from lab.apps import get_json, start_app
from lab.processes import LabBench, Service, ServiceFailed

NAME = "guard"  # docs/bench/<NAME>.json
PLOT = None  # two tables say it all
EVENT = "ping"
# A difference smaller than this share is never called a cost, however close neighbouring runs land.
MIN_NOISE = 0.05
ANSWER = {"ok": True}  # what the chapter's ping handler returns; a refused event's ack says ok: false
ON, OFF = "on", "off"
ACK_TIMEOUT = 10.0  # seconds one ack may take, in a window of thousands
# A run's figures: its median window's.
FIGURES = ("server_us_per_event", "events_per_s", "client_us_per_event", "client_cpu_share")


@dataclass(frozen=True)
class Settings:
    clients: int  # connections, each with one event in flight
    events_per_client: int  # per window
    warmup_events_per_client: int  # one window first, not counted: the server's caches and pools fill
    windows: int  # per run; the median one is reported
    repeats: int  # runs with the guard off, each between two runs with it on
    sources: int  # loopback source addresses
    total_seconds: float


FULL = Settings(300, 40, 10, 5, 4, 8, 7 * 60)
QUICK = Settings(50, 20, 5, 2, 1, 1, 60)


def run(quick: bool, out: str | None) -> dict[str, Any]:
    """on, off, on, ..., on; writes the JSON and the summary."""
    settings = QUICK if quick else FULL
    record: dict[str, Any] = {**common.new_record(NAME, quick, settings), "event": EVENT, "runs": []}
    budget = common.Budget(settings.total_seconds)
    order = [ON, *itertools.chain.from_iterable((OFF, ON) for _ in range(settings.repeats))]
    with (
        LabBench(common.log_dir(NAME)) as bench,
        tqdm(total=len(order), desc="bench guard", unit="run", file=sys.stderr) as bar,
    ):
        for index, guard in enumerate(order):
            bar.set_postfix_str(f"guard {guard}")
            record["runs"].append(measure_run(bench, f"{index}-{guard}", guard, settings, budget))
            bar.update(1)
    # The machine is shared: its load at the end says whether the run had it to itself.
    record["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    record["comparison"] = compare(record["runs"])
    record["targets"] = targets(record)
    out_dir = common.output_dir(quick, out)
    common.write_results(record, out_dir, NAME, PLOT, summary_markdown, headline)
    return record


# -- measuring ----------------------------------------------------------------------------------


def start_server(bench: LabBench, name: str, guard: str) -> Service:
    """Chapter 02 under gevent, with its guard on or off, the rate limit lifted."""
    return start_app(bench, KNOB_SERVER, name=f"guard-{name}", env={**common.FLOOD_ENV, "KNOB_GUARD": guard})


def measure_run(
    bench: LabBench, name: str, guard: str, settings: Settings, budget: common.Budget
) -> dict[str, Any]:
    """One fresh server: connect, a warm-up window, then the measured windows."""
    found: dict[str, Any] = {"guard": guard, "windows": []}
    if budget.spent():
        return {**found, "broke": "the time budget was spent before this run"}
    try:
        service = start_server(bench, name, guard)
    except (ServiceFailed, OSError) as exc:
        return {**found, "broke": f"did not start: {str(exc).splitlines()[0][:200]}"}
    try:
        # What the process really runs with: a guard that did not come off would be measured as off.
        found["server"] = get_json(f"{service.url}/knobs", timeout=5)
        if found["server"].get("guard") != guard:
            return {**found, "broke": f"asked for the guard {guard}, the server runs it {found['server']}"}
        found["guard_source"] = guard_source()
        found.update(asyncio.run(_windows(service, settings, budget)))
    finally:
        service.stop()
    return found


def guard_source() -> str:
    """A digest of the guard's source as the servers import it: every run must measure the same code.

    Read when a run's server has started. Another session editing the extension mid-run would
    otherwise mix two versions in one comparison without a trace.
    """
    spec = importlib.util.find_spec("flask_socketio_guard")
    if spec is None or spec.origin is None:
        return "not installed"
    digest = hashlib.sha256()
    for path in sorted(Path(spec.origin).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


async def _windows(service: Service, settings: Settings, budget: common.Budget) -> dict[str, Any]:
    found: dict[str, Any] = {"windows": []}
    async with LoadClient(service.url, sources=loopback_sources(settings.sources)) as fleet:
        opened = await fleet.open(settings.clients, timeout=min(budget.left() + 5, 30))
        found["connect"] = {"seconds": round(opened.seconds, 2), "failed": opened.failed}
        if opened.failed:
            return {**found, "broke": f"connection failures: {opened.failed}: {opened.errors}"}
        warmup = await events_window(fleet, service.pid, settings.warmup_events_per_client, budget)
        if why := _broke(warmup):
            return {**found, "broke": f"warm-up: {why}"}
        for _ in range(settings.windows):
            window = await events_window(fleet, service.pid, settings.events_per_client, budget)
            found["windows"].append(window)
            if why := _broke(window):
                return {**found, "broke": why}
    # The median window by the server's CPU per event: one window caught by a hiccup moves nothing.
    median = sorted(found["windows"], key=lambda w: w["server_us_per_event"])[(settings.windows - 1) // 2]
    found.update({key: median[key] for key in FIGURES})
    return found


def _broke(window: dict[str, Any]) -> str | None:
    if window["acked"] == window["sent"]:
        return None
    return f"{window['acked']:,} of {window['sent']:,} events acknowledged: {window['unanswered']}"


async def events_window(
    fleet: LoadClient, server_pid: int, events_per_client: int, budget: common.Budget
) -> dict[str, Any]:
    """Every connection sends `events_per_client` events, one in flight each; the server's CPU over it all."""
    answers: Counter[str] = Counter()

    async def one(conn: LeanConnection) -> None:
        for _ in range(events_per_client):
            try:
                answer = await fleet.call(conn, EVENT, timeout=ACK_TIMEOUT)
            except (TimeoutError, ConnectionError) as exc:
                answers[type(exc).__name__] += 1
                return
            answers["acked" if answer == ANSWER else f"answered {answer!r:.80}"] += 1

    sent = events_per_client * len(fleet.connections)
    deadline = min(budget.left() + 5, 10 + sent / common.SLOWEST_DELIVERIES_PER_S)
    server_cpu, client_cpu = common.tree_cpu(server_pid), time.process_time()
    started = time.perf_counter()
    tasks = [asyncio.create_task(one(conn)) for conn in fleet.connections]
    _, pending = await asyncio.wait(tasks, timeout=deadline)
    seconds = time.perf_counter() - started
    server_cpu, client_cpu = common.tree_cpu(server_pid) - server_cpu, time.process_time() - client_cpu
    for task in pending:
        task.cancel()
    if pending:
        answers[f"not done within the {deadline:.0f}s deadline"] += len(pending)
        await asyncio.wait(pending, timeout=5)
    acked = answers.pop("acked", 0)
    return {
        "sent": sent,
        "acked": acked,
        "unanswered": dict(answers),
        "seconds": round(seconds, 3),
        "events_per_s": round(acked / seconds) if seconds > 0 else None,
        "server_cpu_s": round(server_cpu, 3),
        "server_us_per_event": round(server_cpu / acked * 1e6, 1) if acked else None,
        "client_us_per_event": round(client_cpu / acked * 1e6, 1) if acked else None,
        # Near 1.0 the client, not the server, would set the pace.
        "client_cpu_share": round(client_cpu / seconds, 2) if seconds > 0 else None,
    }


# -- judging ------------------------------------------------------------------------------------


def _gap(a: float | None, b: float | None) -> float | None:
    """How far apart two runs landed, as a share of their mean."""
    return abs(a - b) / ((a + b) / 2) if a and b else None


def compare(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each run with the guard off against the mean of the guarded runs beside it, and a verdict.

    A repeat's noise is the larger of its own neighbours' gap and the run's median gap between
    neighbouring guarded runs (never less than MIN_NOISE): the guard costs something only when,
    every time, the guarded neighbours' mean lies above the unguarded run by more than that.
    """
    cost = [run.get("server_us_per_event") for run in runs]
    guarded = cost[::2]  # on, off, on, ...: the guarded runs are the even ones
    gaps = [gap for a, b in itertools.pairwise(guarded) if (gap := _gap(a, b)) is not None]
    typical = statistics.median_high(gaps) if gaps else None
    repeats = []
    for index in range(1, len(runs), 2):
        before, off, after = cost[index - 1], cost[index], cost[index + 1] if index + 1 < len(runs) else None
        if not (before and off and after and typical is not None):
            repeats.append({"run": index, "measured": False})
            continue
        base = (before + after) / 2
        noise = max(MIN_NOISE, typical, _gap(before, after) or 0)
        repeats.append(
            {
                "run": index,
                "measured": True,
                "on_us_per_event": round(base, 1),
                "off_us_per_event": off,
                "guard_us_per_event": round(base - off, 1),
                # What the guard adds to the unguarded app's CPU per event.
                "guard_share": round(base / off - 1, 3),
                "noise": round(noise, 3),
            }
        )
    measured = [r for r in repeats if r["measured"]]

    def median(values: list[float | None], digits: int) -> float | None:
        known = [v for v in values if v is not None]
        return round(statistics.median(known), digits) if known else None

    return {
        "on_us_per_event": median(guarded, 1),
        "off_us_per_event": median(cost[1::2], 1),
        "on_events_per_s": median([run.get("events_per_s") for run in runs[::2]], 0),
        "off_events_per_s": median([run.get("events_per_s") for run in runs[1::2]], 0),
        "guard_us_per_event": median([r["guard_us_per_event"] for r in measured], 1),
        "guard_share": median([r["guard_share"] for r in measured], 3),
        "median_gap": round(typical, 3) if typical is not None else None,
        "widest_gap": round(max(gaps), 3) if gaps else None,
        "repeats": repeats,
        "verdict": verdict(repeats),
    }


def verdict(repeats: list[dict[str, Any]]) -> str:
    """costs / saves / within the noise, from the guard's share against each repeat's noise."""
    if not repeats or not all(r["measured"] for r in repeats):
        return "not measured"
    if all(r["guard_share"] > r["noise"] for r in repeats):
        return "costs"
    if all(r["guard_share"] < -r["noise"] for r in repeats):
        return "saves"
    return "within the noise"


def targets(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Every run acknowledged every event it sent, and all ran one version of the guard's source."""
    sources = {run.get("guard_source") for run in record["runs"]}
    found = [
        {
            "target": "every run served the same source of the guard",
            "measured": ", ".join(sorted(str(source) for source in sources)),
            "pass": len(sources) == 1 and None not in sources,
        }
    ]
    for index, run in enumerate(record["runs"]):
        windows = run.get("windows", [])
        acked, sent = sum(w["acked"] for w in windows), sum(w["sent"] for w in windows)
        found.append(
            {
                "target": f"run {index}, guard {run['guard']}: every event acknowledged by the handler",
                "measured": run.get("broke") or f"{acked:,} of {sent:,}",
                "pass": not run.get("broke") and acked == sent > 0,
            }
        )
    return found


# -- the summary --------------------------------------------------------------------------------


def headline(record: dict[str, Any]) -> dict[str, str | None]:
    """What a reader compares across machines: CPU per event with the guard on and off, and the difference."""
    found = record["comparison"]
    share = found["guard_share"]
    return {
        "guard on: µs per event": report.figure(found["on_us_per_event"], ".0f"),
        "guard off: µs per event": report.figure(found["off_us_per_event"], ".0f"),
        "the guard's share (%)": report.figure(None if share is None else share * 100, ".0f"),
    }


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:+.0%}"


def summary_markdown(record: dict[str, Any]) -> str:
    lines = report.machine_line(record, NAME)
    settings = record["settings"]
    found = record["comparison"]
    end = record.get("load_average_at_end")
    lines.append(
        f"Load: {settings['clients']:,} connections, each with one `{record['event']}` in flight, "
        f"{settings['events_per_client']:,} each per window, {settings['windows']} windows per run "
        "(the median shown), every run a fresh server"
        + (f"; load average at the end {', '.join(str(x) for x in end)}" if end else "")
        + ".\n"
    )
    rows = []
    for index, run in enumerate(record["runs"]):
        rows.append(
            [
                index,
                run["guard"],
                run.get("server_us_per_event"),
                f"{run['events_per_s']:,}" if run.get("events_per_s") else None,
                run.get("client_cpu_share"),
                " / ".join(str(w["server_us_per_event"]) for w in run.get("windows", [])) or None,
                run.get("broke") or "all acknowledged",
            ]
        )
    header = [
        "run",
        "guard",
        "server CPU per event (µs)",
        "events/s",
        "client's CPU share",
        "each window (µs)",
        "result",
    ]
    lines.append(report.markdown_table(header, rows))
    rows = [
        [
            r["run"],
            r.get("on_us_per_event"),
            r.get("off_us_per_event"),
            r.get("guard_us_per_event"),
            _pct(r.get("guard_share")),
            _share(r.get("noise")),
        ]
        for r in found["repeats"]
    ]
    header = [
        "run with the guard off",
        "guarded runs beside it, mean (µs)",
        "unguarded (µs)",
        "the guard (µs per event)",
        "the guard's share",
        "noise",
    ]
    lines.append(report.markdown_table(header, rows))
    lines.append(
        f"Neighbouring runs with the guard on landed a median {_share(found['median_gap'])} apart in "
        f"server CPU per event, and up to {_share(found['widest_gap'])}. A repeat's noise is the larger "
        f"of its own neighbours' gap and that median (never less than {MIN_NOISE:.0%}). The guard's "
        f"share, repeat by repeat, against its noise: **{found['verdict']}**.\n"
    )
    lines.append(report.targets_table(record["targets"]))
    return "\n".join(lines)


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"
