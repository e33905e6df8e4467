"""Real client addresses: an office of users on many hosts of one /24, behind one balancer.

Chapter 04's tests spread clients over loopback addresses (127.0.1.1, 127.0.2.1, ...). Here
each user is a host of its own on the lab's network, with its own interface and address, as
an office would be, and the balancer listens on the machine's address on that network.
"""

from __future__ import annotations

from collections import Counter

import pytest

from lab.chapters import Topology, start_topology
from lab.clients import in_parallel

CHAPTER = "chapters/04_nginx_lb/app.py"
USERS = 12


@pytest.mark.parametrize(
    ("balancer", "config", "spreads"),
    [
        ("nginx", "chapters/04_nginx_lb/nginx.conf", True),
        ("nginx", "antipatterns/04_ip_hash.conf", False),
        ("haproxy", "chapters/04_nginx_lb/haproxy.cfg", True),
    ],
    ids=["nginx-hash", "ip-hash", "haproxy-cookie"],
)
def test_an_office_on_one_subnet_spreads_only_without_ip_hash(
    network, bench, clients, balancer, config, spreads
):
    """12 users on 12 hosts of one /24: ip_hash puts all on one instance; the chapter's balancers spread them.

    Each stays on its instance: its `join`, a later request on long-polling, reaches it.
    """
    topology = Topology(CHAPTER, 3, needs_redis=True, balancer=(balancer, config))
    proxy, *_ = start_topology(
        bench, topology, prefix="chat", host=network.gateway, lan_address=network.gateway
    )
    hosts = [network.host(f"user-{i}") for i in range(1, USERS + 1)]

    def user(host) -> str:
        def on_its_host() -> str:
            client = clients(host.name).connect(proxy.url, None)  # a browser's way: polling, then upgrade
            instance = client.wait_for_event("welcome")["instance"]
            ack = client.call("join", {"room": "office", "name": host.name})
            assert ack["ok"] and ack["instance"] == instance, (host.name, ack, instance)
            return instance

        return host.call(on_its_host)

    spread = Counter(in_parallel(user, hosts))
    assert sum(spread.values()) == USERS
    if spreads:
        assert len(spread) > 1, spread
    else:
        # expected: 12 addresses spread; actual: ip_hash keys on the first three octets, one instance.
        assert len(spread) == 1, spread
