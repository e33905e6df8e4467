"""Chapter 03's lab: one real redis-server, several app instances, and clients spread over them."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from subprocess import CompletedProcess

import pytest

from lab.apps import healthz, start_apps
from lab.clients import TRANSPORTS, RecordingClient, disconnect_all, in_parallel
from lab.processes import REPO_ROOT, Service
from lab.redis_server import start_redis


@dataclass(frozen=True)
class Member:
    """One connected client and the instance it reached (as its `join` ack says)."""

    client: RecordingClient
    instance: str
    transport: str

    @property
    def label(self) -> str:
        return self.client.label


@dataclass
class Cluster:
    redis: Service
    instances: list[Service]
    members: list[Member]

    def on(self, instance: str) -> list[Member]:
        """The members connected to one instance."""
        return [m for m in self.members if m.instance == instance]

    def first_on_each_instance(self) -> list[Member]:
        return [self.on(service.name)[0] for service in self.instances]

    def reported_online(self) -> dict[str, int]:
        """What each instance's /healthz says the number of users online is."""
        return {service.name: healthz(service.url)["online"] for service in self.instances}

    def disconnect(self, members: Sequence[Member]) -> None:
        """Disconnect some members, in parallel, and forget them."""
        disconnect_all([member.client for member in members])
        self.members = [m for m in self.members if m not in members]


@pytest.fixture
def start_cluster(bench, clients):
    """Start Redis (or reuse one), N instances of a script, and clients spread over them.

    Client i connects to instance i % N, over websocket or polling in turn, and joins
    room `room_of(i)`. The `clients` fixture disconnects them at teardown.
    """

    def start(
        script: str,
        *,
        instances: int = 3,
        clients_per_instance: int = 10,
        redis: Service | None = None,
        prefix: str = "app",
        env: dict[str, str] | None = None,
        room_of: Callable[[int], str] = lambda i: "lobby",
    ) -> Cluster:
        redis = redis or start_redis(bench)
        env = {"REDIS_URL": redis.url, **(env or {})}
        services = start_apps(bench, script, instances, prefix=prefix, env=env)

        def connect(i: int) -> Member:
            service = services[i % instances]
            transport = TRANSPORTS[(i // instances) % len(TRANSPORTS)]
            client = clients(f"{prefix}-c{i:02d}").connect(service.url, transport)
            ack = client.call("join", {"room": room_of(i), "name": client.label})
            assert ack["ok"] and ack["instance"] == service.name, ack
            return Member(client, service.name, transport)

        members = in_parallel(connect, range(instances * clients_per_instance))
        return Cluster(redis, services, members)

    return start


NOTIFY = REPO_ROOT / "chapters" / "03_redis_scaling" / "notify.py"


@pytest.fixture
def run_notify(bench) -> Callable[..., CompletedProcess]:
    """notify.py as a real, separate process; it exits once its one message is published."""

    def run(redis_url: str, text: str, channel: str = "flask-socketio") -> CompletedProcess:
        env = {"REDIS_URL": redis_url, "SOCKETIO_CHANNEL": channel}
        return bench.run("notify", [sys.executable, str(NOTIFY), text], env=env)

    return run
