"""Each chapter's topology: what the demo server and the bench start for it."""

from __future__ import annotations

from dataclasses import dataclass, field

from lab.apps import start_app
from lab.processes import LabBench, Service
from lab.redis_server import start_redis


@dataclass(frozen=True)
class Topology:
    """One side of a chapter (the correct app or its antipattern): which script, how many instances."""

    script: str
    instances: int = 1
    needs_redis: bool = False
    env: dict[str, str] = field(default_factory=dict)


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
}


def start_topology(
    bench: LabBench, topology: Topology, *, prefix: str, first_port: int | None = None
) -> list[Service]:
    """Start Redis if the topology needs it, then its app instances, named <prefix>-1 ... <prefix>-N."""
    env = dict(topology.env)
    if topology.needs_redis:
        redis = start_redis(bench, name=f"{prefix}-redis")
        env["REDIS_URL"] = redis.url
    return [
        start_app(
            bench,
            topology.script,
            name=f"{prefix}-{i}",
            env=env,
            port=first_port + i - 1 if first_port else None,
        )
        for i in range(1, topology.instances + 1)
    ]
