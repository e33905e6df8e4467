"""Bench 06 measures what it says: each replay whole, every message delivered, the drills' counts kept.

A replay is timed only when every entry the cursor missed came once, in order, before
`replay_done`; the write path's rate only counts bursts that reached every client. The drills'
counts reach the record as pytest's record_property wrote them. The quick run below is told its
drills' file is missing, so the suite does not run chapter 06's drills twice; a small file of the
drills' shape, run in this process, shows how their counts are read.
"""

from __future__ import annotations

import dataclasses
import json

from bench import common, delivery, drills
from bench.__main__ import main

MISSING = "tests/chapter06/no_such_drills.py"

# The drills' shape: each test parametrized chapter06 / chapter04, its sums in record_property.
DRILLS = '''
import pytest


@pytest.mark.parametrize("side", ["chapter06", "chapter04"])
def test_a_drill(record_property, side):
    """Records what tests/chapter06/test_drills.py records."""
    counts = {"clients": 4, "messages": 10, "lost": 0 if side == "chapter06" else 7}
    for key, value in {**counts, "shown_twice": 0, "out_of_order": 0}.items():
        record_property(key, value)
'''


def test_a_quick_run_replays_each_entry_once_and_delivers_every_message(tmp_path, monkeypatch):
    """`python -m bench 06 --quick`: Redis syncs each write, every replay is whole, every message arrives.

    Each page that connects with a cursor gets exactly what followed it, once each and in order,
    then `replay_done`; both chapters deliver every message of the write path; with no drills'
    file the record says so; --report-only writes the same summary from the record.
    """
    monkeypatch.setattr(delivery, "QUICK", dataclasses.replace(delivery.QUICK, drills=MISSING))
    monkeypatch.setattr(common, "log_dir", lambda name: tmp_path / "logs" / name)
    assert main(["06", "--quick", "--out", str(tmp_path)]) == 0

    record = json.loads((tmp_path / f"{delivery.NAME}.json").read_text())
    assert (record["redis"]["appendonly"], record["redis"]["appendfsync"]) == ("yes", "always")
    for size in delivery.QUICK.text_sizes:
        for missed in delivery.QUICK.missed:
            pair = record["replay"][str(size)][str(missed)]
            assert pair["whole"] == pair["repeats"] == delivery.QUICK.replay_repeats, pair
        assert record["memory"][str(size)]["messages"] == max(delivery.QUICK.missed)
    missing = f"{MISSING} does not exist yet: the drills' counts are not in this record"
    assert (record["drills"], record["drills_run"]) == ({}, {"skipped": missing})
    *measured, drills = record["targets"]
    assert all(target["pass"] for target in measured), measured
    assert (drills["measured"], drills["pass"]) == (missing, None)

    summary = (tmp_path / "06-summary.md").read_text()
    assert main(["06", "--report-only", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "06-summary.md").read_text() == summary


def test_each_drills_counts_are_kept_by_test_and_side(pytester):
    """Each drill's record_property counts are read back under its test's name and its side, as numbers."""
    pytester.makepyfile(test_drill_shape=DRILLS)
    junit = pytester.path / "junit.xml"
    pytester.runpytest_inprocess(*drills.junit_options(junit)).assert_outcomes(passed=2)

    found = drills.drill_figures(junit)
    counts = {"clients": 4, "messages": 10, "shown_twice": 0, "out_of_order": 0, "outcome": "passed"}
    assert found == {"test_a_drill": {"chapter06": {**counts, "lost": 0}, "chapter04": {**counts, "lost": 7}}}
    target = delivery._drills_target({"drills": found, "drills_run": {"exit_code": 0}})
    assert target["pass"] is True, target
