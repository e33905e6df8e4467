"""Chapter 05's lab: Redis, web instances, Celery workers and beat, and users who log in."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field

import pytest
import requests

from lab.apps import start_app
from lab.celery_workers import CHAPTER05, start_beat, start_worker
from lab.clients import RecordingClient, emit_through_queue
from lab.processes import LabBench, Service
from lab.redis_server import start_redis

WEB = CHAPTER05 / "app.py"
WORKER = CHAPTER05 / "make_celery.py"
# The dashboard figure's namespace (taskboard.DASHBOARD); the tasks are on "/".
DASHBOARD = "/dashboard"
# Short steps: a 5-step report takes about a second.
STEP_SECONDS = 0.2


@dataclass
class Taskboard:
    bench: LabBench
    redis: Service
    webs: list[Service]
    workers: list[Service]
    beat: Service | None
    make_client: object
    tokens: dict[str, str] = field(default_factory=dict)
    _labels: itertools.count = field(default_factory=itertools.count)

    def token(self, user: str) -> str:
        """Log `user` in through POST /login (on the first instance: every instance shares the key)."""
        if user not in self.tokens:
            response = requests.post(f"{self.webs[0].url}/login", json={"name": user}, timeout=5)
            response.raise_for_status()
            self.tokens[user] = response.json()["token"]
        return self.tokens[user]

    def connect(
        self, user: str, web: int = 0, transport: str = "websocket", dashboard: bool = False
    ) -> RecordingClient:
        """A page of `user` on web instance `web`, connected with its token in `auth`.

        With `dashboard`, it joins the dashboard's namespace too, on the same connection, as the
        page does; what arrives there is recorded with the rest.
        """
        client = self.make_client(f"{user}-{next(self._labels)}")
        if dashboard:  # python-socketio connects every namespace that has a handler
            client.sio.on("*", client._record, namespace=DASHBOARD)
        client.connect(self.webs[web].url, transport, auth={"token": self.token(user)})
        client.wait_for_event("welcome")
        return client

    def http(self, method: str, path: str, user: str | None, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token(user)}"} if user else {}
        return requests.request(method, f"{self.webs[0].url}{path}", headers=headers, timeout=5, **kwargs)

    def state(self, user: str, task: str) -> str:
        """Celery's record of a task, through GET /tasks/<id>."""
        return self.http("GET", f"/tasks/{task}", user).json()["state"]

    def barrier(self, *clients: RecordingClient) -> None:
        """Wait until each client has all that was published on the queue before now."""
        marker = uuid.uuid4().hex
        emit_through_queue(self.redis.url, "barrier", marker)
        for client in clients:
            client.wait_for_event("barrier", lambda data: data == marker)


@pytest.fixture
def start_taskboard(bench, clients):
    """Start Redis, web instances, Celery workers and (by default) one beat.

    Every process gets the same REDIS_URL and SECRET_KEY: a token signed by one instance
    is accepted by all, and the workers read the same settings. `secret_key=""` leaves
    SECRET_KEY unset, as a reader who forgot to export it does: each process makes up its own.
    """

    def start(
        *,
        web: str = str(WEB),
        webs: int = 2,
        worker_app: str = str(WORKER),
        workers: int = 2,
        beat: bool = True,
        secret_key: str = "chapter-05-tests",
    ) -> Taskboard:
        redis = start_redis(bench)
        env = {"REDIS_URL": redis.url, "SECRET_KEY": secret_key, "STEP_SECONDS": str(STEP_SECONDS)}
        # One after the other, from this thread: see lab.processes._die_with_parent.
        started_webs = [start_app(bench, web, name=f"web-{i}", env=env) for i in range(1, webs + 1)]
        started_workers = [
            start_worker(bench, worker_app, name=f"worker-{i}", env=env) for i in range(1, workers + 1)
        ]
        return Taskboard(
            bench,
            redis,
            webs=started_webs,
            workers=started_workers,
            beat=start_beat(bench, env=env) if beat else None,
            make_client=clients,
        )

    return start
