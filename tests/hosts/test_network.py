"""The lab's network: hosts with their own addresses, reachable from the machine and from
each other and from nowhere else; cuts that drop packets without a word; and nothing left
behind, also when the bench dies without cleaning up."""

from __future__ import annotations

import signal
import socket

import pytest

from lab.hosts import Network, leftover_links
from lab.redis_server import start_redis


def ask(address: str, port: int = 6379, timeout: float = 1.0) -> bytes:
    """A Redis PING over a new connection: b"+PONG" or the OSError's name."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).strip()
    except OSError as error:
        return type(error).__name__.encode()


def datagram(to: str, port: int, listener: socket.socket) -> bool:
    """Send one UDP datagram to `to`; True when `listener` (bound there) gets it within 0.5 s."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(b"hello", (to, port))
    listener.settimeout(0.5)
    try:
        return listener.recv(16) == b"hello"
    except TimeoutError:
        return False


def udp_listener(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, 7000))
    return sock


def test_hosts_have_their_own_addresses_and_no_route_out(network, bench):
    """Hosts reach each other and the machine reaches them, each at its own address; no route leads off."""
    a, b = network.host("a"), network.host("b")
    start_redis(bench, name="redis-b", on=b)
    assert a.address != b.address and a.address.startswith(network.gateway.rsplit(".", 1)[0])
    assert ask(b.address) == b"+PONG"  # from the machine, through the gateway
    assert a.call(ask, b.address) == b"+PONG"  # from host a
    assert a.call(ask, "203.0.113.1") == b"OSError"  # TEST-NET-3: no route, refused at once
    assert a.call(ask, "127.0.0.1") == b"ConnectionRefusedError"  # a's own loopback, not b's


def test_a_cut_host_is_silent_and_heals_with_its_connections(network, bench):
    """A cut host goes silent without a reset; an open connection gets its answer once it is back.

    A new connection to it times out: nothing refuses it.
    """
    a, b = network.host("a"), network.host("b")
    start_redis(bench, name="redis-b", on=b)

    def across_the_cut() -> tuple[bytes, bytes, bytes]:
        with socket.create_connection((b.address, 6379), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            before = sock.recv(64).strip()
            network.cut(b)
            sock.sendall(b"PING\r\n")  # no error: the kernel cannot tell
            try:
                during = sock.recv(64).strip()
            except TimeoutError:
                during = b"silence"
            network.heal(b)
            sock.settimeout(10)  # TCP sends the PING again on its own schedule
            return before, during, sock.recv(64).strip()

    assert a.call(across_the_cut) == (b"+PONG", b"silence", b"+PONG")
    network.cut(b)
    assert a.call(ask, b.address) == b"TimeoutError"  # a new connection: no answer, no refusal
    network.heal(b)
    assert a.call(ask, b.address) == b"+PONG"


def test_a_link_is_cut_both_ways_or_one_way_and_others_are_untouched(network, bench):
    """A cut link drops packets between its two hosts only, both ways or one way."""
    a, b, c = network.host("a"), network.host("b"), network.host("c")
    listeners = {host.name: host.call(udp_listener, host.address) for host in (a, b, c)}

    def hears(sender, receiver) -> bool:
        return sender.call(datagram, receiver.address, 7000, listeners[receiver.name])

    try:
        network.cut_link(a, b)
        assert (hears(a, b), hears(b, a), hears(a, c), hears(c, b)) == (False, False, True, True)
        network.heal_link(a, b)
        network.cut_link(a, b, one_way=True)
        assert (hears(a, b), hears(b, a)) == (False, True)
        network.heal_link(a, b)
        assert (hears(a, b), hears(b, a)) == (True, True)
    finally:
        for sock in listeners.values():
            sock.close()


def test_nothing_outlives_the_network(bench):
    """No link outlives the network: its switch stopped with the bench, or killed as in a crash.

    The switch's namespace holds the bridge and every veth pair: when its holder goes, so do
    they, the machine's end of the gateway included.
    """
    stopped = Network(bench, name="stopped")
    stopped.host("a")
    bench.stop(stopped.switch.holder)
    crashed = Network(bench, name="crashed")
    host = crashed.host("a")
    crashed.switch.holder.process.send_signal(signal.SIGKILL)
    assert not leftover_links(grace=10)
    with pytest.raises(RuntimeError):
        crashed.cut(host)  # the switch is gone: nothing left to cut
    stopped.close()
    crashed.close()
