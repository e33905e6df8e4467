"""The guard's cost is measured on what it says: the chapter with its guard and without, every event answered.

A server whose guard did not come off would be measured as the unguarded app and published as
the guard costing nothing. So the unguarded server is shown to let through what the guard
refuses, the bench counts every ack in a window on both, and a quick run of the whole bench
alternates the two and judges the difference only against the noise.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import pytest

from bench import common, guard_cost
from bench.__main__ import main
from bench.loadclient import LoadClient
from lab.apps import get_json
from lab.processes import LabBench

CLIENTS = 10
EVENTS_EACH = 5


def status_under_host(url: str, host: str) -> int:
    """The HTTP status of the chapter's page asked for under another Host name (a DNS-rebinding page)."""
    request = urllib.request.Request(f"{url}/", headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as refused:
        return refused.code


async def one_window(url: str, pid: int) -> dict:
    async with LoadClient(url) as fleet:
        opened = await fleet.open(CLIENTS, timeout=15)
        assert opened.connected == CLIENTS, opened.errors
        return await guard_cost.events_window(fleet, pid, EVENTS_EACH, common.Budget(30))


@pytest.mark.parametrize(("guard", "untrusted_host"), [("on", 400), ("off", 200)])
def test_each_server_runs_with_its_guard_and_every_event_is_counted(bench, guard, untrusted_host):
    """The guard-off server lets in an untrusted Host the chapter refuses; both answer every ping."""
    server = guard_cost.start_server(bench, guard, guard)
    assert get_json(f"{server.url}/knobs")["guard"] == guard
    assert status_under_host(server.url, "rebound.example") == untrusted_host
    window = asyncio.run(one_window(server.url, server.pid))
    assert window["acked"] == window["sent"] == CLIENTS * EVENTS_EACH, window
    assert window["unanswered"] == {} and window["server_us_per_event"] is not None


def test_a_quick_run_alternates_the_guard_and_acknowledges_every_event(tmp_path, monkeypatch):
    """`python -m bench guard --quick` runs on, off, on, every event answered, and writes its summary."""
    monkeypatch.setattr(common, "log_dir", lambda name: tmp_path / "logs" / name)
    assert main(["guard", "--quick", "--out", str(tmp_path)]) == 0

    record = json.loads((tmp_path / "guard.json").read_text())
    assert [run["guard"] for run in record["runs"]] == ["on", "off", "on"]
    assert all(target["pass"] for target in record["targets"]), record["targets"]
    assert record["comparison"]["verdict"] in ("costs", "saves", "within the noise")
    summary = (tmp_path / "guard-summary.md").read_text()
    # --report-only writes the same summary from the record alone.
    assert main(["guard", "--report-only", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "guard-summary.md").read_text() == summary


def runs(*costs: float | None) -> list[dict]:
    """Runs in bench order (on, off, on, ...) with these server CPU figures per event."""
    return [
        {"guard": "on" if index % 2 == 0 else "off", "server_us_per_event": cost}
        for index, cost in enumerate(costs)
    ]


def test_the_guard_costs_only_when_every_repeat_clears_its_noise():
    """A difference counts only when it clears the guarded neighbours' gap every time; else it is noise."""
    steady = guard_cost.compare(runs(100, 80, 100, 80, 100))
    assert steady["verdict"] == "costs"
    assert steady["guard_us_per_event"] == 20 and steady["guard_share"] == 0.25
    # The guarded runs drift 10 % apart; the second repeat's 5 % is within that.
    drifting = guard_cost.compare(runs(100, 95, 110, 100, 100))
    assert drifting["median_gap"] == 0.095
    assert [r["guard_share"] for r in drifting["repeats"]] == [0.105, 0.05]
    assert drifting["verdict"] == "within the noise"
    # A run that broke leaves its repeat unmeasured, and the verdict with it.
    assert guard_cost.compare(runs(100, None, 100))["verdict"] == "not measured"


def test_a_run_past_the_time_budget_starts_no_server(tmp_path):
    """A run that finds the bench's time budget spent starts no server, and says why."""
    with LabBench(tmp_path / "logs") as lab_bench:
        spent = common.Budget(0)
        found = guard_cost.measure_run(lab_bench, "spent", "on", guard_cost.QUICK, spent)
    assert found == {"guard": "on", "windows": [], "broke": "the time budget was spent before this run"}
