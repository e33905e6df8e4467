"""Chapter 06's drills: the chapter and chapter 04 (the baseline) through the same faults.

Each side runs as a reader runs it: a durable Redis (`appendfsync always`), two instances,
chapter 04's nginx.conf in front. The chapter's clients are lab.delivery.ReliableClient (the
page's rule, in Python); the baseline's are PlainClient (chapter 04's page). Receivers leave from
addresses of their own until both instances hold some of them, so a fault on one instance, or on
the queue between them, has someone to hurt.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis

from lab.apps import start_app
from lab.clients import address_of_user
from lab.delivery import PlainClient, ReliableClient, Sender, seq_of, tally
from lab.nginx import start_nginx
from lab.processes import LabBench, Service, wait_until
from lab.redis_server import start_redis

CHAPTER = "chapters/06_delivery_guarantees/app.py"
NGINX = "chapters/04_nginx_lb/nginx.conf"
ROOM = "drill"
RECEIVERS_PER_INSTANCE = 2
MAX_RECEIVERS = 24  # a bound on the addresses tried until both instances hold enough


@dataclass(frozen=True)
class Side:
    script: str
    client: type[ReliableClient] | type[PlainClient]
    with_ids: bool  # the chapter's messages carry an id it stores them under once


SIDES = {
    "chapter06": Side(CHAPTER, ReliableClient, True),
    "chapter04": Side("chapters/04_nginx_lb/app.py", PlainClient, False),
}


@dataclass
class Deployment:
    """Redis, the instances, and nginx in front of them: what a reader starts by hand."""

    bench: LabBench
    redis: Service
    instances: list[Service]
    proxy: Service

    @property
    def url(self) -> str:
        return self.proxy.url


@pytest.fixture
def deploy(bench):
    """Start Redis (`durable`: with its append-only file, as the README runs it), `instances`
    instances of `script` and nginx with chapter 04's nginx.conf in front of them."""

    def start(script: str = CHAPTER, *, instances: int = 2, durable: bool = False, **env: str) -> Deployment:
        store = start_redis(bench, name="redis", durable=durable)
        settings = {"REDIS_URL": store.url, **env}
        apps = [start_app(bench, script, name=f"chat-{i}", env=settings) for i in range(1, instances + 1)]
        return Deployment(bench, store, apps, start_nginx(bench, NGINX, apps, name="nginx"))

    return start


@dataclass
class Drill(Deployment):
    side: Side
    make: Callable[..., Any]
    receivers: list = field(default_factory=list)
    sender: Sender | None = None

    def on(self, client) -> str:
        return client.received("welcome")[-1]["instance"]

    def instance(self, name: str) -> Service:
        return next(s for s in self.instances if s.name == name)

    def connect_everyone(self) -> None:
        """A sender, then receivers from new addresses until each instance holds enough of them."""
        sender = self.make("sender", kind=self.side.client, source=address_of_user(0)).start(self.url, [ROOM])
        self.sender = Sender(sender, ROOM, with_ids=self.side.with_ids)
        for i in range(1, MAX_RECEIVERS + 1):
            client = self.make(f"r{i:02d}", kind=self.side.client, source=address_of_user(i))
            self.receivers.append(client.start(self.url, [ROOM]))
            per_instance = Counter(self.on(r) for r in self.receivers)
            enough = min(per_instance.values()) >= RECEIVERS_PER_INSTANCE
            if len(per_instance) == len(self.instances) and enough:
                return
        raise AssertionError(f"nginx put {MAX_RECEIVERS} addresses on too few instances: {per_instance}")

    def keys(self, client) -> list:
        """What `client` showed of the room: numbers (the chapter) or texts (the baseline)."""
        return client.shown(ROOM)

    def expected(self) -> list:
        return [seq_of(i) for i in self.sender.acked] if self.side.with_ids else list(self.sender.texts)

    def send(self, count: int, label: str) -> None:
        for n in range(count):
            self.sender.send(f"{label} {n}")

    def barrier(self, timeout: float = 15) -> None:
        """A last message, after the fault: once every receiver shows it, the tally is final.

        The chapter's receivers show it only once they show everything before it.
        """
        self.sender.send("last")
        last = self.expected()[-1]
        for client in self.receivers:
            shows = f"{client.label} shows {last!r}"
            wait_until(lambda c=client: last in self.keys(c), timeout=timeout, what=shows)

    def subscribed(self) -> bool:
        """Every instance is listening on the queue again (after a Redis restart)."""
        try:
            counts = redis.Redis.from_url(self.redis.url).pubsub_numsub("flask-socketio")
        except redis.RedisError:
            return False
        return dict(counts).get(b"flask-socketio", 0) >= len(self.instances)

    def record(self, record_property, **extra: int) -> list:
        """Tally every receiver; record the sums (bench 06 keeps them for the chapter page)."""
        tallies = [tally(self.keys(c), self.expected()) for c in self.receivers]
        figures = {
            "clients": len(tallies),
            "messages": len(self.expected()),
            "lost": sum(t.lost for t in tallies),
            "shown_twice": sum(t.shown_twice for t in tallies),
            "out_of_order": sum(t.out_of_order for t in tallies),
            **extra,
        }
        for key, value in figures.items():
            record_property(key, value)
        print(f"\n{self.side.script}: {figures}")
        return tallies


@pytest.fixture(params=list(SIDES))
def drill(request, deploy, clients):
    """One side, started: durable Redis, two instances, nginx; receivers and a sender in room 'drill'.

    Its clients come from the `clients` fixture, which disconnects them after the bench has
    stopped the servers (the teardown order tests/conftest.py explains).
    """

    def start(**env: str) -> Drill:
        side = SIDES[request.param]
        settings = {"EVENTS_PER_SECOND": "1000", "HEARTBEAT_SECONDS": "0.5", **env}
        started = deploy(side.script, durable=True, **settings)
        deployed = Drill(started.bench, started.redis, started.instances, started.proxy, side, clients)
        deployed.connect_everyone()
        return deployed

    return start
