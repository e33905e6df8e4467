"""Each chapter's topology: what the demo server and the bench start for it."""

from __future__ import annotations

from dataclasses import dataclass, field

from lab.apps import start_apps
from lab.celery_workers import CHAPTER05, start_beat, start_worker
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
    # Celery: how many workers of which app module (`celery -A`), and whether beat runs too.
    workers: int = 0
    worker_app: str = str(CHAPTER05 / "make_celery.py")
    beat: bool = False


@dataclass(frozen=True)
class Chapter:
    number: str
    title: str
    correct: Topology
    # Each broken twin, by the label its processes are named after: ("antipattern", Topology(...)).
    antipatterns: tuple[tuple[str, Topology], ...] = ()
    # What to try in the two browsers, printed by `python -m lab.serve`.
    demo: str = ""


def twin(script: str, **options) -> tuple[tuple[str, Topology]]:
    """A chapter's one antipattern."""
    return (("antipattern", Topology(script, **options)),)


# Chapter 05's processes share one signing key, so a token from one instance opens them all.
CELERY_ENV = {"SECRET_KEY": "serve-05", "STEP_SECONDS": "0.5"}

CHAPTERS: dict[str, Chapter] = {
    "01": Chapter(
        "01",
        "basic chat",
        correct=Topology("chapters/01_basic_chat/app.py"),
        antipatterns=twin("antipatterns/01_broadcast_to_everyone.py"),
        demo=(
            "Open each URL in two windows; join room 'a' in one window and 'b' in the other.\n"
            "On the chapter app a message stays in its room; on the antipattern it leaks into both."
        ),
    ),
    "02": Chapter(
        "02",
        "async modes",
        correct=Topology("chapters/02_async_modes/run_gevent.py"),
        antipatterns=twin("antipatterns/02_blocking_sleep.py"),
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
        antipatterns=twin("antipatterns/03_no_message_queue.py", instances=2, needs_redis=True),
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
        antipatterns=twin(
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
    "05": Chapter(
        "05",
        "Celery",
        correct=Topology(
            "chapters/05_celery/app.py", instances=2, needs_redis=True, env=CELERY_ENV, workers=2, beat=True
        ),
        antipatterns=(
            (
                "no-queue",
                Topology(
                    "chapters/05_celery/app.py",
                    instances=1,
                    needs_redis=True,
                    env=CELERY_ENV,
                    workers=1,
                    worker_app="antipatterns/05_worker_without_queue.py",
                    beat=True,
                ),
            ),
            (
                "emit-to-sid",
                Topology(
                    "antipatterns/05_emit_to_sid.py",
                    instances=2,
                    needs_redis=True,
                    env=CELERY_ENV,
                    workers=1,
                    beat=True,
                ),
            ),
            (
                "duplicates",
                Topology(
                    "antipatterns/05_duplicate_background_tasks.py",
                    instances=2,
                    needs_redis=True,
                    env=CELERY_ENV,
                ),
            ),
        ),
        demo=(
            "Log in on chapter-1 and start a report: the bar moves to done. Log in as the same\n"
            "user on chapter-2: the same task's events reach that page too; another user sees none.\n"
            "no-queue-1: the bar never moves, though the worker's log says the task succeeded.\n"
            "emit-to-sid-1: start a report, then reload the page and log in again mid-task: the\n"
            "result never comes. duplicates-1 and -2: the dashboard shows figures from both\n"
            "instances, two a second, where the chapter shows one from celery beat."
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
    its balancer, <prefix>-nginx (or -haproxy), which comes first in the list returned, and its
    Celery workers and beat, which come last."""
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
    workers = [
        start_worker(bench, topology.worker_app, name=f"{prefix}-worker-{i}", env=env)
        for i in range(1, topology.workers + 1)
    ]
    if topology.beat:
        workers.append(start_beat(bench, topology.worker_app, name=f"{prefix}-beat", env=env))
    if topology.balancer is None:
        return [*instances, *workers]
    kind, config = topology.balancer
    port = first_port + BALANCER_PORT_OFFSET if first_port else None
    balancer = BALANCERS[kind](bench, config, instances, name=f"{prefix}-{kind}", port=port)
    return [balancer, *instances, *workers]
