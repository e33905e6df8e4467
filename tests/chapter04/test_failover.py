"""Failover drill: an instance behind nginx dies, its clients reconnect through the same address.

What really happens with the chapter's nginx.conf and python-socketio's client:

- The kernel closes the killed instance's connections, which are nginx's: the clients
  are connected to nginx. nginx closes each WebSocket it relayed to the instance, and
  resends each long-poll GET waiting on it to a survivor, which answers 400 "Invalid
  session". Either way its clients notice at once (python-socketio: "transport error"),
  and reconnect after python-socketio's backoff (1 s, give or take half a second:
  `reconnection_delay`, `randomization_factor`).
- nginx still hashes them to the dead instance; the connect is refused, and
  `proxy_next_upstream error` sends the request on to the next instance on the ring,
  while `max_fails=1 fail_timeout=10s` keeps the dead one out for 10 s at a time.
- Whatever is emitted while a client is away is lost for it: delivery is at most once
  (chapter 03). The drill counts it.
- A restarted instance gets new clients again once its fail_timeout has passed.

HAProxy (haproxy.cfg) goes through the same drill: the cookie names the dead instance,
the connect is refused, and `option redispatch` sends the retry to another instance,
which gets a new cookie; its health check (`inter 1s rise 1`) lets the restarted one
back in.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

import psutil
import pytest

from lab.clients import address_of_user
from lab.processes import wait_until

NGINX = "chapters/04_nginx_lb/nginx.conf"
HAPROXY = "chapters/04_nginx_lb/haproxy.cfg"
CLIENTS = 60
RECONNECT_DEADLINE = 10.0  # seconds from the kill until every orphan is connected again
MAX_TICKS = 300  # a bound on the broadcasts sent while waiting


def welcomes(member) -> list[str]:
    return [d["instance"] for d in member.client.received("welcome")]


def ticks(member) -> list[int]:
    texts = [d["text"] for d in member.client.received("broadcast")]
    return [int(text.split()[1]) for text in texts if text.startswith("tick ")]


@pytest.mark.parametrize(
    ("balancer", "config"), [("nginx", NGINX), ("haproxy", HAPROXY)], ids=["nginx", "haproxy"]
)
def test_clients_of_a_killed_instance_reconnect_through_one_address_to_the_others(
    deploy, connect_members, clients, bench, record_property, balancer, config
):
    """A killed instance's clients are back on the others within 10 s; the count settles; it comes back."""
    deployment = deploy(config, balancer=balancer, env={"HEARTBEAT_SECONDS": "0.5"})
    members = connect_members(deployment.url, CLIENTS, reconnection=True, room="drill")
    wait_until(
        lambda: set(deployment.reported_online().values()) == {CLIENTS}, timeout=10, what=f"{CLIENTS} online"
    )
    victim = deployment.instance(Counter(m.instance for m in members).most_common(1)[0][0])
    orphans = [m for m in members if m.instance == victim.name]
    others = [m for m in members if m.instance != victim.name]
    sender = others[0]

    # The crash. Its clients' connections to the balancer end at once, with no goodbye.
    victim.kill()
    killed = time.monotonic()
    wait_until(
        lambda: all(m.client.received("disconnect") for m in orphans), timeout=2, what="every orphan cut off"
    )
    assert {reason for m in orphans for reason in m.client.received("disconnect")} == {"transport error"}

    # Then a tick to everyone every 50 ms until every orphan is back.
    sent = 0

    def every_orphan_is_back() -> bool:
        nonlocal sent
        sender.client.call("broadcast", {"text": f"tick {sent}"})
        sent += 1
        return all(len(welcomes(m)) >= 2 and m.client.sio.connected for m in orphans) or sent >= MAX_TICKS

    wait_until(every_orphan_is_back, timeout=RECONNECT_DEADLINE, interval=0.05, what="every orphan back")
    back_after = time.monotonic() - killed
    assert sent < MAX_TICKS

    # Each orphan is on a survivor, says so, and its rejoin reaches the same instance.
    for orphan in orphans:
        now_on = welcomes(orphan)[-1]
        assert now_on != victim.name, orphan.label
        ack = orphan.client.call("join", {"room": "drill", "name": orphan.label})
        assert ack["ok"] and ack["instance"] == now_on

    # The barrier: a last broadcast behind every tick, through the sender's instance.
    sender.client.call("broadcast", {"text": "after"})
    for member in members:
        member.client.wait_for_event("broadcast", lambda d: d["text"] == "after")
    # Clients of the survivors lost nothing. Each orphan lost one run of ticks, the gap, and
    # got every tick outside it exactly once, in order.
    for member in others:
        assert ticks(member) == list(range(sent)), member.label
    lost = 0
    for orphan in orphans:
        got = ticks(orphan)
        assert got == sorted(set(got)), orphan.label
        gap = sorted(set(range(sent)) - set(got))
        assert gap == list(range(gap[0], gap[-1] + 1)) if gap else True, (orphan.label, gap)
        lost += len(gap)
    record_property("orphans", len(orphans))
    record_property("seconds_until_every_orphan_was_back", round(back_after, 2))
    record_property("ticks_lost_by_orphans", lost)
    print(
        f"\nfailover drill ({balancer}): {len(orphans)} clients of {victim.name} were back on the others "
        f"{back_after:.1f} s after the kill; they lost {lost} of {sent * len(orphans)} tick deliveries"
    )

    # The count settles: the dead instance's set expires, and every client counts once.
    wait_until(
        lambda: set(deployment.reported_online().values()) == {CLIENTS},
        timeout=10,
        what=f"{CLIENTS} online on the survivors, got {deployment.reported_online()}",
    )

    # The instance comes back; new clients (from the addresses that hashed to it) reach it again.
    deployment.instances[deployment.instances.index(victim)] = bench.restart(victim)
    homecomers = [address_of_user(i) for i, m in enumerate(members) if m in orphans]
    attempts = 0

    def a_new_client_reaches_it() -> bool:
        nonlocal attempts
        client = clients(f"new{attempts}", source=homecomers[attempts % len(homecomers)])
        attempts += 1
        landed = client.connect(deployment.url, "websocket").wait_for_event("welcome")["instance"]
        client.disconnect()
        return landed == victim.name

    # nginx tries it again once fail_timeout (10 s) has passed since its last failure;
    # HAProxy, once its health check has seen it up.
    wait_until(a_new_client_reaches_it, timeout=15, interval=0.5, what=f"a new client on {victim.name}")


def requests_waiting_on(instance) -> int:
    """Connections open to the instance's port: with one idle polling client, its long-poll GET."""
    connections = psutil.Process(instance.pid).net_connections("tcp")
    return sum(
        1 for c in connections if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == instance.port
    )


def test_nginx_resends_a_long_poll_waiting_on_a_killed_instance_to_a_survivor_which_answers_400(
    deploy, clients, caplog
):
    """nginx resends a long-poll that waited on a killed instance; a survivor answers 400; it reconnects."""
    deployment = deploy(NGINX)
    caplog.set_level(logging.WARNING, logger="engineio.client")  # what the client says of each answer
    client = clients("poller", reconnection=True).connect(deployment.url, "polling")
    victim = deployment.instance(client.wait_for_event("welcome")["instance"])
    sid = client.sio.eio.sid
    # Once it has its count, nothing more is sent to it for 25 s (the ping): its GET waits.
    client.wait_for_event("online", lambda d: d["count"] == 1)
    wait_until(
        lambda: requests_waiting_on(victim) == 1, timeout=5, what="a long-poll waiting on the instance"
    )

    victim.kill()
    client.wait_for("a reconnect", lambda c: len(c.received("welcome")) == 2, timeout=RECONNECT_DEADLINE)

    # nginx's error log names the GET the instance took down with it...
    lost = [
        line
        for line in deployment.proxy.log_text().splitlines()
        if "upstream prematurely closed connection while reading response header from upstream" in line
    ]
    assert len(lost) == 1 and 'request: "GET /socket.io/?' in lost[0] and f"sid={sid}&" in lost[0], lost
    # ...`proxy_next_upstream error` passed it on, and a survivor, which never heard of the session, said so.
    survivors = [s for s in deployment.instances if s is not victim]
    assert sum(f"Invalid session {sid}" in s.log_text() for s in survivors) == 1
    # The client read that 400 as a lost connection, and reconnected to a survivor.
    assert "Unexpected status code 400 in server response, aborting" in caplog.messages
    assert client.received("disconnect") == ["transport error"]
    assert client.received("welcome")[-1]["instance"] != victim.name
