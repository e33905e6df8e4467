"""Each twin is its chapter with the mistake and nothing else: what differs, its header says.

No processes: this reads the files. A twin that drifts from its chapter anywhere it does not
declare (a copy that missed a fix, a helper re-implemented) fails here, before it teaches
something the chapter does not do.
"""

import shutil

import pytest

from sitegen import twins

TWINS = twins.all_twins()


@pytest.mark.parametrize("path", TWINS, ids=[p.name for p in TWINS])
def test_a_twin_differs_from_its_chapter_only_where_it_says(path):
    """Every twin differs from its chapter file only in the definitions its header names."""
    twin = twins.load(path)
    assert twin.differences, f"{path.name} names no difference"
    assert twins.drift(twin) == []


@pytest.mark.parametrize("path", TWINS, ids=[p.name for p in TWINS])
def test_a_twin_is_drawn_as_its_difference(path):
    """The site draws every twin as the diff of what it changes, never as a whole file: 60 lines at most."""
    drawn = twins.render(twins.load(path))
    assert "```" in drawn
    assert len(drawn.splitlines()) <= 60


def test_a_drifted_twin_fails(tmp_path, monkeypatch):
    """A copy of a twin with one undeclared change anywhere else is caught, by name."""
    original = twins.TWINS_DIR / "03_no_message_queue.py"
    drifted = tmp_path / original.name
    shutil.copy(original, drifted)
    text = drifted.read_text()
    # The drift the issue found: a copy that lost the NOTIFY_TOKEN check.
    assert "    if not NOTIFY_TOKEN:" in text
    drifted.write_text(text.replace("    if not NOTIFY_TOKEN:", "    if True:", 1))
    problems = twins.drift(twins.load(drifted))
    assert problems and all("undeclared" in p for p in problems), problems


def test_a_drifted_nginx_twin_fails(tmp_path):
    """An nginx twin that also changes a directive outside its declared block is caught."""
    original = twins.TWINS_DIR / "04_round_robin.conf"
    drifted = tmp_path / original.name
    drifted.write_text(original.read_text().replace("proxy_buffering off;", "proxy_buffering on;"))
    problems = twins.drift(twins.load(drifted))
    assert any("proxy_buffering on;" in p for p in problems), problems
