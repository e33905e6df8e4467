"""Chapter 03 against its antipatterns: redis-server, three app instances, 30 clients over both transports.

A valid barrier across instances: with a queue, everything one instance emits goes out on
one Redis channel, and every instance receives that channel in publication order (the
local copy is delivered before the handler even returns). So a marker a sender emits
after its acknowledged messages arrives, at every client, after them: once a client holds
the markers of every sender, nothing those senders sent earlier is still on its way.
Without a queue, a client hears only its own instance, and that instance's marker flushes
everything it will ever send.
"""

from __future__ import annotations

from collections import Counter

import pytest
import requests

from lab.apps import healthz, start_app
from lab.processes import wait_until
from lab.redis_server import start_redis

CHAPTER = "chapters/03_redis_scaling/app.py"
NO_QUEUE = "antipatterns/03_no_message_queue.py"
COUNTER_IN_MEMORY = "antipatterns/03_counter_in_process_memory.py"
ROOMS = ("red", "green", "blue")
NOTIFY_MAX_TEXT = 500  # notify.py's MAX_TEXT

with_and_without_queue = pytest.mark.parametrize(
    ("script", "shared"), [(CHAPTER, True), (NO_QUEUE, False)], ids=["chapter", "no-queue"]
)


def texts(client, event: str, prefix: str) -> Counter:
    return Counter(d["text"] for d in client.received(event) if d["text"].startswith(prefix))


def latest_online(client) -> dict:
    """The `online` payload the page shows: the one Redis stamped last (its `version`)."""
    return max(client.received("online"), key=lambda d: d["version"], default={"count": None})


# --8<-- [start:key]
@with_and_without_queue
def test_every_broadcast_reaches_every_client_once(start_cluster, script, shared):
    """A broadcast reaches 30 clients on 3 instances once each; with no queue, exactly the others miss it."""
    cluster = start_cluster(script)
    senders = cluster.first_on_each_instance()

    # One sender per instance broadcasts, then (after its ack) a marker.
    for sender in senders:
        assert sender.client.call("broadcast", {"text": f"hello from {sender.label}"}) == {"ok": True}
    for sender in senders:
        assert sender.client.call("broadcast", {"text": f"marker from {sender.label}"}) == {"ok": True}

    def heard_by(member):
        """The senders this member should hear: all of them, or without a queue its own instance's."""
        return [s for s in senders if shared or s.instance == member.instance]

    for member in cluster.members:
        markers = {f"marker from {s.label}" for s in heard_by(member)}
        member.client.wait_for(
            f"the markers {sorted(markers)}",
            lambda c, markers=markers: markers <= set(texts(c, "broadcast", "marker")),
        )
    for member in cluster.members:
        # Exactly once each: the chapter delivers all three; no queue, only its own instance's.
        expected = Counter(f"hello from {s.label}" for s in heard_by(member))
        assert texts(member.client, "broadcast", "hello") == expected, member

    # The documented symptom, as an exact set: who missed the broadcast from instance 1.
    first = senders[0]
    missed = {
        m.label for m in cluster.members if not texts(m.client, "broadcast", f"hello from {first.label}")
    }
    assert missed == (set() if shared else {m.label for m in cluster.members if m.instance != first.instance})
    # --8<-- [end:key]


@with_and_without_queue
def test_room_messages_reach_exactly_the_room_on_any_instance(start_cluster, script, shared):
    """Room messages reach exactly the room's members, whatever their instance; no queue splits each room."""
    # 30 clients, 3 rooms, every room with members on every instance.
    cluster = start_cluster(script, room_of=lambda i: ROOMS[(i // 3) % len(ROOMS)])
    room = {m.label: ROOMS[(i // 3) % len(ROOMS)] for i, m in enumerate(cluster.members)}
    assert {(room[m.label], m.instance) for m in cluster.members} == {
        (r, s.name) for r in ROOMS for s in cluster.instances
    }

    # Everyone writes one line to their room, then a marker (the chapter 01 settle, across instances).
    for kind in ("says hi", "marker"):
        for m in cluster.members:
            text = f"{m.label} {kind}"
            assert m.client.call("message", {"room": room[m.label], "text": text}) == {"ok": True}

    def peers(member):
        """Whom this member should hear: its room, or without a queue its room on its own instance."""
        return [
            p
            for p in cluster.members
            if room[p.label] == room[member.label] and (shared or p.instance == member.instance)
        ]

    for member in cluster.members:
        markers = {f"{p.label} marker" for p in peers(member)}
        member.client.wait_for(
            "its peers' markers",
            lambda c, markers=markers: markers <= {d["text"] for d in c.received("message")},
        )
    for member in cluster.members:
        got = Counter(d["text"] for d in member.client.received("message") if d["text"].endswith("says hi"))
        assert got == Counter(f"{p.label} says hi" for p in peers(member)), member
        assert {d["room"] for d in member.client.received("message")} == {room[member.label]}


def test_notify_reaches_every_client_on_every_instance(start_cluster, run_notify):
    """notify.py (a separate process) and POST /notify each reach all 30 clients on 3 instances, once."""
    token = "s3cret"
    cluster = start_cluster(CHAPTER, env={"NOTIFY_TOKEN": token})
    auth = {"Authorization": f"Bearer {token}"}

    # From outside the app: one PUBLISH on the cluster's channel.
    done = run_notify(cluster.redis.url, "from the notify script")
    assert done.returncode == 0, done.stdout
    assert "3 instance(s) listening" in done.stdout
    # Over HTTP, to one instance: it emits through the queue to all of them.
    response = requests.post(f"{cluster.instances[1].url}/notify", json={"text": "from HTTP"}, headers=auth)
    assert response.status_code == 200 and response.json() == {"ok": True}
    # The barrier: a last notice through Redis, behind both in every instance's queue.
    assert run_notify(cluster.redis.url, "marker").returncode == 0

    for member in cluster.members:
        member.client.wait_for_event("notice", lambda d: d["text"] == "marker")
    for member in cluster.members:
        got = Counter(d["text"] for d in member.client.received("notice"))
        assert got == Counter(["from the notify script", "from HTTP", "marker"]), member
    sources = {d["source"] for d in cluster.members[0].client.received("notice")}
    assert sources == {"notify.py", f"POST /notify on {cluster.instances[1].name}"}


NOTIFY_BAD_BODIES = [
    # (request body, the reason after "body must be JSON like {"text": "..."}: ")
    pytest.param({"data": "not json"}, "payload must be an object", id="not-json"),
    pytest.param({"json": ["hi"]}, "payload must be an object", id="list"),
    pytest.param({"json": {}}, "missing key 'text'", id="missing-text"),
    pytest.param({"json": {"text": 7}}, "'text' must be a string", id="number"),
    pytest.param({"json": {"text": "  "}}, "'text' must not be empty", id="empty"),
    pytest.param({"json": {"text": "x" * 501}}, "'text' is longer than 500 characters", id="too-long"),
]


def test_notify_refuses_bad_input_with_a_reason(bench, clients, run_notify):
    """POST /notify answers bad bodies with 400 and a reason, a bad token with 401; notify.py exits non-0."""
    redis = start_redis(bench)
    app = start_app(bench, CHAPTER, env={"REDIS_URL": redis.url, "NOTIFY_TOKEN": "s3cret"})
    listener = clients("listener").connect(app.url)
    auth = {"Authorization": "Bearer s3cret"}

    for case in NOTIFY_BAD_BODIES:
        kwargs, reason = case.values
        response = requests.post(f"{app.url}/notify", **{"headers": auth, **kwargs})
        assert response.status_code == 400, case.id
        assert response.json() == {
            "ok": False,
            "reason": f'body must be JSON like {{"text": "..."}}: {reason}',
        }
    wrong = requests.post(f"{app.url}/notify", json={"text": "hi"}, headers={"Authorization": "Bearer nope"})
    assert (wrong.status_code, wrong.json()["ok"]) == (401, False)

    # The script: an empty or too long text is a usage error (2), an unreachable Redis is 1.
    assert run_notify(redis.url, "   ").returncode == 2
    too_long = run_notify(redis.url, "x" * (NOTIFY_MAX_TEXT + 1))
    assert too_long.returncode == 2
    assert f'usage: notify.py "text of 1 to {NOTIFY_MAX_TEXT} characters"' in too_long.stdout
    unreachable = run_notify("redis://:hunter2@127.0.0.1:1/0", "hi")
    assert unreachable.returncode == 1
    assert "Redis unreachable at redis://:***@127.0.0.1:1/0" in unreachable.stdout
    assert "hunter2" not in unreachable.stdout  # the password never reaches a terminal or a log

    # Nothing reached the listener: a good notice is the first one it gets.
    requests.post(f"{app.url}/notify", json={"text": "only this"}, headers=auth).raise_for_status()
    listener.wait_for_event("notice", lambda d: d["text"] == "only this")
    assert [d["text"] for d in listener.received("notice")] == ["only this"]


@with_and_without_queue
def test_post_notify_needs_the_bearer_token_on_the_chapter_and_its_twin(bench, script, shared):
    """With NOTIFY_TOKEN set, POST /notify refuses a missing, wrong or longer token with 401, twin too."""
    # The twin keeps the online count in Redis too: only its emits stay at home.
    env = {"NOTIFY_TOKEN": "s3cret", "REDIS_URL": start_redis(bench).url}
    app = start_app(bench, script, env=env)
    refused = (401, {"ok": False, "reason": "missing or wrong bearer token"})
    for header in (None, "Bearer nope", "Bearer s3cret-and-more", "s3cret"):
        headers = {"Authorization": header} if header else {}
        response = requests.post(f"{app.url}/notify", json={"text": "hi"}, headers=headers)
        assert (response.status_code, response.json()) == refused, header
    good = requests.post(f"{app.url}/notify", json={"text": "hi"}, headers={"Authorization": "Bearer s3cret"})
    assert (good.status_code, good.json()) == (200, {"ok": True})


# The no-queue twin counts in Redis as the chapter does: the count never crosses the queue.
@pytest.mark.parametrize(
    ("script", "shared"),
    [(CHAPTER, True), (NO_QUEUE, True), (COUNTER_IN_MEMORY, False)],
    ids=["chapter", "no-queue", "counter-in-memory"],
)
def test_online_count_is_right_on_every_instance(start_cluster, script, shared):
    """Every instance and client counts 30, then 24 after 6 leave, queue or not; memory: 10, then 7/8/9."""
    cluster = start_cluster(script)
    names = [service.name for service in cluster.instances]

    def expected_reports():
        """Per instance: the real total (in Redis), or that instance's own clients only (in memory)."""
        total = len(cluster.members)
        return {name: total if shared else len(cluster.on(name)) for name in names}

    def check_counts():
        wait_until(
            lambda: cluster.reported_online() == expected_reports(),
            timeout=10,
            what=f"/healthz online counts {expected_reports()}, got {cluster.reported_online()}",
        )
        total = len(cluster.members)
        for member in cluster.members:
            if shared:
                # The page keeps the count Redis stamped last (`version`); that one must be the total.
                member.client.wait_for(f"online == {total}", lambda c: latest_online(c)["count"] == total)
            else:
                # Each page is told its own instance's share, and no client is ever told the total.
                share = len(cluster.on(member.instance))
                told_share = lambda c, share=share: latest_online(c)["count"] == share  # noqa: E731
                member.client.wait_for(f"online == {share}", told_share)
                assert max(d["count"] for d in member.client.received("online")) < total

    check_counts()  # 30 everywhere; in memory: 10 / 10 / 10
    # Six leave: three from the first instance, two from the second, one from the third.
    on = [cluster.on(name) for name in names]
    cluster.disconnect(on[0][:3] + on[1][:2] + on[2][:1])
    check_counts()  # 24 everywhere; in memory: 7 / 8 / 9
    if not shared:
        assert len(set(cluster.reported_online().values())) == len(names), "the instances disagree"


def test_a_crashed_instance_drops_out_of_the_count(start_cluster):
    """When an instance is killed, its users leave the count within the TTL, on the surviving pages too."""
    cluster = start_cluster(CHAPTER, clients_per_instance=3, env={"HEARTBEAT_SECONDS": "0.5"})
    wait_until(lambda: set(cluster.reported_online().values()) == {9}, timeout=10, what="9 online")

    # SIGKILL: no disconnect handler runs, nothing is removed from Redis.
    crashed = cluster.instances.pop()
    crashed.kill()
    survivors = [m for m in cluster.members if m.instance != crashed.name]
    cluster.members = survivors

    # The crashed set expires (TTL = 3 heartbeats) and each survivor's heartbeat tells its clients.
    wait_until(lambda: set(cluster.reported_online().values()) == {6}, timeout=15, what="6 online")
    for member in survivors:
        member.client.wait_for("online == 6", lambda c: latest_online(c)["count"] == 6, timeout=10)
        assert crashed.name not in latest_online(member.client)["instances"]


def test_channel_separates_two_clusters_on_one_redis(bench, start_cluster, run_notify):
    """Two clusters on one Redis with different channels never see each other's messages or counts."""
    blue = start_cluster(
        CHAPTER, instances=2, clients_per_instance=2, prefix="blue", env={"SOCKETIO_CHANNEL": "blue"}
    )
    green = start_cluster(
        CHAPTER,
        instances=2,
        clients_per_instance=2,
        prefix="green",
        redis=blue.redis,
        env={"SOCKETIO_CHANNEL": "green"},
    )

    # Blue broadcasts; then notices alternate between the channels, each a barrier for the other.
    assert blue.members[0].client.call("broadcast", {"text": "blue only"}) == {"ok": True}
    for channel, text in (("green", "green 1"), ("blue", "blue 1"), ("green", "green 2")):
        done = run_notify(blue.redis.url, text, channel=channel)
        assert "2 instance(s) listening" in done.stdout, done

    # A marker arrives after everything published before it: had a cluster heard the other
    # channel, the earlier messages of that channel would be in by now.
    for member in blue.members:
        member.client.wait_for_event("notice", lambda d: d["text"] == "blue 1")
        assert texts(member.client, "broadcast", "blue") == Counter(["blue only"])
        assert "green 1" not in {d["text"] for d in member.client.received("notice")}
    for member in green.members:
        member.client.wait_for_event("notice", lambda d: d["text"] == "green 2")
        assert member.client.received("broadcast") == []
        assert [d["text"] for d in member.client.received("notice")] == ["green 1", "green 2"]

    # The online counts are kept apart too: their keys are named after the channel.
    assert set(blue.reported_online().values()) == {4}
    assert set(green.reported_online().values()) == {4}
    assert {healthz(s.url)["channel"] for s in blue.instances} == {"blue"}
