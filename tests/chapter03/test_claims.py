"""Claims chapter 03's page and docstrings make that no other test backs (issue 10).

- notify.py reaches every client of every instance through the queue, and nobody when the
  instances have no queue (antipatterns/03_no_message_queue.py), saying so as it exits.
- The online count is pushed at most once a second per instance, however many connect at once.
- With app.py's defaults, an instance's online set lives 18 s after its last write, no longer.
"""

from __future__ import annotations

import math
import time

import pytest
import redis
import requests

from lab.apps import start_app
from lab.clients import in_parallel
from lab.processes import wait_until
from lab.redis_server import start_redis

CHAPTER = "chapters/03_redis_scaling/app.py"
NO_QUEUE = "antipatterns/03_no_message_queue.py"


@pytest.mark.parametrize(("script", "listening"), [(CHAPTER, 2), (NO_QUEUE, 0)], ids=["chapter", "no-queue"])
def test_notify_py_reaches_every_instance_through_the_queue_and_nobody_without_one(
    start_cluster, run_notify, script, listening
):
    """notify.py reaches all 4 clients on 2 instances; with no queue, none: "0 instance(s) listening"."""
    cluster = start_cluster(script, instances=2, clients_per_instance=2)

    # notify.py publishes once on the cluster's Redis channel and says how many instances listen.
    done = run_notify(cluster.redis.url, "from notify.py")
    assert done.returncode == 0, done.stdout
    assert f"notice published on channel 'flask-socketio': {listening} instance(s) listening" in done.stdout

    # The barrier: each instance sends a marker by POST /notify, after notify.py's publish. With a
    # queue, another instance's marker comes through Redis behind notify.py's notice. Without one,
    # Redis dropped the notice at once (no subscriber), and a client hears its own instance's marker.
    for service in cluster.instances:
        requests.post(
            f"{service.url}/notify", json={"text": f"marker {service.name}"}, timeout=5
        ).raise_for_status()
    for member in cluster.members:
        markers = {f"marker {s.name}" for s in cluster.instances if listening or s.name == member.instance}
        member.client.wait_for(
            f"the markers {sorted(markers)}",
            lambda c, markers=markers: markers <= {d["text"] for d in c.received("notice")},
        )
    for member in cluster.members:
        from_notify = [d["text"] for d in member.client.received("notice") if d["source"] == "notify.py"]
        # expected: every client, once; actual without a queue: nobody, and no error anywhere.
        assert from_notify == (["from notify.py"] if listening else []), member


# The chapter's ONLINE_PUSH_SECONDS: each instance reads the count and pushes it once per turn.
PUSH_INTERVAL = 1.0
# Two pushes to one client are a turn of the loop apart; a late delivery of the first (a loaded
# machine) can bring them closer. Pushed on every connect, they would come milliseconds apart.
MIN_GAP = 0.5 * PUSH_INTERVAL
BURST = 20  # clients connecting at once, spread over both instances


def test_the_online_count_is_pushed_at_most_once_a_second_per_instance(start_cluster, clients):
    """A burst of 20 connects gives each client at most one `online` push a second, not one per connect."""
    cluster = start_cluster(CHAPTER, instances=2, clients_per_instance=0)

    # One watcher per instance, which notes when each push arrives.
    pushes: dict[str, list[tuple[float, int]]] = {}
    for service in cluster.instances:
        watcher = clients(f"watcher-{service.name}")
        arrivals = pushes[service.name] = []
        watcher.sio.on(
            "online", lambda data, arrivals=arrivals: arrivals.append((time.monotonic(), data["count"]))
        )
        watcher.connect(service.url)

    def everyone_counts(total: int) -> bool:
        return all(arrivals and arrivals[-1][1] == total for arrivals in pushes.values())

    wait_until(lambda: everyone_counts(2), timeout=10, what="each watcher to count both watchers")

    # The burst: 20 clients at once, half on each instance.
    started = time.monotonic()
    newcomers = in_parallel(
        lambda i: clients(f"burst-{i:02d}").connect(cluster.instances[i % 2].url), range(BURST)
    )
    wait_until(lambda: everyone_counts(BURST + 2), timeout=10, what=f"each watcher to count {BURST + 2}")
    elapsed = time.monotonic() - started
    # At most one push per turn of the loop, plus the one in progress when the burst began.
    most = math.ceil(elapsed / PUSH_INTERVAL) + 1

    for name, arrivals in pushes.items():
        during = [t for t, _ in arrivals if t >= started]
        assert 1 <= len(during) <= most, (name, elapsed, arrivals)
        gaps = [later - earlier for (earlier, _), (later, _) in zip(arrivals, arrivals[1:], strict=False)]
        assert min(gaps, default=PUSH_INTERVAL) >= MIN_GAP, (name, gaps)
    for newcomer in newcomers:
        assert len(newcomer.received("online")) <= most, (newcomer.label, newcomer.received("online"))


# online.py's ttl, round(3 * (heartbeat_seconds + push_seconds)), with app.py's defaults:
# HEARTBEAT_SECONDS 5 and ONLINE_PUSH_SECONDS 1.0. The page says a crashed instance's users
# leave the count within it.
DEFAULT_TTL = 18
DEFAULT_HEARTBEAT = 5


def test_with_the_defaults_an_instance_online_set_expires_18_seconds_after_its_last_write(
    bench, clients, monkeypatch
):
    """With app.py's defaults, Redis expires an instance's online set 18 s after its last write, no later."""
    monkeypatch.delenv("HEARTBEAT_SECONDS", raising=False)  # the default, whatever this shell says
    server = start_redis(bench)
    app = start_app(bench, CHAPTER, env={"REDIS_URL": server.url})
    clients("user").connect(app.url)
    store = redis.Redis.from_url(server.url)
    key = f"flask-socketio:online:{app.name}"

    # Redis's own word, in milliseconds. Each write (a connect, a heartbeat's rewrite) sets the
    # TTL in whole seconds; a reading within a second of one shows which: more than 17 s, at most 18.
    readings: list[int] = []

    def fresh_ttl() -> bool:
        readings.append(store.pttl(key))
        return readings[-1] > (DEFAULT_TTL - 1) * 1000

    # The connect's own write, or failing that the next heartbeat's rewrite (plus a turn and slack).
    wait_until(fresh_ttl, timeout=DEFAULT_HEARTBEAT + 3, interval=0.1, what=f"a fresh TTL on {key}")
    assert all(0 < ms <= DEFAULT_TTL * 1000 for ms in readings), readings
    store.close()
