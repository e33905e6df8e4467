"""Each chapter's topology: what the demo server and the bench start for it."""

from __future__ import annotations

from dataclasses import dataclass, field

from lab.apps import start_apps
from lab.haproxy import start_haproxy
from lab.nginx import start_nginx
from lab.processes import LabBench, Service
from lab.redis_server import start_redis

BALANCERS = {"nginx": start_nginx, "haproxy": start_haproxy}
# With fixed ports, the balancer listens this far above the first instance (5080, 5180).
BALANCER_PORT_OFFSET = 80


@dataclass(frozen=True)
class Topology:
    """One side of a chapter (the correct app or its antipattern): which script, how many instances."""

    script: str
    instances: int = 1
    needs_redis: bool = False
    env: dict[str, str] = field(default_factory=dict)
    # One address in front of the instances: ("nginx" or "haproxy", its config file).
    balancer: tuple[str, str] | None = None


@dataclass(frozen=True)
class Chapter:
    number: str
    title: str
    correct: Topology
    antipattern: Topology | None = None
    # What to try in the two browsers, printed by `python -m lab.serve`.
    demo: str = ""


CHAPTERS: dict[str, Chapter] = {
    "01": Chapter(
        "01",
        "basic chat",
        correct=Topology("chapters/01_basic_chat/app.py"),
        antipattern=Topology("antipatterns/01_broadcast_to_everyone.py"),
        demo=(
            "Open each URL in two windows; join room 'a' in one window and 'b' in the other.\n"
            "On the chapter app a message stays in its room; on the antipattern it leaks into both."
        ),
    ),
    "02": Chapter(
        "02",
        "async modes",
        correct=Topology("chapters/02_async_modes/run_gevent.py"),
        antipattern=Topology("antipatterns/02_blocking_sleep.py"),
        demo=(
            "Open each URL in two windows and watch the ping readout in the second window.\n"
            "Click 'slow I/O (3 s)' in the first: on the chapter app the ping stays in milliseconds;\n"
            "on the antipattern it freezes for 3 s, for every window."
        ),
    ),
    "03": Chapter(
        "03",
        "Redis scaling",
        correct=Topology("chapters/03_redis_scaling/app.py", instances=2, needs_redis=True),
        antipattern=Topology("antipatterns/03_no_message_queue.py", instances=2),
        demo=(
            "Open chapter-1 and chapter-2 side by side, then antipattern-1 and antipattern-2.\n"
            "Broadcast from one window: on the chapter both instances get it; on the antipattern\n"
            "only the sender's instance does. The chapter pages count users across both instances."
        ),
    ),
    "04": Chapter(
        "04",
        "nginx, sticky sessions",
        correct=Topology(
            "chapters/04_nginx_lb/app.py",
            instances=3,
            needs_redis=True,
            balancer=("nginx", "chapters/04_nginx_lb/nginx.conf"),
        ),
        antipattern=Topology(
            "chapters/04_nginx_lb/app.py",
            instances=3,
            needs_redis=True,
            balancer=("nginx", "antipatterns/04_round_robin.conf"),
        ),
        demo=(
            "Open the two nginx addresses (chapter-nginx, antipattern-nginx), each in two windows.\n"
            "Behind the chapter's sticky nginx, each page names its instance and goes to websocket.\n"
            "Behind round-robin nginx, the pages flap between connected and disconnected: each\n"
            "long-poll lands on another instance (400 Invalid session). Then kill the instance a\n"
            "chapter page names (kill $(lsof -ti tcp:PORT -sTCP:LISTEN), its PORT printed above):\n"
            "the page moves to another instance and keeps chatting."
        ),
    ),
}


def start_topology(
    bench: LabBench,
    topology: Topology,
    *,
    prefix: str,
    first_port: int | None = None,
    timeout: float = 30.0,
) -> list[Service]:
    """Start Redis if the topology needs it, its app instances, named <prefix>-1 ... <prefix>-N,
    and its balancer, <prefix>-nginx (or -haproxy), which comes first in the list returned."""
    env = dict(topology.env)
    if topology.needs_redis:
        redis = start_redis(bench, name=f"{prefix}-redis")
        env["REDIS_URL"] = redis.url
    instances = start_apps(
        bench,
        topology.script,
        topology.instances,
        prefix=prefix,
        env=env,
        first_port=first_port,
        timeout=timeout,
    )
    if topology.balancer is None:
        return instances
    kind, config = topology.balancer
    port = first_port + BALANCER_PORT_OFFSET if first_port else None
    return [BALANCERS[kind](bench, config, instances, name=f"{prefix}-{kind}", port=port), *instances]
