"""Drills as a bench runs them: pytest on the drills' files, each test's counts from its record.

A drill test writes what it measured with `record_property`; the bench runs the file as its nox
session does, reads pytest's JUnit report, and keeps each test's figures by parameter id
(`test_x[chapter06]`), for the page to cite.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from bench import common, suite
from lab.processes import REPO_ROOT


def run_drills(
    path: str, logs: Path, env: dict[str, str] | None = None, bench: str = "06"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`pytest <path>` as its nox session runs it, with `env` added; each test's record_property
    counts, and the run.

    Returns ({test function: {param id: {count: value, ..., "outcome": ...}}}, what ran and how).
    """
    if not (REPO_ROOT / path).exists():
        why = f"{path} does not exist yet: the drills' counts are not in this record"
        common.say(f"bench {bench}: {why}")
        return {}, {"skipped": why}
    logs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        argv = [sys.executable, "-m", "pytest", path, *junit_options(junit)]
        started = time.monotonic()
        with (logs / "drills.log").open("w") as output:
            done = subprocess.run(
                argv,
                cwd=REPO_ROOT,
                env={**os.environ, **(env or {})},
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        seconds = time.monotonic() - started
        drills = drill_figures(junit) if junit.exists() else {}
    ran = {
        "command": " ".join(
            [
                *(f"{k}={v}" for k, v in (env or {}).items()),
                "python -m pytest",
                path,
                *junit_options(Path("<report>")),
            ]
        ),
        "exit_code": done.returncode,
        "seconds": round(seconds, 1),
    }
    if done.returncode != 0:
        common.say(f"bench {bench}: the drills failed (exit {done.returncode}); see {logs / 'drills.log'}")
    return drills, ran


def junit_options(junit: Path) -> list[str]:
    """pytest's options for a JUnit XML report that keeps each test's record_property.

    xunit1: pytest's default family (xunit2) has no place for properties in a test, and warns.
    """
    return [f"--junitxml={junit}", "-o", "junit_family=xunit1"]


def drill_figures(junit: Path) -> dict[str, Any]:
    """Each test's properties by function and parameter id (`test_x[chapter06]`), numbers as numbers."""
    found: dict[str, Any] = {}
    for case in ET.parse(junit).iter("testcase"):
        function, _, param = case.get("name", "").partition("[")
        figures = found.setdefault(function, {}).setdefault(param.removesuffix("]") or "-", {})
        for prop in case.iter("property"):
            value = prop.get("value", "")
            figures[prop.get("name")] = int(value) if re.fullmatch(r"-?\d+", value) else value
        # A test can be two records (a pass, then an error in teardown): any failure stands.
        if figures.get("outcome") in (None, "passed"):
            figures["outcome"] = suite.outcome_of(case)
    return found
