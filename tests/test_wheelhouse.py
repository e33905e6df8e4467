"""The offline kit (`nox -s wheelhouse`, lab/wheelhouse.py): built once, then installed from with the
network really off.

"Off" is a new network namespace (`unshare --net`): its only interface is loopback, and it is down.
Nothing from this machine's own pip or uv configuration or caches is let in either, so what
installs came from the kit. With WHEELHOUSE set (a room with no internet), the tests use that kit
instead of building one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from lab import MissingDependency
from lab.deps import INSTALL_HINTS
from lab.wheelhouse import NPM_CACHE, RUNNER, WHEELS, pins

ROOT = Path(__file__).resolve().parent.parent
# Downloading every wheel of requirements/tests.txt takes a minute on a fast line, more on a slow one.
pytestmark = pytest.mark.timeout(900)


def run(argv: list, **options) -> subprocess.CompletedProcess:
    """Run `argv` to completion; a failure shows its output."""
    done = subprocess.run([str(arg) for arg in argv], capture_output=True, text=True, **options)
    assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def offline() -> list[str]:
    """The prefix that runs a command in a new network namespace; proven to hold loopback alone."""
    unshare = shutil.which("unshare")
    if unshare is None or not sys.platform.startswith("linux"):
        raise MissingDependency(
            "unshare (Linux only) is not on PATH. Install it with: sudo apt-get install util-linux"
        )
    # As root, a plain network namespace; otherwise inside a user namespace, where the kernel allows it.
    for prefix in ([unshare, "--net"], [unshare, "--user", "--map-root-user", "--net"]):
        probe = subprocess.run([*prefix, "cat", "/proc/net/dev"], capture_output=True, text=True)
        if probe.returncode == 0:
            interfaces = {line.split(":")[0].strip() for line in probe.stdout.splitlines()[2:]}
            assert interfaces == {"lo"}, f"the namespace has a way out: {interfaces}"
            return prefix
    raise MissingDependency(
        "unshare --net needs root or unprivileged user namespaces. "
        "Install it with: run the tests as root, or sudo sysctl kernel.unprivileged_userns_clone=1"
    )


@pytest.fixture(scope="module")
def nox() -> str:
    """The nox on PATH, which builds the kit and installs from it."""
    path = shutil.which("nox")
    if path is None:
        raise MissingDependency(
            f"nox is not on PATH. Install it with: python3 -m pip install {' '.join(RUNNER)}"
        )
    return path


@pytest.fixture(scope="module")
def kit(tmp_path_factory, nox) -> Path:
    """A kit of requirements/tests.txt and the npm cache from `nox -s wheelhouse` (or WHEELHOUSE's kit)."""
    if os.environ.get("WHEELHOUSE"):
        return Path(os.environ["WHEELHOUSE"]).resolve()
    work = tmp_path_factory.mktemp("wheelhouse")
    kit = work / "kit"
    # The session's venv is of this test's Python, so the wheels are for it; none of it in the repo's .nox.
    session = ["--envdir", work / "nox", "--force-python", sys.executable, "-s", "wheelhouse"]
    locks = [
        arg
        for name in ("tests", "build")
        for arg in ("--requirements", ROOT / "requirements" / f"{name}.txt")
    ]
    only = [*locks, "--no-runner", "--no-site"]
    run([nox, "-f", ROOT / "noxfile.py", *session, "--", kit, *only])
    return kit


def kit_only_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This environment without pip's, uv's or npm's own settings, and with an empty uv cache."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("PIP_", "UV_", "NPM_CONFIG_"))}
    (tmp_path / "npmrc").write_text("")
    env |= {
        "PIP_CONFIG_FILE": os.devnull,
        "UV_NO_CONFIG": "1",
        "UV_CACHE_DIR": str(tmp_path / "uv-cache"),
        "NPM_CONFIG_USERCONFIG": str(tmp_path / "npmrc"),
    }
    return env | extra


def test_nox_installs_the_test_requirements_from_the_kit_with_no_network(offline, nox, kit, tmp_path):
    """With WHEELHOUSE set and no network, nox fills a fresh venv from the kit, and the chapters import."""
    env = kit_only_env(tmp_path, WHEELHOUSE=str(kit))

    # nox makes a venv of this test's Python (the kit's wheels are for it) and installs into it only.
    noxfile, envdir = ROOT / "noxfile.py", tmp_path / "nox"
    session = ["-s", "chapter01", "--install-only", "--force-python", sys.executable]
    installed = run([*offline, nox, "-f", noxfile, "--envdir", envdir, *session], env=env)
    assert f"--no-index --find-links {kit / WHEELS}" in installed.stderr

    # The venv's Python imports what the chapters run on, still with no network.
    python = next(envdir.glob("*/bin/python"))  # nox names a long venv path by its hash
    run([*offline, python, "-c", "import flask_socketio, flask_socketio_guard, gevent, celery"], env=env)


def test_npm_installs_the_socketio_client_from_the_kit_with_no_network(offline, kit, tmp_path):
    """`npm ci --offline` from the kit's npm cache, with no network, installs the pinned Socket.IO client."""
    npm = shutil.which("npm")
    if npm is None:
        raise MissingDependency(f"npm is not on PATH. Install it with: {INSTALL_HINTS['npm']}")
    project = tmp_path / "project"
    project.mkdir()
    for name in ("package.json", "package-lock.json"):
        shutil.copy(ROOT / name, project)

    # Logs go here, not into the kit.
    options = [
        "--offline",
        "--cache",
        kit / NPM_CACHE,
        "--logs-dir",
        tmp_path / "npm-logs",
        "--no-audit",
        "--no-fund",
    ]
    run([*offline, npm, "ci", *options], cwd=project, env=kit_only_env(tmp_path))

    assert (project / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js").is_file()


def test_the_kit_readme_gives_the_offline_commands(kit):
    """The kit's README.txt tells an attendee the exact commands that install from it."""
    readme = (kit / "README.txt").read_text(encoding="utf-8")

    assert "export WHEELHOUSE=" in readme
    assert f'--no-index --find-links "$WHEELHOUSE/wheels" {" ".join(RUNNER)}' in readme
    assert 'npm ci --offline --cache "$WHEELHOUSE/npm-cache"' in readme


def test_the_kit_builds_the_guard_with_the_backend_its_pyproject_pins():
    """requirements/build.txt, which the kit carries, pins the build backend flask-socketio-guard names."""
    pyproject = tomllib.loads((ROOT / "flask-socketio-guard" / "pyproject.toml").read_text(encoding="utf-8"))
    [backend] = pyproject["build-system"]["requires"]
    assert pins(ROOT / "requirements" / "build.txt") == [backend.replace("_", "-")]


def test_the_kit_carries_the_nox_and_uv_that_ci_installs():
    """The kit's nox and uv are the versions CI installs (.ci/install, which .ci/run calls)."""
    ci = (ROOT / ".ci" / "install").read_text(encoding="utf-8")

    assert sorted(re.findall(r"\b(?:nox|uv)==\S+", ci)) == sorted(RUNNER)
