"""Redis with Sentinel on the lab's hosts: a master, its replicas, and Sentinels to fail it over.

Every Redis server and every Sentinel runs on a host of its own (lab/hosts.py), so cutting the
master's host off takes nothing else with it, as when one machine dies. A Sentinel is the
same redis-server binary, started with `--sentinel` and a config file it rewrites as it learns
(its replicas, the other Sentinels, each new master), so each gets a copy of its own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from lab.hosts import Host, Network
from lab.processes import LabBench, Launch, Service, wait_until
from lab.redis_server import ping, redis_server_binary, start_redis

MASTER_NAME = "mymaster"
SENTINEL_PORT = 26379
REDIS_PORT = 6379

# How fast the Sentinels act. A master that has not answered for DOWN_AFTER_MS is down for
# one Sentinel; once a quorum agrees, they elect a leader, which promotes a replica.
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000
QUORUM = 2


@dataclass(frozen=True)
class FailOver:
    old: str  # the old master's address
    new: str  # the promoted replica's
    cut_at: float  # time.monotonic() once the old master's host was cut off
    promoted_after: float  # seconds from the cut to the Sentinels' agreement on the new master


@dataclass
class Cluster:
    """Redis servers and their Sentinels on the lab's network."""

    network: Network
    servers: dict[str, Service]  # by host address
    hosts: dict[str, Host]  # by host address
    sentinels: list[Service]
    sentinel_hosts: list[Host]

    def url(self, db: int = 0) -> str:
        """python-socketio's Sentinel URL: every Sentinel, the db and the master's name."""
        sentinels = ",".join(f"{host.address}:{SENTINEL_PORT}" for host in self.sentinel_hosts)
        return f"redis+sentinel://{sentinels}/{db}/{MASTER_NAME}"

    def master(self, exclude: Host | None = None) -> str | None:
        """The master's address, as the Sentinels a client can reach agree on it (None: no agreement)."""
        answers = set()
        for host in self.sentinel_hosts:
            if host is exclude:
                continue
            try:
                with redis.Redis(
                    host.address, SENTINEL_PORT, socket_timeout=0.5, decode_responses=True
                ) as sentinel:
                    answers.add(sentinel.sentinel_get_master_addr_by_name(MASTER_NAME)[0])
            except (redis.RedisError, TypeError):
                return None
        return answers.pop() if len(answers) == 1 else None

    def fail_over(self, timeout: float = 30) -> FailOver:
        """Cut the master's host off until the Sentinels have promoted a replica, then heal it
        and wait until it serves as a replica of the new master."""
        old = self.master()
        assert old, "the Sentinels do not agree on a master"
        self.network.cut(self.hosts[old])
        cut_at = time.monotonic()  # from here on, nothing reaches the old master
        new = wait_until(
            lambda: (master := self.master()) != old and master,
            timeout=timeout,
            what="the Sentinels to promote a replica",
        )
        promoted_after = time.monotonic() - cut_at
        self.network.heal(self.hosts[old])
        wait_until(lambda: self._replicates(old, new), timeout=timeout, what=f"{old} to follow {new}")
        return FailOver(old, new, cut_at, promoted_after)

    def _replicates(self, address: str, master: str) -> bool:
        try:
            with redis.Redis(address, REDIS_PORT, socket_timeout=0.5, decode_responses=True) as server:
                info = server.info("replication")
        except redis.RedisError:
            return False
        return info.get("master_host") == master and info.get("master_link_status") == "up"


def start_cluster(bench: LabBench, network: Network, *, replicas: int = 2, sentinels: int = 3) -> Cluster:
    """A master and `replicas` replicas, and `sentinels` Sentinels, each on a host of its own."""
    hosts = [network.host(f"redis-{i}") for i in range(1, replicas + 2)]
    master, *others = hosts
    servers = {master.address: start_redis(bench, name="redis-1", on=master)}
    for i, host in enumerate(others, start=2):
        replica_of = ("--replicaof", master.address, str(REDIS_PORT))
        servers[host.address] = start_redis(bench, name=f"redis-{i}", on=host, options=replica_of)
    sentinel_hosts = [network.host(f"sentinel-{i}") for i in range(1, sentinels + 1)]
    started = [
        start_sentinel(bench, host, master.address, name=f"sentinel-{i}")
        for i, host in enumerate(sentinel_hosts, 1)
    ]
    cluster = Cluster(network, servers, {h.address: h for h in hosts}, started, sentinel_hosts)
    wait_until(
        lambda: _all_known(cluster, replicas, sentinels), timeout=30, what="the Sentinels to know each other"
    )
    return cluster


def start_sentinel(bench: LabBench, host: Host, master: str, *, name: str) -> Service:
    """A Sentinel on `host` watching the master at `master`; ready when it answers PING."""
    config = bench.log_dir / f"{name}.conf"
    config.write_text(
        f"port {SENTINEL_PORT}\n"
        f"bind {host.address}\n"
        "protected-mode no\n"
        f"dir {bench.log_dir}\n"
        f"sentinel monitor {MASTER_NAME} {master} {REDIS_PORT} {QUORUM}\n"
        f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
        f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
        f"sentinel parallel-syncs {MASTER_NAME} 1\n"
    )
    launch = Launch(
        argv=host.argv(redis_server_binary(), str(config), "--sentinel"),
        ready=lambda service: ping(SENTINEL_PORT, host.address),
        url=f"redis://{host.address}:{SENTINEL_PORT}",
    )
    return bench.start(name, lambda _port: launch, port=SENTINEL_PORT)


def _all_known(cluster: Cluster, replicas: int, sentinels: int) -> bool:
    """Every Sentinel knows every replica and every other Sentinel."""
    for host in cluster.sentinel_hosts:
        with redis.Redis(host.address, SENTINEL_PORT, socket_timeout=0.5, decode_responses=True) as sentinel:
            state = sentinel.sentinel_master(MASTER_NAME)
        if state["num-slaves"] != replicas or state["num-other-sentinels"] != sentinels - 1:
            return False
    return True
