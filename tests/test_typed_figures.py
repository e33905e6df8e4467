"""Every figure beside a bench citation comes from the record, and so does how long a run takes.

A page cites a measured figure by its key (`{bench: 02-async-modes.json modes.gevent.max_clients_ok}`),
and the build renders the value the bench recorded. A number typed in beside it ("with 500 clients,
the bench counted ...") is checked by nothing and goes stale when the bench runs again. No
processes: this reads the pages and the READMEs, and writes one record under tmp_path.
"""

from __future__ import annotations

import copy
import datetime
import json
import re
from pathlib import Path

import pytest

from bench import async_modes, common

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").rglob("*.md"))
READMES = [
    ROOT / "README.md",
    ROOT / "flask-socketio-guard" / "README.md",
    *sorted((ROOT / "chapters").glob("*/README.md")),
    *sorted((ROOT / "recipes").glob("*/README.md")),
]

BENCH = re.compile(r"\{bench:\s*([^}\s]+)\s+([^}\s]+)(?:\s+[^}\s]+)?\s*\}")
TEST = re.compile(r"\{tests?:[^}]*\}")
FENCE = re.compile(r"^[ \t]*```.*?^[ \t]*```[^\n]*$", re.MULTILINE | re.DOTALL)
COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
CODE = re.compile(r"`[^`\n]*`")
# A chapter's number names it ("chapter 02 run", "chapter 03 instances"): it measures nothing.
CHAPTER = re.compile(r"\b[Cc]hapters? \d+")
NUMBER = r"\d[\d,]*(?:\.\d+)?"
UNIT = (
    r"ms|µs|us|ns|s|secs?|seconds?|min|minutes?|h|hours?|B|bytes?|[KMG]i?B|kB|%|x|×"
    r"|clients?|connections?|deliver(?:y|ies)|broadcasts?|messages?|events?|tasks?|requests?"
    r"|pings?|rounds?|users?|workers?|instances?|process(?:es)?|cores?|threads?|descriptors?"
)
# A number and its unit, not part of a word, a version or a path (`v4`, `4.15`, `#3623`).
FIGURE = re.compile(rf"(?<![\w.,/#-])({NUMBER})(?:\s*(?:-|–|to)\s*{NUMBER})?\s*(?:{UNIT})(?![\w])")
# How long something takes: a number with a unit of time, or "a minute", "half an hour".
DURATION = re.compile(
    rf"(?<![\w.,/#-]){NUMBER}(?:\s*(?:-|–|to)\s*{NUMBER})?\s*(?:ms|s|secs?|seconds?|min|minutes?|h|hours?)\b"
    r"|\b(?:a|an|half an?) (?:second|minute|hour)\b"
)
BENCH_COMMAND = re.compile(r"nox -s bench\b|python -m bench\b")


def prose_units(text: str) -> list[str]:
    """Each sentence of a page's prose, and each cell of its tables; code and comments left out."""
    text = COMMENT.sub(" ", FENCE.sub(" ", text))
    units = []
    for block in re.split(r"\n[ \t]*\n", text):
        if block.lstrip().startswith("|"):
            units += [cell for line in block.splitlines() for cell in line.split("|")]
        else:
            # Citations hold dots of their own (`05-celery.json latency.p50_ms .1f`): shield them.
            shielded = BENCH.sub(lambda m: m.group(0).replace(".", "\0"), block)
            units += [s.replace("\0", ".") for s in re.split(r"(?<=[.!?])\s+", shielded)]
    return units


def typed_figures(unit: str) -> list[str]:
    """The numbers with a unit that `unit` types in beside a bench citation.

    A number the citation's own key names (`fan_out.steps.10000`: "with 10,000 clients") is not
    typed in: the build fails if the record has no such key.
    """
    keys = [key for _, key in BENCH.findall(unit)]
    if not keys:
        return []
    named = {part for key in keys for part in key.split(".") if part.isdigit()}
    prose = CHAPTER.sub("chapter", CODE.sub(" ", TEST.sub(" ", BENCH.sub(" ⟨figure⟩ ", unit))))
    return [
        match.group(0)
        for match in FIGURE.finditer(prose)
        if match.group(1).replace(",", "").split(".")[0] not in named
    ]


@pytest.mark.parametrize("path", PAGES + READMES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_page_types_a_figure_beside_a_bench_citation(path):
    """A number with a unit in a sentence or table cell that cites the bench is cited from the record too."""
    found = [
        f"{figure!r} in: {' '.join(unit.split())}"
        for unit in prose_units(path.read_text(encoding="utf-8"))
        for figure in typed_figures(unit)
    ]
    assert found == [], "typed beside a bench citation; cite the record's key instead:\n" + "\n".join(found)


def test_the_check_finds_a_typed_figure_and_passes_a_cited_one():
    """The check flags '500 clients' typed beside a citation, and passes a figure the citation's key names."""
    typed = "with 500 clients, the bench counted {bench: 02-async-modes.json modes.threading.disorder ,}."
    keyed = (
        "With 10,000 clients, the bench counted {bench: 04-nginx-lb.json fan_out.steps.10000.nginx.fds ,}."
    )
    cited = "at {bench: 02-async-modes.json modes.threading.steps.1.clients ,} clients, in chapter 02 runs"
    assert typed_figures(typed) == ["500 clients"]
    assert typed_figures(keyed) == typed_figures(cited) == []
    assert typed_figures("about 40 ms, measured once") == []  # no citation: another test's business


@pytest.mark.parametrize("path", PAGES + READMES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_page_types_how_long_a_bench_run_takes(path):
    """A line that runs the bench says nothing of how long it takes: its record says that (`duration`)."""
    found = [
        line.strip()
        for line in COMMENT.sub(" ", path.read_text(encoding="utf-8")).splitlines()
        if BENCH_COMMAND.search(line) and DURATION.search(BENCH.sub(" ", line))
    ]
    assert found == [], "a bench run's time typed in by hand; cite the record's `duration`:\n" + "\n".join(
        found
    )


def test_a_bench_run_records_how_long_it_took(tmp_path):
    """A bench run's record keeps how long the run took, and the first line of its summary says it."""
    record = copy.deepcopy(json.loads((common.DOCS_BENCH / f"{async_modes.NAME}.json").read_text()))
    record.pop("duration", None)
    # A run that started 90 s ago (its machine details are taken first), and ends now.
    started = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=90)
    record["machine"]["date"] = started.isoformat(timespec="seconds")

    common.write_results(record, tmp_path, async_modes.NAME, None, async_modes.summary_markdown)

    written = json.loads((tmp_path / f"{async_modes.NAME}.json").read_text())
    assert 90 <= written["duration"]["seconds"] <= 95, written["duration"]
    assert written["duration"]["minutes"] == round(written["duration"]["seconds"] / 60, 1)
    first_lines = (tmp_path / "02-summary.md").read_text().split("\n\n")[1]
    assert f"(the run took {written['duration']['minutes']:g} minutes)" in first_lines
