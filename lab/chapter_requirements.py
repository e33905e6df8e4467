"""Each chapter folder's requirements.txt: what it needs, pinned exactly as the tests ran it.

    python -m lab.chapter_requirements           # write every chapter's requirements.txt
    python -m lab.chapter_requirements --check   # exit 1 if one is not what it would write

A folder copied out of the repository installs from its own requirements.txt. Each file is the
closure of the folder's direct needs (NEEDS) within requirements/tests.txt, the lock the suite
installs: every version is the one the tests ran, transitive ones included, read from the lock's
`# via` lines, so no resolver and no network are needed. A pin the lock holds under a marker (it is
compiled for every platform: `; sys_platform == 'win32'`) keeps it, so pip installs it where the
lock would. The guard extension is named by its
version: it is not on PyPI, so a reader installs it from its folder (or the offline kit) beside.

Standard library only.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "tests.txt"
GUARD = ROOT / "flask-socketio-guard"

# What each folder imports, by distribution name; flask-socketio-guard is added to each.
SERVER = ["flask", "flask-socketio", "python-socketio", "python-engineio", "simple-websocket"]
NEEDS = {
    "chapters/01_basic_chat": SERVER,
    "chapters/02_async_modes": [*SERVER, "gevent", "eventlet", "gunicorn"],
    "chapters/03_redis_scaling": [*SERVER, "gevent", "redis"],
    "chapters/04_nginx_lb": [*SERVER, "gevent", "redis", "gunicorn"],
    "chapters/05_celery": [*SERVER, "gevent", "redis", "celery"],
    "chapters/06_delivery_guarantees": [*SERVER, "gevent", "redis"],
    "recipes/auth_on_connect": SERVER,
}
# A lock line: `name==version`, then `; marker` when only some platforms or Pythons need it, then
# `# via` and what needs it.
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;#]+)\s*(?:;\s*([^#]*?))?\s*(?:#\s*via\s+(.*))?$")


class Pin(NamedTuple):
    version: str
    parents: set[str]  # the names that need it
    marker: str  # empty when every platform needs it


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins(lock: Path = LOCK) -> dict[str, Pin]:
    """name -> Pin for every pin of the lock; a line that is neither a pin nor a comment is an error,
    so that no pin is left out of a chapter unsaid."""
    pins = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = PIN.match(line.strip())
        if not match:
            raise ValueError(f"{lock.name}: not a pin this script reads: {line.strip()}")
        name, version, marker, via = match.groups()
        parents = {
            canonical(p.strip())
            for p in (via or "").split(",")
            if p.strip() and not p.strip().startswith("-r")
        }
        pins[canonical(name)] = Pin(version, parents, marker or "")
    return pins


def requirement(name: str, pin: Pin) -> str:
    """The line a chapter's requirements.txt pins `name` with: its lock's version and marker."""
    return f"{name}=={pin.version} ; {pin.marker}" if pin.marker else f"{name}=={pin.version}"


def closure(direct: list[str], pins: dict[str, Pin]) -> list[str]:
    """The direct names and everything the lock says they need, to the end."""
    wanted = {canonical(name) for name in direct}
    missing = wanted - pins.keys()
    if missing:
        raise KeyError(f"not in {LOCK.name}: {', '.join(sorted(missing))}")
    while True:
        more = {name for name, pin in pins.items() if pin.parents & wanted} - wanted
        if not more:
            return sorted(wanted)
        wanted |= more


def guard_version() -> str:
    init = (GUARD / "src" / "flask_socketio_guard" / "__init__.py").read_text(encoding="utf-8")
    return re.search(r'^__version__ = "([^"]+)"', init, re.M).group(1)


def render(folder: str) -> str:
    pins = lock_pins()
    lines = [
        f"# {folder}: what it runs on, pinned as the cookbook's tests ran it.",
        "# Written by `python -m lab.chapter_requirements` from requirements/tests.txt: do not edit.",
        "# flask-socketio-guard, the guard extension, is not on PyPI: install it from its folder beside.",
        "# From the repository root:",
        f"#   pip install -r {folder}/requirements.txt ./flask-socketio-guard",
        "# Copied out: pip install -r requirements.txt /path/to/flask-socketio-guard",
        "# Offline, from the workshop kit:",
        '#   pip install --no-index --find-links "$WHEELHOUSE/wheels" -r requirements.txt',
        *(requirement(name, pins[name]) for name in closure(NEEDS[folder], pins)),
        f"flask-socketio-guard=={guard_version()}",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    stale = []
    for folder in NEEDS:
        path = ROOT / folder / "requirements.txt"
        text = render(folder)
        if "--check" in argv:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path.relative_to(ROOT)))
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print("stale, rewrite with `python -m lab.chapter_requirements`:", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
