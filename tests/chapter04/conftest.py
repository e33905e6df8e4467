"""Chapter 04's lab: Redis, three instances of the chapter app, one balancer in front of them,
and clients that reach the instances only through the balancer's one address."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from lab.apps import healthz
from lab.chapters import Topology, start_topology
from lab.clients import TRANSPORTS, RecordingClient, address_of_user, in_parallel
from lab.processes import Service

CHAPTER = "chapters/04_nginx_lb/app.py"


@dataclass(frozen=True)
class Member:
    """One client, connected through the balancer, and the instance that holds it (`welcome`)."""

    client: RecordingClient
    instance: str
    transport: str | None

    @property
    def label(self) -> str:
        return self.client.label


@dataclass
class Deployment:
    proxy: Service
    instances: list[Service]

    @property
    def url(self) -> str:
        return self.proxy.url

    def instance(self, name: str) -> Service:
        return next(s for s in self.instances if s.name == name)

    def reported_online(self) -> dict[str, int]:
        """What each instance's /healthz says the number of users online is."""
        return {s.name: healthz(s.url)["online"] for s in self.instances if s.alive()}


@pytest.fixture
def deploy(bench):
    """Start Redis, N instances of the chapter app, and nginx or HAProxy from `config` in front."""

    def start(
        config: str, *, balancer: str = "nginx", instances: int = 3, env: dict[str, str] | None = None
    ) -> Deployment:
        """`config` is the balancer's file: an nginx.conf, or a haproxy.cfg with balancer="haproxy"."""
        topology = Topology(CHAPTER, instances, needs_redis=True, env=env or {}, balancer=(balancer, config))
        proxy, *services = start_topology(bench, topology, prefix="chat")
        return Deployment(proxy, services)

    return start


@pytest.fixture
def connect_members(clients):
    """Connect clients to one URL, in parallel; each joins `room` and says which instance holds it.

    Client i leaves from `source(i)` over `transports[i % len(transports)]` (None: the
    browser's way, polling then the upgrade). The `clients` fixture disconnects them.
    """

    def connect(
        url: str,
        count: int,
        *,
        source: Callable[[int], str | None] = address_of_user,
        transports: tuple[str | None, ...] = TRANSPORTS,
        room: str = "lobby",
        reconnection: bool = False,
        prefix: str = "c",
    ) -> list[Member]:
        def one(i: int) -> Member:
            transport = transports[i % len(transports)]
            client = clients(f"{prefix}{i:02d}", source=source(i), reconnection=reconnection)
            client.connect(url, transport)
            instance = client.wait_for_event("welcome")["instance"]
            ack = client.call("join", {"room": room, "name": client.label})
            # The join is a later request (a POST, on polling): it reached the same instance.
            assert ack["ok"] and ack["instance"] == instance, (client.label, ack, instance)
            return Member(client, instance, transport)

        return in_parallel(one, range(count))

    return connect
