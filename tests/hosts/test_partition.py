"""An instance whose connections to Redis lead nowhere while its users stay connected: how long
they are deaf, and what its /healthz says meanwhile.

Redis, chat-1 and chat-2 each run on a host of their own; HAProxy (chapter 04's haproxy.cfg)
listens on the machine's address on the lab's network, and the users connect through it. A
talker on chat-2 broadcasts a numbered message every 100 ms. Then Redis's host forgets its
connections with chat-1, as a NAT or a cloud balancer does past its idle timeout; the link is
cut for that moment only, so the resets it sends are lost. The path is fine again at once, but
chat-1 holds pub/sub connections that lead nowhere, and nothing tells it so.

- The twin (antipatterns/04_healthz_deaf_to_the_queue.py, the queue as `message_queue=`):
  its /healthz stays 200, HAProxy keeps its users on it, and they are still deaf WATCH seconds
  later: redis-py's default keepalive first probes after 30 s of quiet.
- The chapter: its heartbeat's next publish meets Redis's reset, and python-socketio connects
  again, listener included: its users hear the talker again within 2 s.

And when the link stays dark (a partition, WATCH seconds long), the chapter's /healthz answers
503 once it has heard no heartbeat for 3 s; HAProxy takes it out and closes its connections,
and its users hear the talker again from chat-2.

Each side's figures go to pytest's record (`record_property`) for the bench (`python -m bench hosts`).
"""

from __future__ import annotations

import time

import pytest

from lab.apps import start_app
from lab.haproxy import start_haproxy
from lab.processes import wait_until
from lab.redis_server import start_redis
from tests.hosts.talk import Listener, Talker, health

CHAPTER = "chapters/04_nginx_lb/app.py"
TWIN = "antipatterns/04_healthz_deaf_to_the_queue.py"
HAPROXY = "chapters/04_nginx_lb/haproxy.cfg"
WATCH = 9.0  # seconds from the fault to the verdict
USERS = 4  # through HAProxy's round robin: half of them on chat-1


@pytest.mark.parametrize(
    ("fault", "script"),
    [("forgotten", CHAPTER), ("forgotten", TWIN), ("partition", CHAPTER)],
    ids=["forgotten-chapter", "forgotten-twin", "partition-chapter"],
)
def test_an_instance_cut_from_redis_says_so_and_its_users_move(
    network, bench, clients, record_property, fault, script
):
    """Deaf to Redis, an instance hears again in 5 s or says 503 and loses its users; the twin stays green.

    Connections forgotten: the chapter's users hear again within 5 s; the twin's /healthz stays
    200, its users stay on it, and 9 s later they are still deaf. A partition: the chapter's
    /healthz says 503 within 5.5 s and its users hear again from chat-2 within 10 s.
    """
    redis_host, app_hosts = network.host("redis"), [network.host("app-1"), network.host("app-2")]
    store = start_redis(bench, on=redis_host)
    trusted = ",".join([network.gateway, *(host.address for host in app_hosts)])
    env = {"REDIS_URL": store.url, "TRUSTED_HOSTS": trusted}
    chat = [
        start_app(bench, script, name=f"chat-{i}", env=env, on=host) for i, host in enumerate(app_hosts, 1)
    ]
    proxy = start_haproxy(bench, HAPROXY, chat, host=network.gateway)

    talker = Talker(clients("talker").connect(chat[1].url))  # straight to chat-2
    listeners = []
    for i in range(USERS):
        client = clients(f"user-{i}", reconnection=True)
        listener = Listener(client, "")
        client.sio.on("broadcast", listener.on_broadcast)
        client.connect(proxy.url, None)
        listener.instance = client.wait_for_event("welcome")["instance"]
        listeners.append(listener)
    on_chat1 = [listener for listener in listeners if listener.instance == "chat-1"]
    assert on_chat1, [listener.instance for listener in listeners]
    talker.start()
    try:
        wait_until(
            lambda: all(listener.heard for listener in listeners), timeout=10, what="every user to hear"
        )
        statuses: list[tuple[float, int]] = []
        network.cut_link(app_hosts[0], redis_host)
        network.forget(redis_host, app_hosts[0])
        cut_at = time.monotonic()  # from here on, nothing reaches chat-1 through its connections
        if fault == "forgotten":
            network.heal_link(app_hosts[0], redis_host)
        while time.monotonic() - cut_at < WATCH:
            statuses.append((time.monotonic() - cut_at, health(chat[0].url)))
            time.sleep(0.25)  # a sampling interval, not a wait for a condition
        until = time.monotonic()
        network.heal_link(app_hosts[0], redis_host)
    finally:
        talker.stopped.set()
        talker.join()
    first_503 = next((at for at, status in statuses if status == 503), None)
    deaf = [listener.deaf_for(cut_at, until) for listener in on_chat1]
    moved = [listener.client.received("welcome")[-1]["instance"] for listener in on_chat1]
    record_property("users_on_cut_instance", len(on_chat1))
    record_property("first_503_after_s", "" if first_503 is None else round(first_503, 2))
    record_property("deaf_ms_max", round(max(deaf) * 1000))
    record_property("watched_ms", round((until - cut_at) * 1000))
    if script == TWIN:
        # Green all along, its users still on it, and still deaf when the watch ends.
        assert {status for _, status in statuses} == {200}, statuses
        assert set(moved) == {"chat-1"}, moved
        assert min(deaf) >= until - cut_at - 0.01, deaf
    elif fault == "forgotten":
        # The heartbeat's publish meets Redis's reset: python-socketio connects again, listener
        # included, before three heartbeats are missed.
        assert max(deaf) < 5, deaf
    else:
        # 503 once three heartbeats are missed (a sample may wait 2 s on the online count), then
        # HAProxy's two failed checks, then the users' reconnect to chat-2.
        assert first_503 is not None and first_503 < 3 + 2 + 0.5, statuses
        assert set(moved) == {"chat-2"}, moved
        assert max(deaf) < 10, deaf
