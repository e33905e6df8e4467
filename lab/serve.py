"""Serve one chapter, its correct app beside its antipatterns, until Ctrl-C.

    python -m lab.serve 01            # chapter app on :5000, antipattern on :5100 (a second on :5200...)
    python -m lab.serve 03 --port 0   # OS-assigned ports

Runs in the foreground and owns every process it starts: Ctrl-C (or SIGTERM)
stops them all, process trees included. Logs go to .lab/serve-NN/.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import time

from lab.chapters import CHAPTERS, start_topology
from lab.deps import MissingDependency
from lab.processes import REPO_ROOT, LabBench, ServiceFailed

ANTIPATTERN_PORT_OFFSET = 100


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.serve", description=__doc__.splitlines()[0])
    parser.add_argument("chapter", choices=sorted(CHAPTERS), help="chapter number")
    parser.add_argument("--port", type=int, default=5000, help="first port (0: let the OS choose)")
    args = parser.parse_args(argv)
    chapter = CHAPTERS[args.chapter]

    if not (REPO_ROOT / "node_modules" / "socket.io-client").exists():
        print("warning: the Socket.IO JS client is not installed (run `npm ci`); pages will use a CDN.")

    # SIGTERM ends the demo like Ctrl-C does, so `with LabBench` always cleans up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    log_dir = REPO_ROOT / ".lab" / f"serve-{chapter.number}"
    shutil.rmtree(log_dir, ignore_errors=True)
    try:
        with LabBench(log_dir) as bench:
            sides = [("chapter", chapter.correct, args.port or None)]
            for n, (label, topology) in enumerate(chapter.antipatterns, start=1):
                anti_port = args.port + n * ANTIPATTERN_PORT_OFFSET if args.port else None
                sides.append((label, topology, anti_port))
            print(f"Chapter {chapter.number}: {chapter.title}")
            for label, topology, first_port in sides:
                for service in start_topology(bench, topology, prefix=label, first_port=first_port):
                    where = f"{service.url}/" if service.url else f"(log: {service.log_path.name})"
                    print(f"  {label:<12} {service.name:<20} {where}", flush=True)
            if chapter.demo:
                print("\n" + chapter.demo)
            print(f"\nLogs: {log_dir}\nPress Ctrl-C to stop everything.", flush=True)
            _watch(bench)
    except KeyboardInterrupt:
        print("\nStopped; every process is gone.")
    except (MissingDependency, ServiceFailed) as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    return 0


def _watch(bench: LabBench) -> None:
    """Wait for Ctrl-C. A process that dies (a crash, or one killed to show a failover) is
    reported once and the rest keep serving; when none is left, the demo ends."""
    reported: set[str] = set()
    while True:
        dead = [service for service in bench.services if not service.alive()]
        for service in dead:
            if service.name not in reported:
                reported.add(service.name)
                print(f"  {service.name} stopped (log: {service.log_path}); the rest go on", flush=True)
        if len(dead) == len(bench.services):
            raise ServiceFailed("every process has stopped")
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
