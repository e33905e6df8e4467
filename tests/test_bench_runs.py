"""Bench figures carry their machine: each machine's latest run is kept, and every summary shows them all.

No servers: these build records from the stored chapter 02 record with another machine in it,
and write only under tmp_path.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from bench import async_modes, common, report
from bench.__main__ import main
from lab.processes import LabBench

STORED = common.DOCS_BENCH / f"{async_modes.NAME}.json"
NAME = async_modes.NAME
PLOTS = ("02-broadcast-latency.png", "02-deliveries-per-second.png", "02-memory-per-connection.png")


@pytest.fixture
def stored() -> dict[str, Any]:
    return json.loads(STORED.read_text())


def on_another_machine(record: dict[str, Any], p99_at_2000: float) -> dict[str, Any]:
    """The same record measured on another machine (a later date), with gevent's p99 at 2,000 changed."""
    other = copy.deepcopy(record)
    other["machine"].update(
        cpu_model="Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz",
        cores_logical=8,
        cores_physical=4,
        ram_gb=31.2,
        date="2026-12-01T09:00:00+00:00",
    )
    step = next(s for s in other["modes"]["gevent"]["steps"] if s["clients"] == 2000)
    step["latency"]["latency"]["p99_ms"] = p99_at_2000
    return other


def machines_section(summary: str) -> str:
    """The summary from its per-machine table on."""
    assert "**Runs on each machine.**" in summary, summary
    return summary[summary.index("**Runs on each machine.**") :]


def row_of(section: str, machine_id: str) -> str:
    return next(line for line in section.splitlines() if line.startswith(f"| `{machine_id}`"))


def test_two_machines_each_have_a_labelled_row_and_the_spread(tmp_path, stored):
    """Two machines' runs of chapter 02 are both in the summary's last table, each named, with the spread."""
    other = on_another_machine(stored, p99_at_2000=120.4)
    # Each machine's run is stored under its own id.
    for record in (stored, other):
        report.store_run(record, tmp_path, NAME)
    report.write_summary(other, tmp_path, async_modes.summary_markdown, NAME, async_modes.headline)

    section = machines_section((tmp_path / "02-summary.md").read_text())
    ours, theirs = report.machine_id(stored["machine"]), report.machine_id(other["machine"])
    assert ours != theirs
    assert theirs.startswith("intel-xeon-platinum-8375c-8c-31gb-"), theirs
    # Each row names its machine and hardware, and judges the run against its own targets.
    assert "AMD EPYC, 2 cores, 23.5 GB" in row_of(section, ours)
    assert "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz, 8 cores, 31.2 GB" in row_of(section, theirs)
    assert "| 199 |" in row_of(section, ours) and "| 120 |" in row_of(section, theirs)
    passed = sum(t["pass"] is True for t in stored["targets"])
    assert f"| {passed} of {len(stored['targets'])} |" in row_of(section, ours)
    # The spread row gives each figure's lowest and highest across the two machines.
    spread = next(line for line in section.splitlines() if line.startswith("| spread over 2 machines"))
    assert "| 120–199 |" in spread
    assert f"the run of 2026-12-01 on `{theirs}`" in section


def test_a_rerun_replaces_its_own_machines_run_and_leaves_the_other(tmp_path, stored):
    """A rerun on one machine replaces that machine's stored run only; another machine's stays as it was."""
    other = on_another_machine(stored, p99_at_2000=120.4)
    ours = report.store_run(stored, tmp_path, NAME)
    theirs = report.store_run(other, tmp_path, NAME)
    theirs_before = theirs.read_text()

    # The same machine runs again, later.
    rerun = copy.deepcopy(stored)
    rerun["machine"]["date"] = "2027-01-02T03:04:05+00:00"
    assert report.store_run(rerun, tmp_path, NAME) == ours

    assert sorted(report.runs_dir(tmp_path, NAME).iterdir()) == sorted([ours, theirs])
    assert json.loads(ours.read_text())["machine"]["date"] == "2027-01-02T03:04:05+00:00"
    assert theirs.read_text() == theirs_before
    assert list(report.stored_runs(tmp_path, NAME)) == [report.machine_id(other["machine"]), ours.stem]


def test_a_record_without_an_id_gets_the_id_of_a_new_run_on_its_machine(monkeypatch):
    """A record written before ids existed gets the same id as a new record of the same machine."""
    monkeypatch.delenv("BENCH_MACHINE", raising=False)
    new = common.machine_details({"soft": 1024, "hard": 1024})
    legacy = {key: value for key, value in new.items() if key not in ("machine_id", "label", "cpu")}
    assert report.machine_id(legacy) == new["machine_id"] == new["label"]
    assert re.fullmatch(r"[a-z0-9-]+-\d+c-\d+gb-[0-9a-f]{6}", new["machine_id"]), new["machine_id"]


def test_bench_machine_names_two_machines_that_read_the_same(monkeypatch, tmp_path, stored):
    """BENCH_MACHINE overrides the id and the label: two machines whose fields match keep two runs."""
    monkeypatch.setenv("BENCH_MACHINE", "Alice's laptop")
    named = common.machine_details({"soft": 1024, "hard": 1024})
    assert (named["machine_id"], named["label"]) == ("alices-laptop", "Alice's laptop")

    # The stored record's machine, run again on a twin that says which it is.
    twin = copy.deepcopy(stored)
    twin["machine"].update(machine_id=named["machine_id"], label=named["label"])
    paths = {report.store_run(record, tmp_path, NAME).name for record in (stored, twin)}
    assert paths == {f"{report.machine_id(stored['machine'])}.json", "alices-laptop.json"}
    report.write_summary(twin, tmp_path, async_modes.summary_markdown, NAME, async_modes.headline)
    assert "| Alice's laptop (`alices-laptop`) |" in (tmp_path / "02-summary.md").read_text()


def test_only_a_full_run_into_docs_bench_is_kept_per_machine(monkeypatch, tmp_path, stored):
    """Quick and --out runs write where they did; a full run into docs/bench/ keeps its machine's run too."""
    elsewhere, published = tmp_path / "elsewhere", tmp_path / "docs-bench"
    for folder in (elsewhere, published):
        folder.mkdir()
    monkeypatch.setattr(common, "DOCS_BENCH", published)
    quick = {**stored, "quick": True}

    common.write_results(stored, elsewhere, NAME, None, async_modes.summary_markdown)
    common.write_results(quick, published, NAME, None, async_modes.summary_markdown)
    assert not (elsewhere / report.RUNS).exists() and not (published / report.RUNS).exists()

    common.write_results(stored, published, NAME, None, async_modes.summary_markdown)
    kept = report.runs_dir(published, NAME) / f"{report.machine_id(stored['machine'])}.json"
    assert json.loads(kept.read_text()) == stored
    # One machine: the table still shows it, and says the figures are that machine's.
    assert "One machine so far" in (published / "02-summary.md").read_text()


def test_report_only_rewrites_the_summary_and_the_plots_starting_nothing(monkeypatch, tmp_path, stored):
    """`python -m bench 02 --report-only` redraws the plots and the summary, runs on each machine included."""
    # The latest record, and another machine's run beside it in runs/.
    (tmp_path / STORED.name).write_text(STORED.read_text())
    report.store_run(on_another_machine(stored, p99_at_2000=120.4), tmp_path, NAME)

    def no_servers(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("--report-only opened the lab bench")

    monkeypatch.setattr(LabBench, "__enter__", no_servers)
    monkeypatch.setattr(LabBench, "start", no_servers)
    assert main(["02", "--report-only", "--out", str(tmp_path)]) == 0

    summary = (tmp_path / "02-summary.md").read_text()
    # The chapter's own tables are as the record says; the runs on each machine follow them.
    assert summary.startswith(async_modes.summary_markdown(stored))
    assert "| spread over 2 machines (min–max) |" in machines_section(summary)
    for png in PLOTS:
        assert (tmp_path / png).stat().st_size > 0, png
    assert json.loads((tmp_path / STORED.name).read_text()) == stored


def test_every_bench_module_names_its_plots_and_headline_figures():
    """--report-only can redraw every chapter: each module names its plot function (suite and guard: none)."""
    from bench.__main__ import REPORTS

    for chapter, module in REPORTS.items():
        assert callable(module.headline), chapter
        assert (module.PLOT is None) == (chapter in ("suite", "guard")), chapter


def test_headline_figures_read_from_every_stored_record():
    """Each module's headline figures come out of its stored record, each one number (the spread needs it)."""
    from bench.__main__ import REPORTS

    for module in REPORTS.values():
        record = json.loads((common.DOCS_BENCH / f"{module.NAME}.json").read_text())
        figures = module.headline(record)
        assert len(figures) >= 2, module.NAME
        numbers = [report.figure_value(value) for value in figures.values()]
        assert None not in numbers, (module.NAME, figures)


def test_stored_runs_are_named_by_their_machines_id():
    """The runs kept under docs/bench/runs/ sit where their own machine's id says."""
    for path in (common.DOCS_BENCH / report.RUNS).glob("*/*.json"):
        assert path.stem == report.machine_id(json.loads(path.read_text())["machine"]), path
