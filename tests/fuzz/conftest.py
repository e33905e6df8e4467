"""One app process per app for the whole fuzz module, a bystander beside it, and Hypothesis's settings.

Starting an app takes 2-5 s, and the fuzz tests send it thousands of inputs: each app
is started once per module (a module-scoped fixture, parametrized over every app in
tests/hostile_apps.py) and stopped, with everything it started, when pytest
moves on to the next app. A failing test's report shows the app's log, as the
function-scoped `bench` fixture's tests do.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest

from lab import LabBench
from lab.apps import start_app
from lab.clients import RecordingClient
from lab.processes import Service
from lab.redis_server import start_redis
from tests.fuzz.wire import AppLog, HostileClient
from tests.hostile_apps import APPS, Door

# High enough that no fuzzed event is refused for its rate: the validators are under test.
EVENTS_PER_SECOND = "100000"


@dataclass
class Bystander:
    """A client in its room the fuzzing must not harm: its own lines come back once each, in order."""

    client: RecordingClient
    door: Door
    said: list[str] = field(default_factory=list)

    def own_lines(self) -> list[str]:
        return self.door.lines(self.client, "bystander")

    def still_chats(self) -> None:
        """Say the next numbered line; every line said so far has come back exactly once, in order."""
        line = f"bystander line {len(self.said) + 1}"
        self.door.say(self.client, "bystander", line)
        self.said.append(line)
        self.client.wait_for(line, lambda c: len(self.own_lines()) >= len(self.said))
        assert self.own_lines() == self.said
        assert not self.client.received("disconnect"), "the bystander was disconnected"

    def hears_leave(self, name: str, eio_sid: str, transport: str) -> None:
        """`name`'s connection is out of its rooms at once: the bystander hears it leave, where it can."""
        self.door.left_at_once(self.client, name, eio_sid, transport)


@dataclass
class Target:
    """One running app under fuzzing, its log, its door, its bystander and its hostile client."""

    name: str
    app: Service
    bench: LabBench
    log: AppLog
    door: Door
    bystander: Bystander
    hostile: HostileClient
    events: tuple[str, ...]
    _names: itertools.count = field(default_factory=lambda: itertools.count(1))

    def new_name(self, prefix: str) -> str:
        """A fresh user name, so the bystander can tell which connection left."""
        return f"{prefix}-{next(self._names)}"


@pytest.fixture(scope="module", params=[pytest.param(name, id=name) for name in APPS])
def target(request, tmp_path_factory):
    """One app, with Redis if it needs it, a bystander in its room and a hostile client beside it."""
    name = request.param
    profile = APPS[name]
    env = {"EVENTS_PER_SECOND": EVENTS_PER_SECOND}
    bystander = RecordingClient("bystander")
    hostile = None
    with LabBench(tmp_path_factory.mktemp(f"fuzz-{name}") / "logs") as bench:
        try:
            redis_url = start_redis(bench).url if profile.redis else None
            if redis_url:
                env["REDIS_URL"] = redis_url
            app = start_app(bench, profile.script, env=env)
            door = profile.door(app.url, redis_url)
            door.enter(bystander, "bystander")
            hostile = HostileClient(app.url, auth=door.auth("hostile"), joining=door.joining("hostile"))
            log = AppLog(app.log_path)
            yield Target(name, app, bench, log, door, Bystander(bystander, door), hostile, profile.events)
        finally:
            # Servers first: each client then sees its connection drop and closes at once.
            bench.stop_all()
            bystander.disconnect()
            if hostile is not None:
                hostile.disconnect()


@pytest.fixture
def fuzzed(request, target):
    """The module's app for one test; a failing test's report shows its processes' logs."""
    request.node.lab_bench = target.bench
    return target
