"""A chapter reads top to bottom and runs on its own: it never imports the harness, nor another chapter."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab import chapter_requirements
from lab.apps import healthz, start_app
from lab.deps import require_binary
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
    """A chapter's or recipe's page with no local client falls back to the CDN copy package-lock.json pins."""
    lock = json.loads((REPO_ROOT / "package-lock.json").read_text())
    pinned = lock["packages"]["node_modules/socket.io-client"]["version"]
    pages = sorted(
        p for folder in ("chapters", "recipes") for p in REPO_ROOT.glob(f"{folder}/**/templates/*.html")
    )
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
    "chapters/06_delivery_guarantees/app.py": (330, None),
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


def test_each_chapter_folder_pins_its_closure_as_the_tests_ran_it():
    """Each chapter's requirements.txt is the lock's closure of what it needs: rewritten, it stays as is."""
    assert chapter_requirements.main(["--check"]) == 0


@pytest.mark.parametrize("folder", chapter_requirements.NEEDS)
def test_each_chapter_folder_pins_every_package_it_imports(folder):
    """Every third-party module a chapter folder imports comes from a distribution its requirements pin."""
    pinned = {
        chapter_requirements.canonical(line.split("==")[0])
        for line in (REPO_ROOT / folder / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    # An editable install (the guard, in the tests' venv) is found by its module's own name.
    owners = importlib.metadata.packages_distributions() | {"flask_socketio_guard": ["flask-socketio-guard"]}
    local = {p.stem for p in (REPO_ROOT / folder).rglob("*.py")} | {
        p.name for p in (REPO_ROOT / folder).iterdir()
    }
    imported = set().union(*(imported_modules(p) for p in (REPO_ROOT / folder).rglob("*.py")))
    third_party = {m for m in imported - local if m not in sys.stdlib_module_names}
    unpinned = {
        m: owners.get(m)
        for m in third_party
        if not {chapter_requirements.canonical(d) for d in owners.get(m, [])} & pinned
    }
    assert unpinned == {}


def test_a_chapter_folder_copied_out_installs_from_its_requirements_and_runs(tmp_path, bench):
    """Chapter 01 copied out, installed from its requirements.txt with nothing resolved, serves /healthz.

    --no-deps: a transitive pin missing from the file would fail the app's imports.
    """
    uv = require_binary("uv")
    folder = tmp_path / "01_basic_chat"
    shutil.copytree(REPO_ROOT / "chapters" / "01_basic_chat", folder)
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    install = [uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), "--no-deps"]
    subprocess.run(
        [*install, "-r", folder / "requirements.txt", REPO_ROOT / "flask-socketio-guard"], check=True
    )
    app = start_app(
        bench, folder / "app.py", command=lambda port: [str(venv / "bin" / "python"), str(folder / "app.py")]
    )
    assert healthz(app.url)["status"] == "ok"
