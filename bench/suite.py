"""How long each chapter's test session takes: what `nox -s chapter01` ... `chapter05` run.

Each session is `pytest tests/chapterNN`, exactly as the noxfile's `_pytest` runs it (the flags
come from pyproject.toml), in this interpreter's environment and as a child process, so nox's
venv creation and installs stay out of the figure. The counts and the slowest tests come from
pytest's own JUnit XML report, whose time per test is setup, call and teardown together.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import common, report
from lab.processes import REPO_ROOT

SESSIONS = ("chapter01", "chapter02", "chapter03", "chapter04", "chapter05")
SLOWEST = 5
SESSION_TARGET_S = 60  # issue 12: a chapter's tests in under a minute, on a warm machine
NAME = "suite"  # docs/bench/<NAME>.json
PLOT = None  # a table says it all


@dataclass(frozen=True)
class Settings:
    sessions: tuple[str, ...]
    # What each session runs, with this interpreter as `python`; the report goes to a temp file.
    command: str = "python -m pytest tests/<session> --junitxml=<report>"


def run(sessions: list[str], out: str | None) -> dict[str, Any]:
    """Time `sessions`; only a run of all five goes to docs/bench/ (unless `out`), as the site cites it."""
    settings = Settings(tuple(sessions))
    record: dict[str, Any] = {**common.new_record(NAME, False, settings), "sessions": {}}
    logs = common.log_dir(NAME)
    logs.mkdir(parents=True, exist_ok=True)
    for session in sessions:
        common.say(f"bench suite: {session} (log: {logs / session}.log)")
        record["sessions"][session] = _time_session(session, logs / f"{session}.log")
        common.say(f"bench suite: {session}: {_session_line(record['sessions'][session])}")
    record["total"] = totals(record["sessions"])
    record["targets"] = targets(record)
    out_dir = common.output_dir(set(sessions) != set(SESSIONS), out)
    common.write_results(record, out_dir, NAME, PLOT, summary_markdown, headline)
    return record


def _time_session(session: str, log: Path) -> dict[str, Any]:
    # The machine is shared: the load when each session starts, not only when the run did.
    load = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        argv = [sys.executable, "-m", "pytest", f"tests/{session}", f"--junitxml={report}"]
        started = time.monotonic()
        with log.open("w") as output:
            done = subprocess.run(argv, cwd=REPO_ROOT, stdout=output, stderr=subprocess.STDOUT)
        seconds = time.monotonic() - started
        cases = _cases(report) if report.exists() else []
    outcomes = [outcome for _, _, outcome in cases]
    slowest = sorted(((node, t) for node, t, _ in cases), key=lambda c: c[1], reverse=True)
    return {
        "seconds": round(seconds, 1),
        "tests": len(cases),
        "passed": outcomes.count("passed"),
        "failed": outcomes.count("failed"),
        "skipped": outcomes.count("skipped"),
        "exit_code": done.returncode,
        "load_average_at_start": load,
        "slowest": [[node, round(t, 2)] for node, t in slowest[:SLOWEST]],
        "failures": [node for node, _, outcome in cases if outcome == "failed"],
    }


def _cases(report: Path) -> list[tuple[str, float, str]]:
    """(node id, seconds, outcome) for each test in pytest's JUnit XML report.

    pytest can write one test as two <testcase> records (a pass, then an error in teardown); the
    first record of a node id is kept for its time, and any failure of that id makes it failed.
    """
    found: dict[str, tuple[float, str]] = {}
    for case in ET.parse(report).iter("testcase"):
        node = _node_id(case.get("classname", ""), case.get("name", ""))
        outcome = outcome_of(case)
        seconds, before = found.get(node, (float(case.get("time", 0)), "passed"))
        found[node] = (seconds, outcome if before == "passed" else before)
    return [(node, seconds, outcome) for node, (seconds, outcome) in found.items()]


def outcome_of(case: ET.Element) -> str:
    """passed, failed (a failure or an error) or skipped: one <testcase> of pytest's JUnit XML."""
    if case.find("failure") is not None or case.find("error") is not None:
        return "failed"
    return "skipped" if case.find("skipped") is not None else "passed"


def _node_id(classname: str, name: str) -> str:
    """pytest's node id back from JUnit's dotted classname (`tests.chapter03.test_page.TestX`)."""
    parts = classname.split(".")
    for cut in range(len(parts), 0, -1):
        path = "/".join(parts[:cut]) + ".py"
        if (REPO_ROOT / path).is_file():
            return "::".join([path, *parts[cut:], name])
    return f"{classname}::{name}"


def totals(sessions: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The sessions added up: what a learner waits for running every chapter once."""
    seconds = sum(s["seconds"] for s in sessions.values())
    counts = {key: sum(s[key] for s in sessions.values()) for key in ("tests", "passed", "failed", "skipped")}
    return {"seconds": round(seconds, 1), "minutes": round(seconds / 60, 1), **counts}


def targets(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Each session passes (pytest exited 0, nothing failed) and takes at most SESSION_TARGET_S."""
    found = []
    for name, session in record["sessions"].items():
        found.append(
            {
                "target": f"`nox -s {name}` passes",
                "measured": _session_line(session),
                "pass": session["exit_code"] == 0 and session["failed"] == 0,
            }
        )
        found.append(
            {
                "target": f"`nox -s {name}` takes <= {SESSION_TARGET_S} s",
                "measured": f"{session['seconds']:.0f} s",
                "pass": session["seconds"] <= SESSION_TARGET_S,
            }
        )
    return found


def _session_line(session: dict[str, Any]) -> str:
    skipped = f", {session['skipped']} skipped" if session["skipped"] else ""
    return f"{session['passed']} of {session['tests']} passed{skipped} in {session['seconds']:.0f} s"


def _slowest(session: dict[str, Any]) -> str | None:
    if not session["slowest"]:
        return None
    node, seconds = session["slowest"][0]
    return f"`{node}` ({seconds:.1f} s)"


def headline(record: dict[str, Any]) -> dict[str, str | None]:
    """What a reader compares across machines: the whole wait, and each session's."""
    found = {"total (min)": report.figure(record["total"]["minutes"])}
    for name, session in record["sessions"].items():
        found[f"{name} (s)"] = report.figure(session["seconds"], ".0f")
    return found


def summary_markdown(record: dict[str, Any]) -> str:
    lines = report.machine_line(record, NAME)
    rows = [
        [
            f"`nox -s {name}`",
            f"{session['seconds']:.0f}",
            session["tests"],
            session["passed"],
            session["skipped"] or None,
            session["load_average_at_start"][0],
            _slowest(session),
        ]
        for name, session in record["sessions"].items()
    ]
    total = record["total"]
    rows.append(["total", f"{total['seconds']:.0f}", total["tests"], total["passed"], None, None, None])
    header = ["session", "seconds", "tests", "passed", "skipped", "load at start (1 min)", "slowest test"]
    lines.append(report.markdown_table(header, rows))
    lines.append(
        "Wall time of `pytest tests/chapterNN` in an environment that is already installed; "
        "the first `nox -s chapterNN` also creates its venv and installs the pins. The load average "
        "when each session started says how busy the machine was with other work.\n"
    )
    if total["failed"]:
        lines.append(_failures_line(record))
    lines.append(report.targets_table(record["targets"]))
    return "\n".join(lines)


def _failures_line(record: dict[str, Any]) -> str:
    """Failed tests are in the times too (a hung one runs to pytest's timeout): say which.

    Records written before `failures` was kept give the count alone.
    """
    named = [f"`{node}`" for session in record["sessions"].values() for node in session.get("failures", [])]
    which = f": {', '.join(named)}" if named else ""
    failed = record["total"]["failed"]
    return f"**{failed} tests failed in this run**, and their time is in the figures{which}.\n"
