"""Chapter 05 under load: what a Celery round trip costs a page, and what more workers buy.

Redis, two web instances of the chapter and Celery workers, each started as its own process
with one SECRET_KEY and STEP_SECONDS=0: a one-step report is then a no-op task that still
does everything the chapter's task does (its Redis bookkeeping, a `progress` and a `result`
published on the Socket.IO queue). No beat: its figure once a second would be noise here.
Each page is python-socketio's client, logged in through POST /login as its own user.

- Latency: one worker (concurrency 1). No-op reports are started one at a time by two
  pages, one on each web instance, taking turns; each is timed from the `start` emit to
  its ack (the task is queued) and to its `result` event at the page. p50/p99/max. Beside
  it, in the same run, the reference (bench/celery_reference/web.py): the same path with
  none of the chapter's code, one web instance, one worker, a Redis of its own, driven by
  the same pages and the same count. The two take turns in blocks, so the machine's drift
  over the scenario falls on both: the chapter's p50 minus the reference's is what the
  chapter's own code and its second web instance add to a task.
- Tasks per second: 1 worker, 2 workers, and 2 workers of concurrency 2 when the machine
  has two cores or more. Many users keep at most two tasks in flight each (the chapter
  allows three per user, and a finished task leaves that count just after its result goes
  out); a page starts its next task when a result arrives, until all are started. Tasks/s:
  all of them, over the time from the first `start` to the last `result`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import statistics
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import requests
from tqdm import tqdm

from bench import common, plots, report, stats
from bench.loadclient import latency_summary
from bench.task_pages import PAGE_ERRORS, Page, Timing, close_pages, open_pages
from lab.apps import start_app
from lab.celery_workers import CHAPTER05, start_worker
from lab.processes import REPO_ROOT, LabBench, Service, ServiceFailed
from lab.redis_server import start_redis

NAME = "05-celery"  # docs/bench/<NAME>.json
PLOT = plots.celery_tasks  # its figures, drawn again by --report-only
WEB = CHAPTER05 / "app.py"
WORKER_APP = CHAPTER05 / "make_celery.py"
# The yardstick: a web instance and a worker with none of the chapter (web.py says what it leaves out).
WEB_REFERENCE = REPO_ROOT / "bench" / "celery_reference" / "web.py"
WORKER_REFERENCE = REPO_ROOT / "bench" / "celery_reference" / "tasks.py"
LATENCY_WORKERS = (1, 1)  # the latency scenario's workers x processes, the chapter's and the reference's
# Not in common.PACKAGES: only this chapter runs them.
CELERY_PACKAGES = ("celery", "kombu")


@dataclass(frozen=True)
class Settings:
    web_instances: int
    latency_tasks: int  # one at a time, after the warm-up
    warmup_tasks: int  # per latency run and per worker setup, not counted
    burst_tasks: int  # per worker setup
    users: int  # in the tasks-per-second scenario, each with one page
    in_flight_per_user: int
    worker_setups: tuple[tuple[int, int], ...]  # (workers, processes each)
    total_seconds: float
    latency_target_ms: float = 5.0  # the target for p50, end to end
    latency_block: int = 20  # tasks in a row on one side (chapter or reference) before the other's turn


FULL = Settings(2, 300, 20, 400, 32, 2, ((1, 1), (2, 1), (2, 2)), 170)
QUICK = Settings(2, 30, 5, 60, 8, 2, ((1, 1), (2, 1), (2, 2)), 60, latency_block=10)


def run(quick: bool, tasks: int | None, burst: int | None, out: str | None) -> dict[str, Any]:
    settings = QUICK if quick else FULL
    settings = dataclasses.replace(
        settings, latency_tasks=tasks or settings.latency_tasks, burst_tasks=burst or settings.burst_tasks
    )
    record: dict[str, Any] = {**common.new_record("05", quick, settings), "latency": {}, "throughput": {}}
    record["machine"]["packages"].update({name: common.package_version(name) for name in CELERY_PACKAGES})
    client_version = common.package_version("python-socketio")
    record["client"] = f"python-socketio {client_version} Client (threads), websocket"
    budget = common.Budget(settings.total_seconds)
    setups, too_many = _setups(settings)
    with (
        LabBench(common.log_dir("05")) as bench,
        tqdm(total=1 + len(setups), desc="bench 05", unit="scenario", file=sys.stderr) as bar,
    ):
        try:
            lab = Taskboard.start(bench, settings.web_instances)
        except ServiceFailed as exc:
            record["latency"] = {"skipped": str(exc)[:300]}
        else:
            bar.set_postfix_str("latency, one worker, and the reference")
            record["latency"] = _latency_scenario(lab, settings, budget)
            bar.update(1)
            for label, (count, concurrency) in setups.items():
                bar.set_postfix_str(label)
                record["throughput"][label] = _throughput_setup(lab, count, concurrency, settings, budget)
                bar.update(1)
                if "broke" in record["throughput"][label]:
                    break  # its tasks may still be queued: a later setup would count them
    for label in too_many:
        record["throughput"][label] = {"skipped": f"{os.cpu_count()} core(s): fewer than its processes"}
    record["targets"] = targets(record)
    out_dir = common.output_dir(quick, out)
    common.write_results(record, out_dir, NAME, PLOT, summary_markdown, headline)
    return record


def _setup_label(count: int, concurrency: int) -> str:
    return f"{count} worker{'s' if count > 1 else ''} x {concurrency}"


def _setups(settings: Settings) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """The worker setups to run, and those left out: concurrency above 1 only with as many cores."""
    cores = os.cpu_count() or 1
    runnable = {_setup_label(n, c): (n, c) for n, c in settings.worker_setups if c <= cores}
    return runnable, [_setup_label(n, c) for n, c in settings.worker_setups if c > cores]


# -- the processes: Redis, web instances, workers -------------------------------------------------


@dataclass
class Taskboard:
    """Chapter 05 as the bench runs it: every process shares REDIS_URL and SECRET_KEY."""

    bench: LabBench
    env: dict[str, str]
    redis: Service
    webs: list[Service]
    workers: list[tuple[Service, int]] = field(default_factory=list)  # with each one's concurrency
    _started: int = 0

    @classmethod
    def start(cls, bench: LabBench, web_instances: int) -> Taskboard:
        redis = start_redis(bench)
        env = {"REDIS_URL": redis.url, "SECRET_KEY": "bench-05", "STEP_SECONDS": "0", **common.FLOOD_ENV}
        # One after the other, from this thread: see lab.processes._die_with_parent.
        webs = [start_app(bench, WEB, name=f"web-{i}", env=env) for i in range(1, web_instances + 1)]
        return cls(bench, env, redis, webs)

    def use_workers(self, count: int, concurrency: int) -> None:
        """Run `count` workers of `concurrency` processes: add to the ones running, or start afresh."""
        if any(c != concurrency for _, c in self.workers) or len(self.workers) > count:
            common.stop_services([service for service, _ in self.workers])
            self.workers = []
        while len(self.workers) < count:
            self._started += 1
            name = f"worker-{self._started}"
            worker = start_worker(self.bench, WORKER_APP, name=name, env=self.env, concurrency=concurrency)
            self.workers.append((worker, concurrency))

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time used so far by each kind of process (worker pools included), and by this bench."""
        return {
            "web instances": sum(common.tree_cpu(s.pid) for s in self.webs),
            "workers": sum(common.tree_cpu(s.pid) for s, _ in self.workers),
            "redis": common.tree_cpu(self.redis.pid),
            "bench client": time.process_time(),
        }

    def login(self, user: str) -> str:
        """A token from POST /login; any instance signs it: they share the key."""
        response = requests.post(f"{self.webs[0].url}/login", json={"name": user}, timeout=5)
        response.raise_for_status()
        return response.json()["token"]


@dataclass
class Reference:
    """The yardstick, bench/celery_reference: one web instance and one worker with none of the chapter.

    Its redis-server is its own: both sides publish on Socket.IO's default channel, and Redis's
    pub/sub ignores database numbers, so on one Redis each side's instances would get the other's.
    """

    webs: list[Service]
    services: list[Service]

    @classmethod
    def start(cls, bench: LabBench) -> Reference:
        redis = start_redis(bench, name="reference-redis")
        env = {"REDIS_URL": redis.url}
        web = start_app(bench, WEB_REFERENCE, name="reference-web", env=env)
        count, concurrency = LATENCY_WORKERS
        workers = [
            start_worker(
                bench, WORKER_REFERENCE, name=f"reference-worker-{i}", env=env, concurrency=concurrency
            )
            for i in range(1, count + 1)
        ]
        return cls([web], [redis, web, *workers])

    def login(self, user: str) -> None:
        """No login here: its pages connect with no token."""

    def stop(self) -> None:
        common.stop_services(self.services)


# -- end-to-end latency of a no-op task -----------------------------------------------------------


def _latency_scenario(lab: Taskboard, settings: Settings, budget: common.Budget) -> dict[str, Any]:
    """The chapter's no-op tasks one at a time, in blocks that take turns with the reference's."""
    load_at_start = _load_average()
    try:
        lab.use_workers(*LATENCY_WORKERS)
    except ServiceFailed as exc:
        return {"skipped": str(exc)[:300]}
    names = [f"latency-{i}" for i in range(1, len(lab.webs) + 1)]
    try:
        sides = {"chapter": open_pages(lab, names)}
    except PAGE_ERRORS as exc:
        return {"broke": f"a page did not open: {type(exc).__name__}: {exc}"[:300]}
    reference: Reference | None = None
    not_measured: dict[str, str] = {}
    try:
        reference = Reference.start(lab.bench)
        # As many pages as the chapter's, all on its one instance.
        sides["reference"] = open_pages(reference, [f"reference-{name}" for name in names])
    except ServiceFailed as exc:
        not_measured = {"skipped": str(exc)[:300]}
    except PAGE_ERRORS as exc:
        not_measured = {"broke": f"a page did not open: {type(exc).__name__}: {exc}"[:300]}
    try:
        timings, warmup = _take_turns_in_blocks(sides, settings, budget)
    finally:
        close_pages([page for pages in sides.values() for page in pages])
        if reference:
            reference.stop()
    if "chapter" in warmup:
        return {"broke": f"in the warm-up: {warmup['chapter']}"}
    found = {
        "workers": _setup_label(*LATENCY_WORKERS),
        **_latency_report(timings["chapter"], [web.name for web in lab.webs]),
        "load_average": {"start": load_at_start, "end": _load_average()},
    }
    if "reference" in warmup:
        not_measured = {"broke": f"in the warm-up: {warmup['reference']}"}
    if not_measured or reference is None:
        return {**found, "reference": not_measured, "gap": None}
    reference_report = _latency_report(timings["reference"], [web.name for web in reference.webs])
    gap = _gap(timings["chapter"], timings["reference"], settings.latency_block)
    return {**found, "reference": reference_report, "gap": gap}


def _load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages: how busy the cores were, the bench's own work included."""
    return [round(load, 2) for load in os.getloadavg()]


def _take_turns_in_blocks(
    sides: dict[str, list[Page]], settings: Settings, budget: common.Budget
) -> tuple[dict[str, list[Timing]], dict[str, str]]:
    """Each side's warm-up, then `latency_tasks` each, in blocks of `latency_block` taking turns.

    A side whose task fails stops there; the other goes on. Returns each side's timings, and
    why a side's warm-up broke (that side is then not measured).
    """
    warmup = {}
    for side, pages in sides.items():
        if broke := _delivery(_one_at_a_time(pages, settings.warmup_tasks, budget)).get("broke"):
            warmup[side] = broke
    timings: dict[str, list[Timing]] = {side: [] for side in sides}
    going = [side for side in sides if side not in warmup]
    while going:
        for side in list(going):
            done = len(timings[side])
            count = min(settings.latency_block, settings.latency_tasks - done)
            block = _one_at_a_time(sides[side], count, budget, first=done)
            timings[side] += block
            if "broke" in _delivery(block) or len(timings[side]) == settings.latency_tasks:
                going.remove(side)
    return timings, warmup


def _one_at_a_time(pages: list[Page], count: int, budget: common.Budget, first: int = 0) -> list[Timing]:
    """`count` tasks, the pages taking turns (from turn `first`), each started once the one before
    has its result; no more after one that has none by its deadline, or was refused."""
    timings = []
    for n in range(first, first + count):
        page = pages[n % len(pages)]
        timings.append(page.start())
        if not page.wait(timings[-1], timeout=min(10.0, budget.left() + 1)):
            break
        if timings[-1].refused:
            break
    return timings


def _gap(chapter: list[Timing], reference: list[Timing], block: int) -> dict[str, Any] | None:
    """The chapter's p50 minus the reference's, `start` to `result`, over every task; and block by
    block, each of the chapter's blocks against the reference's that followed it: the pairs'
    Hodges-Lehmann estimate and 95 % signed-rank interval (bench/stats.py says why that one)."""
    ours, theirs = ([t.result - t.sent for t in side if t.result] for side in (chapter, reference))
    if not (ours and theirs):
        return None
    p50s = [latency_summary(side)["p50_ms"] for side in (ours, theirs)]
    # Each leg's p50 apart: before the ack, the web instance's handler; after it, the worker's side.
    legs = {
        leg: round(
            latency_summary([lap(t) for t in chapter if t.result])["p50_ms"]
            - latency_summary([lap(t) for t in reference if t.result])["p50_ms"],
            3,
        )
        for leg, lap in (
            ("start_to_ack_p50_ms", lambda t: t.acked - t.sent),
            ("ack_to_result_p50_ms", lambda t: t.result - t.acked),
        )
    }
    pairs = [
        1000 * (statistics.median(ours[i : i + block]) - statistics.median(theirs[i : i + block]))
        for i in range(0, min(len(ours), len(theirs)), block)
    ]
    interval = stats.signed_rank_interval(pairs)
    return {
        "start_to_result_p50_ms": round(p50s[0] - p50s[1], 3),
        **legs,
        "block_pairs": len(pairs),
        # Too few pairs for the interval (five or fewer, as in a quick run): none.
        "by_block": {
            "estimate_ms": round(interval.estimate, 3),
            "low_ms": round(interval.low, 3),
            "high_ms": round(interval.high, 3),
            "confidence": round(interval.confidence, 3),
        }
        if math.isfinite(interval.low)
        else None,
    }


def _latency_report(timings: list[Timing], instances: list[str]) -> dict[str, Any]:
    done = [t for t in timings if t.result is not None]
    report: dict[str, Any] = {
        **_delivery(timings),
        "start_to_ack": latency_summary([t.acked - t.sent for t in done]),
        "ack_to_result": latency_summary([t.result - t.acked for t in done]),
        "start_to_progress": latency_summary([t.progress - t.sent for t in done if t.progress]),
        "start_to_result": latency_summary([t.result - t.sent for t in done]),
        "by_instance": {
            name: latency_summary([t.result - t.sent for t in done if t.instance == name])
            for name in instances
        },
        # Every sample, for the distribution plot: a few hundred numbers.
        "samples_ms": {
            "start_to_ack": sorted(round((t.acked - t.sent) * 1000, 3) for t in done),
            "start_to_result": sorted(round((t.result - t.sent) * 1000, 3) for t in done),
        },
    }
    return report


def _delivery(timings: list[Timing]) -> dict[str, Any]:
    """How many tasks were started, how many results came, and why some did not."""
    results = sum(1 for t in timings if t.result is not None)
    refused = [t.refused for t in timings if t.refused]
    report: dict[str, Any] = {
        "tasks": len(timings),
        "results": results,
        "refused": len(refused),
        "repeated_results": sum(t.repeats for t in timings),
    }
    if results < len(timings):
        why = f"refused: {refused[0]}" if refused else "no result by the deadline"
        report["broke"] = f"{len(timings) - results} of {len(timings)} results missing ({why})"
    return report


# -- tasks per second by worker count -------------------------------------------------------------


def _throughput_setup(
    lab: Taskboard, count: int, concurrency: int, settings: Settings, budget: common.Budget
) -> dict[str, Any]:
    if budget.spent():
        return {"skipped": "the time budget was spent before this setup"}
    try:
        lab.use_workers(count, concurrency)
    except ServiceFailed as exc:
        return {"skipped": str(exc)[:300]}
    label = _setup_label(count, concurrency).replace(" ", "")
    setup = {"workers": count, "concurrency": concurrency, "processes": count * concurrency}
    try:
        pages = open_pages(lab, [f"{label}-user-{i}" for i in range(1, settings.users + 1)])
    except PAGE_ERRORS as exc:
        return {**setup, "broke": f"a page did not open: {type(exc).__name__}: {exc}"[:300]}
    try:
        # Warm-up, not counted: each worker process's first task opens its connections.
        warmup = _burst(pages, settings.warmup_tasks * count * concurrency, settings, budget)
        if "broke" in warmup:
            return {**setup, "broke": f"in the warm-up: {warmup['broke']}"}
        before = lab.cpu_seconds()
        burst = _burst(pages, settings.burst_tasks, settings, budget)
        # Where the cores went during the burst: what a faster setup would have to take from.
        after = lab.cpu_seconds()
        burst["cpu_seconds"] = {role: round(after[role] - before[role], 2) for role in after}
        return {**setup, **burst}
    finally:
        close_pages(pages)


def _burst(pages: list[Page], total: int, settings: Settings, budget: common.Budget) -> dict[str, Any]:
    """Start `total` no-op tasks, at most `in_flight_per_user` per page; wait for every result."""
    quota = iter(range(total))
    lock = threading.Lock()
    timings: list[Timing] = []
    results = 0
    all_in = threading.Event()
    if not total:
        all_in.set()

    def next_task(page: Page) -> None:
        with lock:
            if next(quota, None) is None:
                return
        timings.append(page.start())  # list.append is atomic: result threads append at once

    def on_result(page: Page) -> None:
        nonlocal results
        with lock:
            results += 1
            if results == total:
                all_in.set()
        next_task(page)

    for page in pages:
        page.on_result = on_result
    started = time.perf_counter()
    for _ in range(settings.in_flight_per_user):
        for page in pages:
            next_task(page)
    all_in.wait(timeout=min(60.0, budget.left() + 5))
    for page in pages:
        page.on_result = Page.ignore
    return _burst_report(timings, started)


def _burst_report(timings: list[Timing], started: float) -> dict[str, Any]:
    done = [t for t in timings if t.result is not None]
    report = _delivery(timings)
    if done:
        seconds = max(t.result for t in done) - started
        report["seconds"] = round(seconds, 3)
        report["tasks_per_s"] = round(len(done) / seconds, 1)
        report["start_to_result"] = latency_summary([t.result - t.sent for t in done])
        # Which process ran each: the work was shared out, or it was not.
        report["by_process"] = dict(Counter(t.worker for t in done).most_common())
    return report


# -- verdicts and summary -------------------------------------------------------------------------


def targets(record: dict[str, Any]) -> list[dict[str, Any]]:
    latency = record["latency"]
    target_ms = record["settings"]["latency_target_ms"]
    p50 = latency.get("start_to_result", {}).get("p50_ms")
    found = [
        {
            "target": f"a no-op task: p50 from `start` to its `result` <= {target_ms:g} ms",
            "measured": f"{p50} ms" if p50 is not None else latency.get("broke", latency.get("skipped")),
            "pass": (p50 <= target_ms) if p50 is not None and "broke" not in latency else None,
        }
    ]
    runs = [latency, *record["throughput"].values()]
    measured = [run for run in runs if "tasks" in run]
    started = sum(run["tasks"] for run in measured)
    delivered = sum(run["results"] for run in measured)
    repeated = sum(run["repeated_results"] for run in measured)
    broke = [run["broke"] for run in runs if "broke" in run]
    found.append(
        {
            "target": "every task started delivers one result to its page, and only one",
            "measured": f"{delivered:,} of {started:,}, {repeated} repeated" if measured else None,
            "pass": (not broke and delivered == started and repeated == 0) if measured or broke else None,
        }
    )
    return found


def headline(record: dict[str, Any]) -> dict[str, str | None]:
    """What a reader compares across machines: a no-op task end to end, beside the reference's,
    and tasks per second with each worker setup."""
    p50 = record["latency"].get("start_to_result", {}).get("p50_ms")
    found = {"task p50, `start` to `result` (ms)": report.figure(p50, ".0f")}
    beside = (record["latency"].get("reference") or {}).get("start_to_result", {}).get("p50_ms")
    found["the reference's p50 (ms)"] = report.figure(beside, ".1f")
    for label, run in record["throughput"].items():
        found[f"tasks/s, {label}"] = report.figure(run.get("tasks_per_s"), ".0f")
    return found


def summary_markdown(record: dict[str, Any]) -> str:
    lines = report.machine_line(record, "05")
    lines += _latency_lines(record["latency"], record["settings"])
    lines += _throughput_lines(record["throughput"], record["settings"])
    lines.append(report.targets_table(record["targets"]))
    return "\n".join(lines)


LATENCY_STAGES = (
    ("start_to_ack", "`start` emit to its ack (queued)"),
    ("ack_to_result", "ack to `result` (worker, queue, delivery)"),
    ("start_to_progress", "`start` emit to its first `progress`"),
    ("start_to_result", "`start` emit to `result`: end to end"),
)


def _latency_lines(latency: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    if "start_to_result" not in latency:
        return [f"No-op task latency: not measured ({latency.get('skipped')}).\n"]
    reference = latency.get("reference") or {}
    rows = []
    for key, label in LATENCY_STAGES:
        ours, theirs = latency[key], reference.get(key, {})
        gap = round(ours["p50_ms"] - theirs["p50_ms"], 3) if theirs.get("count") and ours["count"] else None
        beside = f"{theirs['p50_ms']} / {theirs['p99_ms']}" if theirs.get("count") else None
        rows.append([label, ours["count"], ours["p50_ms"], ours["p99_ms"], ours["max_ms"], beside, gap])
    header = ["no-op task, one at a time, 1 worker x 1", "tasks", "p50 (ms)", "p99 (ms)", "max (ms)"]
    header += ["the reference: p50 / p99 (ms)", "the chapter's p50 minus the reference's (ms)"]
    pages = {name: data["p50_ms"] for name, data in latency["by_instance"].items() if data["count"]}
    text = (
        f"{settings['web_instances']} web instances, 1 Celery worker (one process), Redis; "
        f"{len(pages)} pages, one per instance, took turns starting one-step reports with STEP_SECONDS=0, "
        f"each once the one before had its result, after {settings['warmup_tasks']} not counted. "
        "End to end at p50, by page: "
        + ", ".join(f"the page on {name} {p50} ms" for name, p50 in pages.items())
        + ". Every task's figure is in 05-latency.png."
    )
    if latency.get("broke"):
        text += f" **Stopped early: {latency['broke']}.**"
    lines = [report.markdown_table(header, rows), text + "\n"]
    if "reference" in latency:  # runs before the reference have none
        lines += _reference_lines(reference, latency.get("gap"), settings)
    if "load_average" in latency:
        start, end = (", ".join(str(x) for x in latency["load_average"][at]) for at in ("start", "end"))
        lines.append(
            f"Load average (1, 5, 15 min) over this scenario: {start} at its start, {end} at its end.\n"
        )
    return lines


def _reference_lines(
    reference: dict[str, Any], gap: dict[str, Any] | None, settings: dict[str, Any]
) -> list[str]:
    """What the reference is, how it was measured, and the gap: informative, with no target."""
    if "start_to_result" not in reference:
        why = reference.get("broke") or reference.get("skipped")
        return [f"The reference (`bench/celery_reference/`): not measured ({why}).\n"]
    text = (
        "The reference (`bench/celery_reference/web.py`) is the same path with none of the chapter's code: "
        "one gevent Flask-SocketIO instance, one Celery worker (one process) with the chapter's settings, a "
        "Redis of its own, the same two emits through the queue; no guard, no login, no quota, ownership, "
        f"attempt count or one-result guard in Redis. As many pages, all on its one instance, started "
        f"{reference['results']:,} of {reference['tasks']:,} tasks with the same client code, in blocks of "
        f"{settings['latency_block']} taking turns with the chapter's."
    )
    if reference.get("broke"):
        text += f" **Stopped early: {reference['broke']}.**"
    lines = [text + "\n"]
    if gap:
        line = (
            "**The chapter's p50 minus the reference's, `start` to `result`: "
            f"{gap['start_to_result_p50_ms']} ms**, "
            "what the chapter's own code and its second web instance, on the same cores, add to a no-op task "
            "(informative: no target)."
        )
        if "start_to_ack_p50_ms" in gap:  # not in records made before the legs were kept apart
            line += (
                f" Before the ack, in the web instance's `start` handler: {gap['start_to_ack_p50_ms']} ms;"
                f" after it, the worker's side and the emits: {gap['ack_to_result_p50_ms']} ms."
            )
        if by_block := gap.get("by_block"):
            line += (
                f" Block against block ({gap['block_pairs']} pairs): {by_block['estimate_ms']} ms, "
                f"{by_block['confidence']:.0%} signed-rank interval "
                f"{by_block['low_ms']} to {by_block['high_ms']} ms."
            )
        lines.append(line + "\n")
    return lines


def _throughput_lines(throughput: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    rows = []
    for label, run in throughput.items():
        latency = run.get("start_to_result", {})
        rows.append(
            [
                label,
                f"{run['results']:,} of {run['tasks']:,}" if "tasks" in run else None,
                run.get("seconds"),
                run.get("tasks_per_s"),
                f"{latency['p50_ms']:.0f} / {latency['p99_ms']:.0f}" if latency.get("count") else None,
                " / ".join(str(n) for n in run.get("by_process", {}).values()) or None,
                " / ".join(f"{v:.1f}" for v in run["cpu_seconds"].values()) if "cpu_seconds" in run else None,
                run.get("broke") or run.get("skipped") or "all delivered",
            ]
        )
    header = ["workers x processes", "results", "seconds", "tasks/s", "start to result p50 / p99 (ms)"]
    header += ["tasks per process", "CPU s: webs / workers / Redis / client", "result"]
    intro = (
        f"Tasks per second: {settings['users']} users, one page each, spread over the web instances, "
        f"each with at most {settings['in_flight_per_user']} tasks in flight; a page starts its next "
        f"no-op task when a result arrives. Timed from the first `start` to the last `result`. "
        f"CPU seconds: what each kind of process used during that time, all of them on the "
        f"same {os.cpu_count()} cores.\n"
    )
    return [intro, report.markdown_table(header, rows)]
