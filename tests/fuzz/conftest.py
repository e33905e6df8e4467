"""One app process per app for the whole fuzz module, a bystander beside it, and Hypothesis's settings.

Starting an app takes 2-5 s, and the fuzz tests send it thousands of inputs: each app
is started once per module (a module-scoped fixture, parametrized over every app that
tests/test_hardening.py checks) and stopped, with everything it started, when pytest
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
from tests.test_hardening import APPS

# The events each app answers beyond the chat's own join, leave and message.
EVENTS_BEYOND_CHAT = {
    "01": (),
    "02-threading": ("broadcast", "ping", "slow_io", "cpu_work"),
    "02-gevent": ("broadcast", "ping", "slow_io", "cpu_work"),
    "02-eventlet": ("broadcast", "ping", "slow_io", "cpu_work"),
    "03": ("broadcast", "ping"),
    "03-no-queue": ("broadcast", "ping"),
    "03-counter-in-memory": ("broadcast", "ping"),
    "04": ("broadcast", "ping"),
}
# A new app in test_hardening.APPS is fuzzed too, once it is listed here.
assert set(EVENTS_BEYOND_CHAT) == set(APPS), f"list the events of {set(APPS) ^ set(EVENTS_BEYOND_CHAT)}"

# High enough that no fuzzed event is refused for its rate: the validators are under test.
EVENTS_PER_SECOND = "100000"
BYSTANDER_ROOM = "lobby"


@dataclass
class Bystander:
    """A client in room `lobby` the fuzzing must not harm: its own lines come back once each, in order."""

    client: RecordingClient
    said: list[str] = field(default_factory=list)

    def own_lines(self) -> list[str]:
        return [d["text"] for d in self.client.received("message") if d.get("name") == "bystander"]

    def still_chats(self) -> None:
        """Say the next numbered line; every line said so far has come back exactly once, in order."""
        line = f"bystander line {len(self.said) + 1}"
        assert self.client.call("message", {"room": BYSTANDER_ROOM, "text": line}) == {"ok": True}
        self.said.append(line)
        self.client.wait_for(line, lambda c: len(self.own_lines()) >= len(self.said))
        assert self.own_lines() == self.said
        assert not self.client.received("disconnect"), "the bystander was disconnected"

    def hears_leave(self, name: str, timeout: float = 1.0) -> None:
        """The bystander is told `name` left its room within `timeout`."""
        text = f"{name} left {BYSTANDER_ROOM}"
        self.client.wait_for_event("system", lambda d: d.get("text") == text, timeout=timeout)


@dataclass
class Target:
    """One running app under fuzzing, its log, its bystander and its hostile client."""

    name: str
    app: Service
    bench: LabBench
    log: AppLog
    bystander: Bystander
    hostile: HostileClient
    events: tuple[str, ...]
    _names: itertools.count = field(default_factory=lambda: itertools.count(1))

    def new_name(self, prefix: str) -> str:
        """A fresh user name, so the bystander can tell which connection left."""
        return f"{prefix}-{next(self._names)}"


@pytest.fixture(scope="module", params=[pytest.param(name, id=name) for name in APPS])
def target(request, tmp_path_factory):
    """One app, with Redis if it needs it, a bystander in `lobby` and a hostile client beside it."""
    name = request.param
    script, needs_redis = APPS[name]
    env = {"EVENTS_PER_SECOND": EVENTS_PER_SECOND}
    bystander = RecordingClient("bystander")
    hostile = None
    with LabBench(tmp_path_factory.mktemp(f"fuzz-{name}") / "logs") as bench:
        try:
            if needs_redis:
                env["REDIS_URL"] = start_redis(bench).url
            app = start_app(bench, script, env=env)
            bystander.connect(app.url)
            assert bystander.call("join", {"room": BYSTANDER_ROOM, "name": "bystander"})["ok"]
            hostile = HostileClient(app.url, BYSTANDER_ROOM)
            events = ("join", "leave", "message", *EVENTS_BEYOND_CHAT[name])
            yield Target(name, app, bench, AppLog(app.log_path), Bystander(bystander), hostile, events)
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
