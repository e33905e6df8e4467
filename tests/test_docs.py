"""The site tells the truth: every citation resolves, and every snippet section is shown.

No processes: this reads the pages and the repository. `nox -s docs` checks the same
citations while it builds (sitegen/hooks.py); this test also covers the chapter READMEs, which
mkdocs does not build, and the snippet sections that no page uses.
"""

import re
from pathlib import Path

import pytest

from sitegen import citations, twins

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").rglob("*.md"))
READMES = [
    ROOT / "README.md",
    ROOT / "flask-socketio-guard" / "README.md",
    *sorted((ROOT / "chapters").glob("*/README.md")),
    *sorted((ROOT / "recipes").glob("*/README.md")),
]
# Where snippet sections live: the code a page may show.
SOURCES = ("chapters", "antipatterns", "recipes", "tests")
MARKER = re.compile(r"--8<-- \[start:([\w-]+)\]")
INCLUDE = re.compile(r'--8<-- "([^":]+)(?::([\w-]+))?"')


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_citation_resolves(path):
    """Every test and bench figure a page cites exists: a made-up citation fails."""
    assert citations.check(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("path", READMES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_a_readme_cites_with_links_github_can_show(path):
    """A README, shown on GitHub as it is, cites with plain links to real tests and records, not markers."""
    depth = len(path.relative_to(ROOT).parts) - 1
    assert citations.check_links(path.read_text(encoding="utf-8"), depth) == []


def test_a_made_up_citation_fails():
    """A citation of a test, a test folder or a bench key that does not exist is an error, by name."""
    made_up = (
        "{test: tests/chapter03/test_redis_scaling.py::test_that_was_never_written} "
        "{test: tests/nowhere/test_x.py::test_y} "
        "{bench: 03-redis-scaling.json no.such.key} "
        "{bench: no-such-run.json machine}\n"
        "{tests: tests/no_such_chapter}\n"
    )
    errors = citations.check(made_up)
    assert len(errors) == 5, errors
    with pytest.raises(citations.CitationError):
        citations.render(made_up)


def test_a_made_up_or_raw_readme_citation_fails():
    """In a README, a link to a test that does not exist, a wrong depth, or a raw site marker is an error."""
    made_up = (
        '[test](../../tests/chapter03/test_redis_scaling.py "test_that_was_never_written") '
        '[test](../tests/chapter03/test_redis_scaling.py "test_notify_refuses_bad_input_with_a_reason") '
        '[bench](../../docs/bench/05-celery.json "no.such.key") '
        "{test: tests/chapter03/test_redis_scaling.py::test_notify_refuses_bad_input_with_a_reason}"
    )
    assert len(citations.check_links(made_up, 2)) == 4


def test_a_real_citation_renders_its_value_and_its_machine():
    """A bench citation renders the measured value, with the machine it was measured on."""
    html = citations.render("{bench: 05-celery.json latency.start_to_ack.count d}")
    value = citations.bench_value("05-celery.json", "latency.start_to_ack.count")
    assert f">{value}</span>" in html
    assert citations.machine_of("05-celery.json") in html


def used_sections() -> set[tuple[str, str]]:
    """(file, section) for every section a page includes, or the whole file."""
    used = set()
    for page in PAGES:
        for path, section in INCLUDE.findall(page.read_text(encoding="utf-8")):
            used.add((path, section or "*"))
    return used


def test_every_snippet_section_is_shown():
    """Every snippet section marked in the code is shown on some page (or its markers are removed)."""
    used = used_sections()
    gallery = twins.gallery()  # the twins' own sections, where it draws them
    unused = []
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*")):
            if not path.is_file() or path.suffix not in (".py", ".conf", ".cfg", ".html"):
                continue
            rel = path.relative_to(ROOT).as_posix()
            text = path.read_text(encoding="utf-8")
            for name in MARKER.findall(text):
                if (rel, name) in used or (rel, "*") in used:
                    continue
                body = re.search(rf"\[start:{name}\]\n(.*?)\n[^\n]*\[end:{name}\]", text, re.S)
                last_line = body.group(1).strip().splitlines()[-1].strip() if body else None
                if folder == "antipatterns" and last_line and last_line in gallery:
                    continue
                unused.append(f"{rel}:{name}")
    assert unused == [], "sections no page shows (show them, or remove the markers)"
