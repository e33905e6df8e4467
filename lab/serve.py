"""Serve one chapter beside every twin, with a control room page, until Ctrl-C.

    python -m lab.serve 03                      # the control room on :5500, every side on fixed ports
    python -m lab.serve 04 --twin round-robin   # the chapter and one twin
    python -m lab.serve 03 --port 0             # OS-assigned ports (tests, or when 5000 is taken)
    python -m lab.serve 01 --host 0.0.0.0       # phones on this network open the pages too
    python -m lab.serve 04 --hosts              # each process on a host of its own (root, Linux)

Side k (0 the chapter, then each twin in order) listens on 5000 + 100 k and up, the same
ports as each chapter's by-hand instructions (lab.chapters.Ports). Runs in the foreground and
owns every process it starts: Ctrl-C (or SIGTERM) stops them all, process trees included.
Logs go to .lab/serve-NN/. The control room stays on loopback whatever --host says.
"""

from __future__ import annotations

import argparse
import ipaddress
import shutil
import signal
import socket
import sys
from pathlib import Path

from lab import netns
from lab.chapters import CHAPTERS, Chapter, Ports, start_topology
from lab.control import PROBES, Actions, ControlRoom, Side, kind_of, serve_control_room
from lab.deps import MissingDependency
from lab.hosts import Network
from lab.processes import REPO_ROOT, LabBench, Service, ServiceFailed

CONTROL_ROOM_PORT = 5500
# Its buttons stop and kill processes: only the machine running the demo reaches it.
CONTROL_ROOM_HOST = "127.0.0.1"
# A private address to route towards: connect() on a UDP socket only picks the route, and with
# it the address this machine would answer from; it sends nothing.
ROUTE_PROBE = ("10.254.254.254", 9)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.serve", description=__doc__.splitlines()[0])
    parser.add_argument("chapter", choices=sorted(CHAPTERS), help="chapter number")
    parser.add_argument(
        "--port", type=int, default=5000, help="the chapter's first port (0: let the OS choose)"
    )
    parser.add_argument(
        "--twin", action="append", default=None, metavar="NAME", help="show only this twin (repeatable)"
    )
    parser.add_argument("--control-port", type=int, default=CONTROL_ROOM_PORT, help="the control room's port")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="where the chapter's pages listen (default loopback; 0.0.0.0: phones on this network too)",
    )
    parser.add_argument("--log-dir", help="where the logs go (default .lab/serve-NN, emptied first)")
    parser.add_argument(
        "--hosts",
        action="store_true",
        help="each process on a host of its own, on a lab network (Linux, root): cut them from Redis",
    )
    args = parser.parse_args(argv)
    chapter = CHAPTERS[args.chapter]
    if args.hosts and not chapter.on_hosts:
        with_hosts = ", ".join(number for number, c in CHAPTERS.items() if c.on_hosts)
        parser.error(f"chapter {chapter.number} has no demo on hosts; {with_hosts} has")
    if args.hosts and (reason := netns.unavailable()):
        parser.error(f"--hosts: the lab's hosts are network namespaces: {reason}")
    twins = [label for label, _ in (chapter.on_hosts[1:] if args.hosts else chapter.antipatterns)]
    unknown = set(args.twin or ()) - set(twins)
    if unknown:
        parser.error(
            f"chapter {chapter.number} has no twin {', '.join(sorted(unknown))}: it has {', '.join(twins)}"
        )

    try:
        phones = phone_address(args.host)
    except ValueError:
        parser.error(f"--host takes an IPv4 address (0.0.0.0: every one) or localhost, not {args.host!r}")

    if not (REPO_ROOT / "node_modules" / "socket.io-client").exists():
        print("warning: the Socket.IO JS client is not installed (run `npm ci`); pages will use a CDN.")

    # SIGTERM ends the demo like Ctrl-C does, so `with LabBench` always cleans up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    log_dir = Path(args.log_dir) if args.log_dir else REPO_ROOT / ".lab" / f"serve-{chapter.number}"
    shutil.rmtree(log_dir, ignore_errors=True)
    try:
        with LabBench(log_dir) as bench:
            print(f"Chapter {chapter.number}: {chapter.title}")
            network = Network(bench, name="serve") if args.hosts else None
            sides = start_sides(bench, chapter, args.port, args.twin, args.host, phones, network)
            actions = Actions()
            # python-engineio's clients (the probes) take over SIGINT to disconnect each in turn,
            # about 3 s apiece; the room disconnects them all at once instead (room.close()).
            signal.signal(signal.SIGINT, signal.default_int_handler)
            room = ControlRoom(bench, chapter, sides, actions, network)
            server = serve_control_room(room, CONTROL_ROOM_HOST, args.control_port)
            for side in sides:
                if side.probe:
                    side.probe.start()
            demo = chapter.hosts_demo if network else chapter.demo
            if demo:
                print("\n" + demo)
            print(f"\nControl room: http://{CONTROL_ROOM_HOST}:{server.server_address[1]}/")
            if phones:
                print(f"Phones on this network: the addresses after 'phones:' (the apps trust {phones} too).")
            elif not is_loopback(args.host):
                print("warning: this machine has no network but loopback: no phone can reach its pages.")
            print(f"Logs: {log_dir}\nPress Ctrl-C to stop everything.", flush=True)
            try:
                _watch(bench, actions)
            finally:
                room.close()  # its clients go first, while their servers still answer
    except KeyboardInterrupt:
        print("\nStopped; every process is gone.")
    except (MissingDependency, ServiceFailed) as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    except OSError as problem:  # the control room's port is taken
        print(f"error: {problem}; pick another with --control-port (0: any free port)", file=sys.stderr)
        return 1
    return 0


def is_loopback(host: str) -> bool:
    return host == "localhost" or ipaddress.IPv4Address(host).is_loopback


def phone_address(host: str) -> str | None:
    """The address a phone in the room opens to reach pages served on `host`: `host` itself, or
    for 0.0.0.0 (every address) the one this machine's route to a private network leaves from.
    None on loopback, or when the machine has no such route (no network but loopback)."""
    if is_loopback(host):
        return None
    if not ipaddress.IPv4Address(host).is_unspecified:
        return host
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        try:
            udp.connect(ROUTE_PROBE)
        except OSError:  # no route there: nothing but loopback
            return None
        return udp.getsockname()[0]


def start_sides(
    bench: LabBench,
    chapter: Chapter,
    first_port: int,
    only: list[str] | None,
    host: str = "127.0.0.1",
    phones: str | None = None,
    network: Network | None = None,
) -> list[Side]:
    """Start the chapter and its twins (all, or those named), each on its fixed ports; each
    side's pages listen on `host`, and answer to the name `phones` too. With `network`, the
    chapter's sides on hosts (`Chapter.on_hosts`), each process on a host of its own."""
    sides = []
    for k, (label, topology) in enumerate(chapter.on_hosts if network else chapter.sides):
        if k and only and label not in only:
            continue  # a twin's ports stay its own whether or not the others run
        ports = Ports.of_side(k, first_port) if first_port else None
        services = start_topology(
            bench, topology, prefix=label, ports=ports, host=host, lan_address=phones, network=network
        )
        names = [service.name for service in services]
        if topology.needs_redis:
            names.insert(0, f"{label}-redis")
        balancer = next((s for s in services if kind_of(s.name) == "balancer"), None)
        instances = [s for s in services if kind_of(s.name) == "instance"]
        # Two pages through one balancer, as two users; else one page per instance.
        entries = [balancer.url] * 2 if balancer else [s.url for s in instances]
        for service in services:
            where = f"{service.url}/" if service.url else f"(log: {service.log_path.name})"
            if phones and service.url in entries:
                where += f"  phones: http://{phones}:{service.port}/"
            if topology.never_ready and kind_of(service.name) == "instance":
                where += "  (never listens, on purpose: see its log)"
            print(f"  {label:<18} {service.name:<24} {where}", flush=True)
        # Behind a balancer the probes stay on long-polling, a browser's first seconds: each
        # request is routed afresh, so a balancer that is not sticky shows, every time. (Upgraded
        # at once, python's client would sometimes land its websocket on the right instance.)
        probe = PROBES[chapter.number](label, entries, transport="polling" if balancer else "websocket")
        sides.append(Side(label, topology, names, entries, probe))
    return sides


def _watch(bench: LabBench, actions: Actions) -> None:
    """Run the control room's actions on this thread, and report each process that dies (a crash,
    or one stopped from the control room) once; the rest keep serving until Ctrl-C."""
    reported: set[tuple[str, int]] = set()
    while True:
        actions.run_pending(wait=0.5)
        dead: list[Service] = [s for s in bench.services if not s.alive() and (s.name, s.pid) not in reported]
        for service in dead:
            reported.add((service.name, service.pid))
            print(f"  {service.name} stopped (log: {service.log_path}); the rest go on", flush=True)


if __name__ == "__main__":
    sys.exit(main())
