"""`python -m bench hosts`: the drills beyond one machine, their figures kept for the page.

It runs tests/hosts as `nox -s hosts` does (root: the lab's hosts are network namespaces), with
HOSTS_FAILOVERS=20: the Sentinel drill fails Redis over 20 times in a row. Each drill's figures
(record_property) go to docs/bench/hosts.json, which the page "Beyond one machine" cites.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from bench import common, plots, report
from bench.drills import run_drills

NAME = "hosts"  # docs/bench/<NAME>.json
PLOT = plots.hosts  # its figure, drawn again by --report-only
DRILLS = "tests/hosts"
SENTINEL = "test_the_chat_fails_over_with_redis"
PARTITION = "test_an_instance_cut_from_redis_says_so_and_its_users_move"


@dataclass(frozen=True)
class Settings:
    failovers: int
    drills: str


FULL = Settings(20, DRILLS)
QUICK = Settings(2, DRILLS)


def run(quick: bool, out: str | None) -> dict[str, Any]:
    settings = QUICK if quick else FULL
    record: dict[str, Any] = common.new_record("hosts", quick, settings)
    record["machine"]["packages"]["pytest"] = common.package_version("pytest")
    env = {"HOSTS_FAILOVERS": str(settings.failovers)}
    drills, ran = run_drills(settings.drills, common.log_dir("hosts"), env, "hosts")
    record["drills"], record["drills_run"] = drills, ran
    record["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    record["targets"] = targets(record)
    common.write_results(record, common.output_dir(quick, out), NAME, PLOT, summary_markdown, headline)
    return record


def _sentinel(record: dict[str, Any]) -> dict[str, Any]:
    return record.get("drills", {}).get(SENTINEL, {}).get("-", {})


def targets(record: dict[str, Any]) -> list[dict[str, Any]]:
    drills, ran = record.get("drills", {}), record.get("drills_run", {})
    outcomes = [figures["outcome"] for params in drills.values() for figures in params.values()]
    all_passed = bool(outcomes) and outcomes.count("passed") == len(outcomes) and ran.get("exit_code") == 0
    sentinel = _sentinel(record)
    asked = record["settings"]["failovers"]
    return [
        {
            "target": "every drill beyond one machine passes",
            "measured": ran.get("skipped") or f"{outcomes.count('passed')} of {len(outcomes)} passed",
            "pass": all_passed,
        },
        {
            "target": f"{asked} Sentinel failovers in a row, delivery across instances back in 10 s each",
            "measured": (
                f"{sentinel['failovers']} failovers, the longest window {sentinel['window_ms_max']:,} ms"
                if "window_ms_max" in sentinel
                else "no failover ran"
            ),
            "pass": sentinel.get("failovers") == asked and sentinel.get("window_ms_max", 10_000) < 10_000,
        },
    ]


def headline(record: dict[str, Any]) -> dict[str, str | None]:
    """What a reader compares across machines: the failover window, how long a cut-off instance is deaf."""
    sentinel = _sentinel(record)
    partition = record.get("drills", {}).get(PARTITION, {})
    found = {
        "failover window p50 (ms)": report.figure(sentinel.get("window_ms_median"), ",.0f"),
        "failover window max (ms)": report.figure(sentinel.get("window_ms_max"), ",.0f"),
    }
    for param in ("forgotten-chapter", "partition-chapter"):
        found[f"{param}: deaf (ms)"] = report.figure(partition.get(param, {}).get("deaf_ms_max"), ",.0f")
    return found


def summary_markdown(record: dict[str, Any]) -> str:
    lines = report.machine_line(record, "hosts")
    lines += ["", "| Drill | Side | Figures | Outcome |", "|---|---|---|---|"]
    for test, params in sorted(record.get("drills", {}).items()):
        for param, figures in sorted(params.items()):
            shown = ", ".join(f"{key} {value}" for key, value in figures.items() if key != "outcome")
            lines.append(f"| `{test}` | {param} | {shown or '-'} | {figures['outcome']} |")
    lines += ["", f"Command: `{record.get('drills_run', {}).get('command', '-')}`"]
    return "\n".join(lines) + "\n"
