"""Hosts of their own on a private network: the lab beyond one loopback interface.

Each host is a network namespace (lab/netns.py) with one interface, eth0, and its own address
on a bridge. The bridge lives in a namespace of its own, the switch. The machine itself joins
the network through one more link, the gateway (address .1), so that the tests, the control
room and a browser reach every host. Hosts have no route anywhere else.

Nothing is made in the machine's own namespace but the gateway's end of one veth pair, and a
veth pair goes with either of its namespaces. A namespace lives as long as its holder process
(`unshare --net`, started by the bench), so the bridge, every link and every rule go with the
bench's processes: at teardown, and after a crash too, since a bench's children die with it.
`leftover_links()` is the check that none outlived the run.

Faults, without netem (this kernel has none): packets are dropped, never delayed.
- `cut(host)`: its port on the bridge goes down. Nothing goes in or out, for anyone.
- `cut_link(a, b)`: each host drops what comes from the other; `one_way=True` drops only
  what a sends to b. The drop is a policy rule in the receiving host (`ip rule ... blackhole`),
  so the sender learns nothing: no error, no reset, as when a path goes dark.
- `heal(...)` and `heal_link(...)` undo them.
- `forget(host, peer)`: host's kernel drops its connections with peer (`ss --kill`), as after
  a reboot or a NAT's timeout; with the link cut, peer never hears of it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from lab.netns import Namespace
from lab.processes import LabBench, wait_until

T = TypeVar("T")

# The gateway links this interpreter made in the machine's namespace: each must be gone at the
# end of the run (tests/conftest.py).
GATEWAYS: list[str] = []

# The rule that sends local traffic to the `local` table has priority 0 in a new namespace,
# before any other. It moves behind the lab's drop rules, so that a drop rule also sees packets
# addressed to the host itself.
LOCAL_TABLE_PREF = 100
# A drop rule's priority: the first one, plus the host's number on the network.
DROP_PREF = 10
ME = str(os.getpid())  # `ip ... netns PID`: the machine's namespace, where this process is


@dataclass
class Host:
    """One machine on the lab's network: a namespace with an address."""

    name: str
    address: str
    index: int
    namespace: Namespace
    port: str  # its port on the switch's bridge
    dropping: set[str] = field(default_factory=set)  # hosts whose packets it drops

    def argv(self, *argv: str) -> list[str]:
        """`argv`, run on this host."""
        return self.namespace.argv(*argv)

    def call(self, function: Callable[..., T], *args: object) -> T:
        """Run `function` on this host, in a thread of its own; threads it starts stay here."""
        return self.namespace.call(function, *args)


class Network:
    """A private /24 with a bridge, the machine as its gateway (.1) and hosts from .11 on."""

    def __init__(self, bench: LabBench, name: str = "lab"):
        self.bench = bench
        self.name = name
        self.hosts: dict[str, Host] = {}
        self.switch = Namespace(bench, f"{name}-switch")
        self.subnet = _free_subnet()
        self.gateway = str(self.subnet.network_address + 1)
        self._switch("ip", "link", "add", "br0", "type", "bridge")
        self._switch("ip", "link", "set", "br0", "up")
        # The machine's end is named after the switch's holder, so two networks never clash.
        self.gateway_link = f"labgw{self.switch.holder.pid}"[:15]
        link = self.gateway_link
        self._switch("ip", "link", "add", "gw", "type", "veth", "peer", "name", link, "netns", ME)
        GATEWAYS.append(self.gateway_link)
        self._switch("ip", "link", "set", "gw", "master", "br0", "up")
        _ip("addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.gateway_link)
        _ip("link", "set", self.gateway_link, "up")

    def host(self, name: str) -> Host:
        """A new host called `name`, with the next address."""
        index = len(self.hosts) + 1
        address = str(self.subnet.network_address + 10 + index)
        namespace = Namespace(self.bench, f"{self.name}-{name}")
        port = f"port{index}"
        holder = str(namespace.holder.pid)
        self._switch("ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", holder)
        self._switch("ip", "link", "set", port, "master", "br0", "up")
        self._run(
            namespace.argv(
                "sh",
                "-c",
                f"ip rule add pref {LOCAL_TABLE_PREF} table local && ip rule del pref 0"
                f" && ip addr add {address}/{self.subnet.prefixlen} dev eth0 && ip link set eth0 up",
            ),
            f"{self.name}-{name}-setup",
        )
        host = Host(name, address, index, namespace, port)
        self.hosts[name] = host
        wait_until(lambda: self._carrier(host), timeout=10, what=f"{name}'s link to be up")
        return host

    def cut(self, host: Host) -> None:
        """Take `host` off the network: its port on the bridge goes down."""
        self._switch("ip", "link", "set", host.port, "down")

    def heal(self, host: Host) -> None:
        """Put `host` back on the network."""
        self._switch("ip", "link", "set", host.port, "up")
        wait_until(lambda: self._carrier(host), timeout=10, what=f"{host.name}'s link to come back")

    def cut_link(self, a: Host, b: Host, *, one_way: bool = False) -> None:
        """Drop what a sends to b and, unless `one_way`, what b sends to a."""
        self._drop(b, a)
        if not one_way:
            self._drop(a, b)

    def heal_link(self, a: Host, b: Host) -> None:
        """Undo `cut_link(a, b)`, in whichever directions it was cut."""
        for receiver, sender in ((b, a), (a, b)):
            if sender.name in receiver.dropping:
                rule = ["ip", "rule", "del", "pref", str(DROP_PREF + sender.index)]
                self._run(receiver.argv(*rule), "heal-link")
                receiver.dropping.discard(sender.name)

    def forget(self, host: Host, peer: Host) -> None:
        """`host`'s kernel forgets its TCP connections with `peer`, as a rebooted machine, a NAT or
        a cloud balancer past its idle timeout does. It sends a reset for each: with the link cut,
        the reset is lost, and `peer` is left holding connections that lead nowhere (half-open)."""
        self._run(host.argv("ss", "--kill", "--tcp", "dst", peer.address), "forget")

    def close(self) -> None:
        """Stop the threads that enter the hosts. The network itself goes with the bench's
        processes, the switch's holder last: until then the servers' goodbyes reach their clients."""
        for host in self.hosts.values():
            host.namespace.close()
        self.switch.close()

    def _drop(self, receiver: Host, sender: Host) -> None:
        if sender.name not in receiver.dropping:
            rule = ["ip", "rule", "add", "pref", str(DROP_PREF + sender.index), "from", sender.address]
            self._run(receiver.argv(*rule, "iif", "eth0", "blackhole"), "cut-link")
            receiver.dropping.add(sender.name)

    def _carrier(self, host: Host) -> bool:
        """The host's eth0 has a carrier: the bridge forwards to it (no STP delay on a new port)."""
        state = self._run(host.argv("cat", "/sys/class/net/eth0/operstate"), "carrier").stdout
        return state.strip() == "up"

    def _switch(self, *argv: str) -> None:
        self._run(self.switch.argv(*argv), f"{self.name}-switch-setup")

    def _run(self, argv: list[str], log: str) -> subprocess.CompletedProcess:
        done = self.bench.run(log, argv)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {done.stdout}")
        return done


def leftover_links(grace: float = 0) -> list[str]:
    """Gateway links this interpreter made that still exist in the machine's namespace.

    Linux removes a namespace, and the links in it, a moment after its last process has gone:
    `grace` is how long to wait for that.
    """

    def left() -> list[str]:
        return [link for link in GATEWAYS if os.path.exists(f"/sys/class/net/{link}")]

    with contextlib.suppress(TimeoutError):
        wait_until(lambda: not left(), timeout=grace, what="the lab's links to go")
    return left()


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.226.0.0/16 that no route of the machine's covers yet."""
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, check=True).stdout
    taken = [
        ipaddress.ip_network(line.split()[0], strict=False)
        for line in routes.splitlines()
        if line and line.split()[0][0].isdigit()
    ]
    start = os.getpid() % 250
    for offset in range(250):
        candidate = ipaddress.ip_network(f"10.226.{(start + offset) % 250 + 1}.0/24")
        if not any(candidate.overlaps(route) for route in taken):
            return candidate
    raise RuntimeError("no free /24 in 10.226.0.0/16 for the lab's network")


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True, text=True)
