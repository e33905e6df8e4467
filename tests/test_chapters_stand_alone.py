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
