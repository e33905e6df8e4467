"""The lean load client against python-socketio's own client: same messages, acks, heartbeats.

The bench's figures are only as good as the client that counts them, so it is
checked against a real server process and against python-socketio's client
receiving the same broadcasts.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from lab.apps import start_app
from lab.deps import require_binary
from lab.loadclient import LoadClient, latency_summary, loopback_sources
from lab.processes import REPO_ROOT

CHAPTER02_GEVENT = "chapters/02_async_modes/run_gevent.py"
NODE_SERVER = REPO_ROOT / "bench" / "node_reference" / "server.js"
LEAN_CLIENTS = 12


async def wait_for(what: str, condition, timeout: float = 5.0) -> None:
    """Poll `condition` on the event loop until it holds, or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


def broadcasts(conn) -> list:
    return [data for name, data in conn.events if name == "broadcast"]


def start_node(bench, **env):
    node = require_binary("node")
    return start_app(
        bench, NODE_SERVER, name="node-1", env=env, command=lambda port: [node, str(NODE_SERVER)]
    )


def test_lean_clients_receive_what_python_socketio_receives(bench, clients):
    """Lean clients and a python-socketio client receive the same broadcasts, exactly once each, in order."""
    app = start_app(bench, CHAPTER02_GEVENT)
    reference = clients("python-socketio").connect(app.url)

    async def scenario():
        # Three loopback source addresses, as the bench spreads its thousands of connections.
        async with LoadClient(app.url, sources=loopback_sources(3), keep_events=True) as fleet:
            opened = await fleet.open(LEAN_CLIENTS, timeout=15)
            assert opened.connected == LEAN_CLIENTS, opened.errors
            sources = {conn.transport.get_extra_info("sockname")[0] for conn in fleet.connections}
            assert sources == {"127.0.0.1", "127.0.1.1", "127.0.2.1"}

            # Five numbered broadcasts from a lean client, all counted in...
            first = await fleet.measure(5, sequential=False, timeout=10)
            # ...one from python-socketio's client, in between, acknowledged...
            ack = await asyncio.to_thread(reference.call, "broadcast", {"text": "from python-socketio"})
            assert ack == {"ok": True}
            await wait_for(
                "the python-socketio broadcast at every lean client",
                lambda: all(len(broadcasts(c)) == 6 for c in fleet.connections),
            )
            # ...and five more from a lean client.
            second = await fleet.measure(5, sequential=True, timeout=10)
            for report in (first, second):
                assert report.complete and report.disorder == 0, report.as_dict()
                assert report.delivered == 5 * LEAN_CLIENTS
            return [broadcasts(conn) for conn in fleet.connections]

    lean = asyncio.run(scenario())
    reference.wait_for("11 broadcasts", lambda c: len(c.received("broadcast")) == 11)
    expected = reference.received("broadcast")
    texts = [payload["text"] for payload in expected]
    assert len(set(texts)) == 11 and "from python-socketio" in texts
    # expected: every lean client holds python-socketio's list, item for item, in its order.
    for received in lean:
        assert received == expected


def test_acks_answer_like_python_socketio(bench, clients):
    """An emit with an ack id gets the answer python-socketio's call() gets, for a bad payload too."""
    app = start_app(bench, CHAPTER02_GEVENT)
    reference = clients("python-socketio").connect(app.url)

    async def scenario():
        async with LoadClient(app.url, keep_events=True) as fleet:
            await fleet.open(1, timeout=10)
            conn = fleet.connections[0]
            ping = await fleet.call(conn, "ping")
            refused = await fleet.call(conn, "broadcast", {"text": 5})
            await wait_for("the error event", lambda: any(name == "error" for name, _ in conn.events))
            rtt = await fleet.round_trip(conn)
            return ping, refused, [data for name, data in conn.events if name == "error"], rtt

    ping, refused, errors, rtt = asyncio.run(scenario())
    assert ping == reference.call("ping") == {"ok": True}
    assert refused == reference.call("broadcast", {"text": 5})
    assert refused["ok"] is False
    assert errors == [{"event": "broadcast", "reason": refused["reason"]}]
    assert 0 < rtt < 5


@pytest.mark.parametrize("answer", [True, False], ids=["answered", "unanswered"])
def test_heartbeats_keep_a_connection_alive(bench, answer):
    """Answering the server's pings keeps a connection open; leaving them unanswered gets it dropped."""
    # socket.io's Node server with 200 ms pings and a 300 ms grace: heartbeats within a second.
    node = start_node(bench, PING_INTERVAL_MS="200", PING_TIMEOUT_MS="300")

    async def scenario():
        async with LoadClient(node.url, answer_heartbeats=answer) as fleet:
            await fleet.open(1, timeout=10)
            if answer:
                # Five ping intervals: without the answers the server would have closed it by then.
                await wait_for("5 heartbeats answered", lambda: fleet.heartbeats >= 5, timeout=5)
                assert await fleet.call(fleet.connections[0], "ping") == {"ok": True}
            else:
                await wait_for("the server to drop the silent client", lambda: fleet.dropped == 1, timeout=5)
            return fleet.dropped, fleet.connections[0].alive

    dropped, alive = asyncio.run(scenario())
    assert (dropped, alive) == ((0, True) if answer else (1, False))


def test_broadcast_latency_is_counted_per_delivery(bench):
    """Every delivery of a triggered broadcast is counted once, with a latency from its own send time."""
    node = start_node(bench)

    async def scenario():
        async with LoadClient(node.url, sources=loopback_sources(2)) as fleet:
            await fleet.open(50, timeout=10)
            return await fleet.measure(4, sequential=True, timeout=10)

    report = asyncio.run(scenario())
    assert report.complete
    assert (report.expected, report.delivered, report.latency["count"]) == (200, 200, 200)
    assert 0 < report.latency["p50_ms"] <= report.latency["p99_ms"] <= report.latency["max_ms"] < 5000


def test_refuses_addresses_outside_loopback():
    """The load client talks to 127.0.0.0/8 only: another address is refused before any traffic."""
    with pytest.raises(ValueError, match="loopback"):
        LoadClient("http://10.0.0.1:5000")
    with pytest.raises(ValueError, match="loopback"):
        LoadClient("http://127.0.0.1:5000", sources=("192.168.1.10",))
    assert latency_summary([]) == {"count": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
