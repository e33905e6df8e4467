"""The front door: `nox --list` shows every session.

nox                      lint, docs and every test (what CI runs)
nox -s chapter01         one chapter's tests, with a summary of what they proved
nox -s serve -- 01       serve a chapter and its antipattern to your browser
nox -s bench -- 02       the load bench (slow; writes docs/bench/*.json and plots)
nox -s fuzz              every app against bad input (FUZZ_SCALE=10 searches ten times longer)
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nox

nox.needs_version = ">=2024.3.2"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "docs", "tests"]
nox.options.reuse_venv = "yes"

ROOT = Path(__file__).parent
JS_CLIENT = ROOT / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"


def _install_js(session: nox.Session) -> None:
    """Install the pinned Socket.IO JS client from npm, once, so pages work offline."""
    if JS_CLIENT.exists():
        return
    if shutil.which("npm"):
        session.run("npm", "ci", "--no-audit", "--no-fund", external=True)
    else:
        session.warn(
            "npm not found (install it with: sudo apt-get install npm). "
            "Pages will load the Socket.IO client from a CDN, which needs internet."
        )


def _install_tests(session: nox.Session) -> None:
    session.install("-r", "requirements/tests.txt")
    _install_js(session)


def _pytest(session: nox.Session, *paths: str) -> None:
    """Run pytest on `paths` with the house flags; extra arguments after `--` pass through."""
    _install_tests(session)
    session.run("pytest", *paths, *session.posargs)


@nox.session(default=False)
def chapter01(session: nox.Session) -> None:
    """Chapter 01: rooms stay apart, bad payloads get an error, and the antipattern leaks."""
    _pytest(session, "tests/chapter01")


@nox.session(default=False)
def chapter02(session: nox.Session) -> None:
    """Chapter 02: each async mode keeps other clients responsive; the blocking antipatterns stall them."""
    _pytest(session, "tests/chapter02")


@nox.session(default=False)
def chapter03(session: nox.Session) -> None:
    """Chapter 03: instances sharing a Redis queue reach every client; without it, half miss out."""
    _pytest(session, "tests/chapter03")


@nox.session(default=False)
def chapter04(session: nox.Session) -> None:
    """Chapter 04: nginx and HAProxy keep each session on one instance; round-robin breaks polling."""
    _pytest(session, "tests/chapter04")


@nox.session(default=False)
def chapter05(session: nox.Session) -> None:
    """Chapter 05: Celery tasks report to the user who asked, once; the twins lose results or double them."""
    _pytest(session, "tests/chapter05")


@nox.session(default=False)
def fuzz(session: nox.Session) -> None:
    """Every app against bad payloads and garbage frames from Hypothesis: a reason or a closed connection.

    The default run is deterministic (derandomized, no example database) and part of
    `nox -s tests`. FUZZ_SCALE=10 nox -s fuzz searches longer; FUZZ_SHRINK=1 shrinks a
    failing input to its smallest form (slow when the input hangs the server).
    """
    _pytest(session, "tests/fuzz")


@nox.session
def tests(session: nox.Session) -> None:
    """Every test: all chapters, their antipatterns, and the lab bench itself."""
    _pytest(session, "tests")


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff: lint and formatting."""
    session.install("-r", "requirements/lint.txt")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the site with `mkdocs build --strict`: a missing snippet or link fails."""
    session.install("-r", "requirements/docs.txt")
    # mkdocs-material prints a long notice about MkDocs 2.0 on every build; it is not ours to act on.
    session.run("mkdocs", "build", "--strict", *session.posargs, env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """The load bench (slow): nox -s bench -- 02 writes docs/bench/*.json and the plots the docs show."""
    _install_tests(session)
    session.run("python", "-m", "bench", *session.posargs)


@nox.session(default=False)
def serve(session: nox.Session) -> None:
    """Serve a chapter and its antipattern for two browsers until Ctrl-C: nox -s serve -- 01."""
    _install_tests(session)
    session.run("python", "-m", "lab.serve", *(session.posargs or ["01"]))
