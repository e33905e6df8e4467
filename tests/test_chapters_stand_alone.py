"""A chapter reads top to bottom and runs on its own: it never imports the harness, nor another chapter."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from lab.processes import REPO_ROOT

HARNESS = {"lab", "bench", "tests", "sitegen", "noxfile"}
SOURCES = sorted([*REPO_ROOT.glob("chapters/**/*.py"), *REPO_ROOT.glob("antipatterns/*.py")])


def imported_modules(path: Path) -> set[str]:
    """The top-level names of every module `path` imports, wherever the import statement is."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: str(path.relative_to(REPO_ROOT)))
def test_no_chapter_or_twin_imports_the_harness(path):
    """No file in chapters/ or antipatterns/ imports lab, bench, tests or sitegen: copied out, it runs."""
    assert imported_modules(path) & HARNESS == set()


def test_a_chapter_reaches_no_other_folder():
    """No chapter file edits sys.path: each imports only its own folder and installed packages."""
    reaching = [
        str(p.relative_to(REPO_ROOT))
        for p in SOURCES
        if "chapters" in p.parts and "sys.path" in p.read_text()
    ]
    assert reaching == []


def test_each_pages_cdn_fallback_is_the_client_npm_pins():
    """A page with no local client falls back to the CDN copy of the version package-lock.json pins."""
    lock = json.loads((REPO_ROOT / "package-lock.json").read_text())
    pinned = lock["packages"]["node_modules/socket.io-client"]["version"]
    pages = sorted(REPO_ROOT.glob("chapters/**/templates/*.html"))
    versions = {
        str(p.relative_to(REPO_ROOT)): re.findall(r"cdn\.socket\.io/([\d.]+)/", p.read_text()) for p in pages
    }
    assert pages and all(found == [pinned] for found in versions.values()), (pinned, versions)


# Lesson first: sizes a reader can take in one pass, like the examples learners compare us with
# (Flask-SocketIO's example/app.py: 126 lines, first handler at line 34).
SIZES = {
    "chapters/01_basic_chat/app.py": (200, 120),
    "chapters/02_async_modes/app.py": (330, None),
    "chapters/03_redis_scaling/app.py": (330, None),
    "chapters/04_nginx_lb/app.py": (330, None),
}


@pytest.mark.parametrize("path", SIZES, ids=[Path(p).parts[1] for p in SIZES])
def test_a_chapter_app_reads_in_one_pass(path):
    """Each chapter's app.py stays within its line budget; chapter 01 reaches its first handler early."""
    most_lines, first_handler_before = SIZES[path]
    lines = (REPO_ROOT / path).read_text().splitlines()
    assert len(lines) <= most_lines
    if first_handler_before:
        first = next(i for i, line in enumerate(lines, 1) if line.startswith("@socketio.on("))
        assert first < first_handler_before


GUARD_NAMES = re.compile(
    r"^(def|class) (sent_by_the_client|rate_limited|close_malformed|check_packet|guard_the_edge"
    r"|accepted_origin|on_engineio_message|on_handler_error|refuse|secret|require)\b|on_error_default",
    re.M,
)


@pytest.mark.parametrize(
    "path",
    [*SOURCES, *sorted(REPO_ROOT.glob("recipes/**/*.py"))],
    ids=lambda path: str(path.relative_to(REPO_ROOT)),
)
def test_no_chapter_twin_or_recipe_defines_a_guard_of_its_own(path):
    """The guards live in flask-socketio-guard, imported like Flask-SocketIO itself; none is copied in."""
    assert GUARD_NAMES.findall(path.read_text()) == []
