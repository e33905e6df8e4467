"""What every chapter's bench shares: machine details, process memory, deadlines, output files.

The summaries, verdicts and the runs kept per machine are in bench/report.py, which reads
records only: `--report-only` rebuilds them without measuring anything.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import importlib.metadata
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import psutil

from bench import report
from bench.loadclient import LoadClient, raise_fd_limit
from lab.processes import REPO_ROOT, Service

DOCS_BENCH = REPO_ROOT / "docs" / "bench"
# The bench floods on purpose: one sender fires its broadcasts back to back. The chapters'
# per-connection rate limit (EVENTS_PER_SECOND) is for hostile clients; here it is lifted.
FLOOD_ENV = {"EVENTS_PER_SECOND": "1000000"}
QUICK_OUT = REPO_ROOT / ".lab" / "bench-quick"
# /proc/cpuinfo's names for what tells two CPUs of one marketing name apart, and ours for them.
CPU_DETAILS = {"cpu family": "family", "model": "model", "stepping": "stepping", "cpu MHz": "mhz"}
PACKAGES = (
    "flask",
    "flask-socketio",
    "python-socketio",
    "python-engineio",
    "simple-websocket",
    "gevent",
    "eventlet",
    "gunicorn",
    "redis",
)


class Stepped(Protocol):
    """A bench's frozen Settings dataclass: it adds clients in steps."""

    client_steps: tuple[int, ...]


SettingsT = TypeVar("SettingsT", bound=Stepped)


def up_to(settings: SettingsT, max_clients: int | None) -> SettingsT:
    """`--max-clients N`: the steps below N, then N itself as the largest."""
    if not max_clients:
        return settings
    steps = tuple(n for n in settings.client_steps if n < max_clients) + (max_clients,)
    return dataclasses.replace(settings, client_steps=steps)


def new_record(chapter: str, quick: bool, settings: Any) -> dict[str, Any]:
    """How every record opens: which run, on which machine, with what settings.

    The open-files limit is raised first, so the record says what the servers inherit.
    """
    return {
        "chapter": chapter,
        "quick": quick,
        "machine": machine_details(raise_fd_limit()),
        "settings": dataclasses.asdict(settings),
    }


def machine_details(fd_limit: dict[str, Any]) -> dict[str, Any]:
    """Everything a reader needs to compare a run with theirs, taken at the start of the run."""
    cpuinfo = _cpuinfo()
    machine = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu_model": cpuinfo.get("model name") or platform.processor() or "unknown",
        "cores_logical": os.cpu_count(),
        "cores_physical": psutil.cpu_count(logical=False),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": {name: package_version(name) for name in PACKAGES},
        "node": _command_output(["node", "--version"]),
        "socket_io_node": _node_package_version("socket.io"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "fd_limit": fd_limit,
        "cpu": _cpu_details(cpuinfo),
    }
    return {**machine, **_identity(machine)}


def _identity(machine: dict[str, Any]) -> dict[str, str]:
    """The machine's id and label; BENCH_MACHINE names it when two machines read the same
    (cloud VMs all say "AMD EPYC"), and the id is then made from that name."""
    named = os.environ.get("BENCH_MACHINE", "").strip()
    key = report.slug(named) or report.machine_id(machine)
    return {"machine_id": key, "label": named or key}


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo; empty where there is none (macOS)."""
    try:
        first = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
    except OSError:
        return {}
    fields = (line.partition(":") for line in first.splitlines())
    return {key.strip(): value.strip() for key, colon, value in fields if colon}


def _cpu_details(cpuinfo: dict[str, str]) -> dict[str, Any] | None:
    """Family, model and stepping, MHz and cache, for the reader: not in the machine's id,
    which must be computable from records written before these were kept."""
    details: dict[str, Any] = {
        ours: _number(cpuinfo[theirs]) for theirs, ours in CPU_DETAILS.items() if theirs in cpuinfo
    }
    if "cache size" in cpuinfo:
        details["cache"] = cpuinfo["cache size"]
    return details or None


def _number(text: str) -> int | str:
    """`25` is 25 and `2445.436` (MHz) is 2445; anything else stays as /proc/cpuinfo says it."""
    with contextlib.suppress(ValueError):
        return round(float(text))
    return text


def package_version(package: str) -> str | None:
    """An installed distribution's version, or None when it is not installed."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _command_output(argv: list[str]) -> str | None:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def _node_package_version(name: str) -> str | None:
    package = REPO_ROOT / "node_modules" / name / "package.json"
    return json.loads(package.read_text())["version"] if package.exists() else None


def tree_rss(pid: int) -> int:
    """Resident memory of a process and all its children, in bytes (gunicorn has workers)."""
    return _tree_total(pid, lambda proc: proc.memory_info().rss)


def tree_fds(pid: int) -> int:
    """Open file descriptors of a process and all its children (sockets, selectors, pipes)."""
    return _tree_total(pid, psutil.Process.num_fds)


def tree_cpu(pid: int) -> float:
    """User and system CPU seconds of a process and its children (a Celery worker's pool)."""
    return _tree_total(pid, lambda proc: (times := proc.cpu_times()).user + times.system)


def _tree_total(pid: int, measure: Callable[[psutil.Process], float]) -> float:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += measure(proc)
    return total


def open_files_limit(pid: int) -> dict[str, int | str] | None:
    """A process's open-files limit, from /proc/<pid>/limits: prlimit() on another user's process
    (nginx's workers) is refused here. "unlimited" stays a word."""
    try:
        lines = Path(f"/proc/{pid}/limits").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return {key: int(v) if v.isdigit() else v for key, v in (("soft", soft), ("hard", hard))}
    return None


@dataclass
class Budget:
    """A wall-clock allowance: scenarios ask it how long they may still wait."""

    seconds: float

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.seconds

    def left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def spent(self) -> bool:
        return self.left() <= 0


def stop_services(services: list[Service]) -> None:
    """Stop a scenario's servers, newest first (a proxy before the instances behind it)."""
    for service in reversed(services):
        service.stop()


# --8<-- [start:deadline]
# Deliveries slower than this, after a 10 s grace, count as lost: a step is over at its deadline.
SLOWEST_DELIVERIES_PER_S = 2000


def delivery_deadline(budget: Budget, deliveries: int) -> float:
    """Seconds to wait for `deliveries`: 10 plus one per SLOWEST_DELIVERIES_PER_S, within the budget."""
    return min(budget.left() + 5, 10 + deliveries / SLOWEST_DELIVERIES_PER_S)


# --8<-- [end:deadline]


async def burst_step(
    fleet: LoadClient,
    clients: int,
    burst_deliveries: int,
    budget: Budget,
    servers: Callable[[], dict[str, Any]],
) -> dict[str, Any]:
    """Grow the fleet to `clients`, record `servers()`, then a burst that must reach every client.

    The step says `broke`, and why, when the budget was spent, a client failed to connect
    or a delivery was missing at the deadline: the caller adds no more clients after it.
    """
    if budget.spent():
        return {"broke": "stopped: the time budget was spent before this step"}
    opened = await fleet.open(clients - len(fleet.connections), timeout=budget.left())
    step: dict[str, Any] = {
        "connect": {"seconds": round(opened.seconds, 2), "failed": opened.failed, "errors": opened.errors}
    }
    # Recorded after a failed connect too: the servers' descriptors then are the 'why'.
    step.update(servers())
    if opened.failed:
        return {**step, "broke": f"connection failures: {opened.failed}"}
    # About `burst_deliveries` deliveries in 2 to 50 broadcasts.
    count = max(2, min(50, burst_deliveries // clients))
    timeout = delivery_deadline(budget, clients * count)
    burst = await fleet.measure(count, sequential=False, timeout=timeout)
    step["burst"] = burst.as_dict()
    if not burst.complete:
        step["broke"] = f"lost deliveries: {burst.lost} of {burst.expected} after {timeout:.0f}s"
    return step


def output_dir(quick: bool, out: str | None) -> Path:
    """docs/bench/ for a full run; a quick smoke run goes elsewhere so it never overwrites results."""
    path = Path(out) if out else (QUICK_OUT if quick else DOCS_BENCH)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_results(
    record: dict[str, Any],
    out: Path,
    name: str,
    plot: Callable[[dict[str, Any], Path], object] | None,
    summary: Callable[[dict[str, Any]], str],
    headline: report.Headline | None = None,
) -> None:
    """A chapter's JSON record (<name>.json), its plots, and the summary the docs include.

    The record gets how long its run took (`duration`), unless it already says. A full run into
    docs/bench/ is also kept as this machine's run (runs/<name>/<machine id>.json), which the
    summary's last table compares with every other machine's.
    """
    record.setdefault("duration", run_duration(record["machine"]["date"]))
    report.write_json(out / f"{name}.json", record)
    if not record["quick"] and out.resolve() == DOCS_BENCH.resolve():
        report.store_run(record, out, name)
    if plot:
        plot(record, out)
    report.write_summary(record, out, summary, name, headline)


def run_duration(started: str) -> dict[str, Any]:
    """From the run's start (`machine.date`, taken before anything was measured) to now: what a page
    cites as the time a run takes, and the summary's first line repeats."""
    finished = datetime.datetime.now(datetime.UTC)
    seconds = (finished - datetime.datetime.fromisoformat(started)).total_seconds()
    return {
        "finished": finished.isoformat(timespec="seconds"),
        "seconds": round(seconds),
        "minutes": round(seconds / 60, 1),
    }


def delivery_target(servers: str, steps: dict[str, dict[str, Any]], biggest: int) -> dict[str, Any]:
    """Every message reaches `biggest` clients; any step that broke on the way fails it.

    `steps` maps a client count (a JSON key) to its step record, as burst_step wrote it.
    """
    stopped = next((step["broke"] for step in steps.values() if step.get("broke")), None)
    burst = steps.get(str(biggest), {}).get("burst")
    return {
        "target": f"{servers} deliver every message to {biggest:,} clients",
        "measured": f"{burst['delivered']:,} of {burst['expected']:,}" if burst else stopped,
        "pass": False if stopped else (burst["lost"] == 0 if burst else None),
    }


def log_dir(chapter: str) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return REPO_ROOT / ".lab" / "bench-logs" / f"{chapter}-{stamp}"


def log_tail(text: str, lines: int = 6) -> list[str]:
    """The end of a server's log, kept in the record when a step breaks: the 'why'."""
    return [line[:300] for line in text.splitlines()[-lines:]]


def log_errors(text: str, most: int = 3) -> list[str]:
    """The last distinct error lines of a server's log (an exception's last line, usually)."""
    found: list[str] = []
    for line in reversed(text.splitlines()):
        if ("Error" in line or "error" in line) and not line.startswith(" ") and line not in found:
            found.append(line[:300])
            if len(found) == most:
                break
    return found[::-1]


def p50_noise(a: dict[str, Any], b: dict[str, Any], samples: int) -> float:
    """How far apart the p50s of two latency summaries can land by chance, in ms.

    Two standard errors of their difference. A median's standard error is about
    1.25 sigma / sqrt(n); sigma is read from each summary's p50-to-p99 spread (2.33 sigma in a
    normal distribution, so a long tail makes the estimate larger, never smaller), and n is the
    count of independent samples: rounds, not deliveries, where one round's deliveries share
    its delays. A difference within this says nothing about which side is faster.
    """

    def error(latency: dict[str, Any]) -> float:
        return 1.25 * (latency["p99_ms"] - latency["p50_ms"]) / 2.33 / math.sqrt(samples)

    return 2 * math.hypot(error(a), error(b))


def say(message: str) -> None:
    """Progress notes go to stderr, where tqdm draws its bar."""
    print(message, file=sys.stderr, flush=True)
