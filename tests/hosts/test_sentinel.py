"""Redis fails over under Sentinel while the chat runs: a master, two replicas and three
Sentinels, each on a host of its own, and two instances of chapter 04 on two more.

The instances name the Sentinels, not a Redis: REDIS_URL=redis+sentinel://s1:26379,s2:26379,
s3:26379/0/mymaster, which chapter 04 hands to python-socketio's RedisManager as a
client_manager. A talker on chat-1 broadcasts a numbered message every 100 ms; a listener on
chat-2 hears them across the queue. Then the master's host is cut off, as when its machine dies:
no reset reaches anyone. The Sentinels promote a replica; the old master comes back later as a
replica. Each failover's window (from the cut until the listener hears a message sent after
it) and what plain pub/sub lost in it go to pytest's record, for the bench.

FAILOVERS in a row: HOSTS_FAILOVERS in the environment, 1 by default (the bench runs 20).
"""

from __future__ import annotations

import os
import statistics
import time

import pytest

from lab.apps import start_app
from lab.processes import wait_until
from lab.sentinel import start_cluster
from tests.hosts.talk import Listener, Talker

CHAPTER = "chapters/04_nginx_lb/app.py"
TWIN = "antipatterns/04_healthz_deaf_to_the_queue.py"
FAILOVERS = int(os.environ.get("HOSTS_FAILOVERS", "1"))


def chat_on_sentinels(network, bench, clients, script):
    """The cluster, chat-1 and chat-2 on it, a talker on chat-1 and a listener on chat-2."""
    cluster = start_cluster(bench, network)
    hosts = [network.host("app-1"), network.host("app-2")]
    env = {"REDIS_URL": cluster.url(), "TRUSTED_HOSTS": ",".join(host.address for host in hosts)}
    chat = [start_app(bench, script, name=f"chat-{i}", env=env, on=host) for i, host in enumerate(hosts, 1)]
    listener = Listener(clients("listener", reconnection=True), "chat-2")
    listener.client.sio.on("broadcast", listener.on_broadcast)
    listener.client.connect(chat[1].url)
    talker = Talker(clients("talker", reconnection=True).connect(chat[0].url))
    return cluster, chat, talker, listener


@pytest.mark.timeout(60 + 30 * FAILOVERS)  # each failover takes 15-20 s: the old master rejoins
def test_the_chat_fails_over_with_redis(network, bench, clients, record_property):
    """Through Sentinel, delivery across instances resumes within 10 s of each failover.

    Every failover completes: a replica is promoted, and the old master serves again as a
    replica. What was broadcast in each window and never heard is counted for the record:
    pub/sub keeps nothing for a subscriber that is away, but a publish that waits out the
    promotion is not lost.
    """
    cluster, _chat, talker, listener = chat_on_sentinels(network, bench, clients, CHAPTER)
    talker.start()
    windows, lost, promoted = [], [], []
    try:
        wait_until(lambda: listener.heard, timeout=10, what="the listener to hear the talker")
        for _ in range(FAILOVERS):
            before = talker.sent
            failover = cluster.fail_over()
            cut_at = failover.cut_at
            promoted.append(failover.promoted_after)
            wait_until(
                lambda cut_at=cut_at: any(sent > cut_at for _, sent, _ in listener.heard),
                timeout=30,
                what="the listener to hear a message sent after the cut",
            )
            windows.append(listener.deaf_for(cut_at, time.monotonic()))
            # Lost: sent from the cut until the talker's first message heard after it.
            resumed = min(n for _, sent, n in listener.heard if sent > cut_at)
            heard = {n for _, _, n in listener.heard}
            lost.append(sum(1 for n in range(before, resumed) if n not in heard))
    finally:
        talker.stopped.set()
        talker.join()
    record_property("failovers", len(windows))
    record_property("promoted_ms_median", round(statistics.median(promoted) * 1000))
    record_property("window_ms_median", round(statistics.median(windows) * 1000))
    record_property("window_ms_max", round(max(windows) * 1000))
    record_property("lost_total", sum(lost))
    record_property("lost_max", max(lost))
    assert max(windows) < 10, windows


def test_a_sentinel_url_as_message_queue_reaches_no_other_instance(network, bench, clients):
    """`message_queue="redis+sentinel://..."` becomes Kombu's queue: nothing crosses, and each emit logs why.

    Flask-SocketIO sends only redis:// and rediss:// URLs to RedisManager; Kombu reads the list
    of Sentinels as one host and its port as "26379,10.…".
    """
    _cluster, chat, talker, listener = chat_on_sentinels(network, bench, clients, TWIN)
    assert talker.client.call("broadcast", {"text": f"{time.monotonic()}#0"}) == {"ok": True}
    wait_until(
        lambda: "Cannot publish to rabbitmq... giving up" in chat[0].log_text(),
        timeout=10,
        what="chat-1 to log that it cannot publish",
    )
    assert listener.heard == []
