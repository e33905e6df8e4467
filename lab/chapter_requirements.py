"""Each chapter folder's requirements.txt: what it needs, pinned exactly as the tests ran it.

    python -m lab.chapter_requirements           # write every chapter's requirements.txt
    python -m lab.chapter_requirements --check   # exit 1 if one is not what it would write

A folder copied out of the repository installs from its own requirements.txt. Each file is the
closure of the folder's direct needs (NEEDS) within requirements/tests.txt, the lock the suite
installs: every version is the one the tests ran, transitive ones included, read from the lock's
`# via` lines, so no resolver and no network are needed. The guard extension is named by its
version: it is not on PyPI, so a reader installs it from its folder (or the offline kit) beside.

Standard library only.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

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
    "recipes/auth_on_connect": SERVER,
}
PIN = re.compile(r"^([A-Za-z0-9._-]+)==(\S+)\s*(?:#\s*via\s+(.*))?$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins(lock: Path = LOCK) -> dict[str, tuple[str, set[str]]]:
    """name -> (version, the names that need it) for every pin of the lock."""
    pins = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        if match := PIN.match(line.strip()):
            name, version, via = match.groups()
            parents = {
                canonical(p.strip())
                for p in (via or "").split(",")
                if p.strip() and not p.strip().startswith("-r")
            }
            pins[canonical(name)] = (version, parents)
    return pins


def closure(direct: list[str], pins: dict[str, tuple[str, set[str]]]) -> list[str]:
    """The direct names and everything the lock says they need, to the end."""
    wanted = {canonical(name) for name in direct}
    missing = wanted - pins.keys()
    if missing:
        raise KeyError(f"not in {LOCK.name}: {', '.join(sorted(missing))}")
    while True:
        more = {name for name, (_, parents) in pins.items() if parents & wanted} - wanted
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
        *(f"{name}=={pins[name][0]}" for name in closure(NEEDS[folder], pins)),
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
