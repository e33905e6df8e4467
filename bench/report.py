"""What the bench writes from its records: summaries, verdicts, and the runs kept per machine.

Apart from the measuring code (bench/common.py and each chapter's module) so that a summary,
its tables and the per-machine comparison can be rebuilt from stored JSON alone
(`python -m bench NN --report-only`): nothing here starts a process or reads the machine.

A full run is kept twice: docs/bench/<NAME>.json, the latest run on any machine (the plots and
the pages' citations read it), and docs/bench/runs/<NAME>/<machine id>.json, the latest run on
each machine, so a run elsewhere adds a row to the comparison instead of replacing the figures
without a trace.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

# A module's few figures worth comparing across machines, by column header (units in the header).
Headline = Callable[[dict[str, Any]], dict[str, str | None]]
RUNS = "runs"  # docs/bench/runs/<NAME>/<machine id>.json
# Words a CPU's marketing name carries that tell two machines apart no better than without them.
CPU_NOISE = re.compile(r"\((r|tm)\)|\bcpu\b|\bprocessor\b|@.*$", re.IGNORECASE)
NUMBER = re.compile(r"-?\d+(\.\d+)?")


# -- which machine ----------------------------------------------------------------------------------


def slug(text: str) -> str:
    """Lower case, words joined by '-', safe as a file name anywhere: `Alice's laptop` is `alices-laptop`."""
    return re.sub(r"[^a-z0-9]+", "-", re.sub(r"['’]", "", text.lower())).strip("-")


def machine_id(machine: dict[str, Any]) -> str:
    """A stable name for the machine a record was measured on, e.g. `amd-epyc-2c-23gb-1a2b3c`.

    Made only from fields every record has had from the start, so a record written before ids
    existed gets the same id as a new run on the same machine. The hash tells apart machines
    whose CPU, cores and RAM read the same but whose OS (kernel included) differs; two that
    match in all of it need BENCH_MACHINE, which is stored as the record's own `machine_id`.
    """
    if machine.get("machine_id"):
        return machine["machine_id"]
    fields = [machine.get(key) for key in ("cpu_model", "cores_logical", "cores_physical", "ram_gb", "os")]
    digest = hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:6]
    cpu = slug(CPU_NOISE.sub(" ", str(machine.get("cpu_model") or "unknown")))[:32].strip("-")
    ram = int(float(machine.get("ram_gb") or 0))
    return f"{cpu}-{machine.get('cores_logical')}c-{ram}gb-{digest}"


def machine_label(machine: dict[str, Any]) -> str:
    """What the summary calls the machine: BENCH_MACHINE's words when the run had them, else its id."""
    return machine.get("label") or machine_id(machine)


# -- the runs kept per machine ----------------------------------------------------------------------


def runs_dir(out: Path, name: str) -> Path:
    return out / RUNS / name


def store_run(record: dict[str, Any], out: Path, name: str) -> Path:
    """runs/<name>/<machine id>.json: replaces this machine's previous run, and no other machine's."""
    path = runs_dir(out, name) / f"{machine_id(record['machine'])}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, record)
    return path


def stored_runs(out: Path, name: str) -> dict[str, dict[str, Any]]:
    """The latest stored run on each machine, by machine id, oldest first."""
    runs: dict[str, dict[str, Any]] = {}
    for path in sorted(runs_dir(out, name).glob("*.json")):
        run = json.loads(path.read_text())
        key = machine_id(run["machine"])
        if key not in runs or run["machine"]["date"] > runs[key]["machine"]["date"]:
            runs[key] = run
    return dict(sorted(runs.items(), key=lambda item: item[1]["machine"]["date"]))


def write_json(path: Path, record: dict[str, Any]) -> None:
    path.write_text(json.dumps(record, indent=2, sort_keys=False) + "\n")


# -- summaries --------------------------------------------------------------------------------------


def machine_line(record: dict[str, Any], chapter: str) -> list[str]:
    """The opening lines of a summary: who wrote it, and the machine and load it measured."""
    m = record["machine"]
    limit = m["fd_limit"]
    # Records written before the bench kept its run time have no `duration`.
    took = f" (the run took {record['duration']['minutes']:g} minutes)" if "duration" in record else ""
    return [
        f"<!-- Written by `python -m bench {chapter}` on {m['date']}; do not edit by hand. -->",
        "",
        f"Measured on {m['cpu_model']} ({m['cores_logical']} cores, {m['ram_gb']} GB RAM), {m['os']}, "
        f"Python {m['python']}, on {m['date'][:10]}{took}; load average at start "
        f"{', '.join(str(x) for x in m['load_average_at_start'])}; open-files limit "
        f"{limit['soft']:,} (hard {limit['hard']:,}) for the servers and the client."
        + (" **Quick smoke run: small counts, not for publishing.**" if record["quick"] else ""),
        "",
    ]


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        return "–" if value is None else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def figure(value: float | None, spec: str = "") -> str | None:
    """A headline figure as its table shows it, or None (shown as –) when the run lacks it."""
    return None if value is None else format(value, spec)


def verdict(passed: bool | None) -> str:
    return {True: "pass", False: "FAIL", None: "not measured"}[passed]


def targets_table(targets: list[dict[str, Any]]) -> str:
    """The last table of every summary: each target, what was measured, and the verdict."""
    rows = [[t["target"], t["measured"], verdict(t["pass"])] for t in targets]
    return markdown_table(["target", "measured", "verdict"], rows)


def print_targets(record: dict[str, Any]) -> None:
    """What `python -m bench NN` ends with: one line per target."""
    for target in record["targets"]:
        print(f"[{verdict(target['pass']):>12}] {target['target']}: {target['measured']}")


def write_summary(
    record: dict[str, Any],
    out: Path,
    summary: Callable[[dict[str, Any]], str],
    name: str,
    headline: Headline | None = None,
) -> None:
    """<chapter>-summary.md, the tables a docs page includes, ending with the runs on each machine."""
    runs = {**stored_runs(out, name), machine_id(record["machine"]): record}
    text = summary(record) + "\n" + machines_table(record, runs, name, headline)
    (out / f"{record['chapter']}-summary.md").write_text(text)


def rewrite_summary(
    name: str,
    out: Path,
    summary: Callable[[dict[str, Any]], str],
    headline: Headline | None = None,
    plot: Callable[[dict[str, Any], Path], object] | None = None,
) -> dict[str, Any]:
    """`--report-only`: the plots and the summary again from the stored <name>.json, measuring nothing."""
    record = json.loads((out / f"{name}.json").read_text())
    if plot:
        plot(record, out)
    write_summary(record, out, summary, name, headline)
    return record


# -- the runs on each machine -----------------------------------------------------------------------


def machines_table(
    record: dict[str, Any], runs: dict[str, dict[str, Any]], name: str, headline: Headline | None
) -> str:
    """One row per machine (its latest run), its headline figures, and the spread across machines.

    Each run is judged against its own targets: a machine's verdicts are its own.
    """
    figures = {key: headline(run) if headline else {} for key, run in runs.items()}
    columns = list(dict.fromkeys(column for found in figures.values() for column in found))
    rows = [
        [_machine_cell(run["machine"]), _hardware_cell(run["machine"]), run["machine"]["date"][:10]]
        + [figures[key].get(column) for column in columns]
        + [_targets_passed(run.get("targets", []))]
        for key, run in runs.items()
    ]
    if len(runs) > 1:
        spread = [_spread([found.get(column) for found in figures.values()]) for column in columns]
        rows.append([f"spread over {len(runs)} machines (min–max)", None, None, *spread, None])
    header = ["machine", "CPU, cores, RAM", "date", *columns, "targets passed"]
    intro = (
        f"**Runs on each machine.** The latest run on each machine that has run this bench, kept in "
        f"`docs/bench/{RUNS}/{name}/<machine>.json`; each is judged against its own targets.\n"
    )
    return "\n".join([intro, markdown_table(header, rows), _whose_figures(record, len(runs))])


def _machine_cell(machine: dict[str, Any]) -> str:
    label, key = machine_label(machine).replace("|", "\\|"), machine_id(machine)
    return f"`{key}`" if label == key else f"{label} (`{key}`)"


def _hardware_cell(machine: dict[str, Any]) -> str:
    return f"{machine['cpu_model']}, {machine['cores_logical']} cores, {machine['ram_gb']:g} GB"


def _targets_passed(targets: list[dict[str, Any]]) -> str:
    passed = sum(1 for t in targets if t["pass"] is True)
    unmeasured = sum(1 for t in targets if t["pass"] is None)
    return f"{passed} of {len(targets)}" + (f" ({unmeasured} not measured)" if unmeasured else "")


def _spread(values: list[str | None]) -> str | None:
    """The lowest and highest of a column's numbers, as each machine's row shows them."""
    numbers = [(number, value) for value in values if (number := figure_value(value)) is not None]
    if len(numbers) < 2:
        return None
    low, high = min(numbers)[1], max(numbers)[1]
    return low if low == high else f"{low}–{high}"


def figure_value(text: str | None) -> float | None:
    """A figure's value: `78,667` is 78667; anything but one number (`did not break`) is None."""
    plain = (text or "").replace(",", "").strip()
    return float(plain) if NUMBER.fullmatch(plain) else None


def _whose_figures(record: dict[str, Any], machines: int) -> str:
    """Which row the tables above come from: with one machine, that they are one machine's."""
    run = f"the run of {record['machine']['date'][:10]} on {_machine_cell(record['machine'])}"
    if machines == 1:
        return (
            f"One machine so far: every figure above is from {run}. A full run on another machine "
            "adds a row here; set `BENCH_MACHINE` to tell apart two machines that read the same.\n"
        )
    return (
        f"The tables above are from {run}; the other rows are each other machine's latest run, and "
        "the last row the lowest and highest of each figure among them.\n"
    )
