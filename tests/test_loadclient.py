"""The lean load client against python-socketio's own client: same messages, acks, heartbeats.

The bench's figures are only as good as the client that counts them, so it is
checked against a real server process and against python-socketio's client
receiving the same broadcasts. Each test that reads sockets runs twice on Linux: on
epoll, as the bench does, and with the `selectors` fallback forced (`epoll=False`), the
path a Mac takes (kqueue there), to the same results.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import select
import time

import pytest

from bench.loadclient import (
    HAS_EPOLL,
    LoadClient,
    SelectorPoll,
    latency_summary,
    loopback_sources,
    websocket_frame,
)
from lab.apps import start_app
from lab.deps import require_binary
from lab.processes import REPO_ROOT

CHAPTER02_GEVENT = "chapters/02_async_modes/run_gevent.py"
NODE_SERVER = REPO_ROOT / "bench" / "node_reference" / "server.js"
LEAN_CLIENTS = 12


@pytest.fixture(
    params=[True, False] if HAS_EPOLL else [False], ids=lambda epoll: "epoll" if epoll else "selectors"
)
def epoll(request) -> bool:
    """LoadClient's `epoll`: True reads the sockets through an epoll set, False through `selectors`."""
    return request.param


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


def test_lean_clients_receive_what_python_socketio_receives(bench, clients, epoll):
    """Lean clients and a python-socketio client receive the same broadcasts, exactly once each, in order."""
    app = start_app(bench, CHAPTER02_GEVENT)
    reference = clients("python-socketio").connect(app.url)

    async def scenario():
        # Three loopback source addresses, as the bench spreads its thousands of connections.
        async with LoadClient(app.url, sources=loopback_sources(3), keep_events=True, epoll=epoll) as fleet:
            opened = await fleet.open(LEAN_CLIENTS, timeout=15)
            assert opened.connected == LEAN_CLIENTS, opened.errors
            sources = {conn.sock.getsockname()[0] for conn in fleet.connections}
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


def test_acks_answer_like_python_socketio(bench, clients, epoll):
    """An emit with an ack id gets the answer python-socketio's call() gets, for a bad payload too."""
    app = start_app(bench, CHAPTER02_GEVENT)
    reference = clients("python-socketio").connect(app.url)

    async def scenario():
        async with LoadClient(app.url, keep_events=True, epoll=epoll) as fleet:
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
def test_heartbeats_keep_a_connection_alive(bench, answer, epoll):
    """Answering the server's pings keeps a connection open; leaving them unanswered gets it dropped."""
    # socket.io's Node server with 200 ms pings and a 300 ms grace: heartbeats within a second.
    node = start_node(bench, PING_INTERVAL_MS="200", PING_TIMEOUT_MS="300")

    async def scenario():
        async with LoadClient(node.url, answer_heartbeats=answer, epoll=epoll) as fleet:
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


def test_broadcast_latency_is_counted_per_delivery(bench, epoll):
    """Every delivery of a triggered broadcast is counted once, with a latency from its own send time."""
    node = start_node(bench)

    async def scenario():
        async with LoadClient(node.url, sources=loopback_sources(2), epoll=epoll) as fleet:
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


def server_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A frame as a server sends it (unmasked), in the shortest length form, per RFC 6455 section 5.2."""
    n = len(payload)
    length = (
        bytes((n,))
        if n < 126
        else (bytes((126,)) + n.to_bytes(2, "big") if n < 65536 else bytes((127,)) + n.to_bytes(8, "big"))
    )
    return bytes(((0x80 if fin else 0) | opcode,)) + length + payload


def test_frames_of_every_length_form_and_fragments_are_read(epoll):
    """The WebSocket reader handles 2- and 8-byte lengths, split reads, fragments, pings and a close frame."""
    texts = ["#x#" + "a" * 200, "#y#" + "b" * 70_000, "#z#" + "fragmented"]
    heard: dict[str, bytes] = {}

    async def scripted_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The upgrade, answered as RFC 6455 section 4.2.2 says...
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        key = next(
            line.split(":", 1)[1].strip()
            for line in head.split("\r\n")
            if line.lower().startswith("sec-websocket-key")
        )
        accept = base64.b64encode(
            hashlib.sha1(key.encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
        )
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        # ...Engine.IO's open packet, the client's 40 (masked, zero key) and the namespace's answer...
        writer.write(server_frame(0x1, b'0{"sid":"e","pingInterval":25000,"pingTimeout":20000}'))
        heard["join"] = await reader.readexactly(8)
        writer.write(server_frame(0x1, b'40{"sid":"s"}'))
        # ...a 2-byte length, an 8-byte length (more than one read), and a message in three
        # fragments with a ping between them, all in one write.
        packets = [f'42["broadcast",{json.dumps({"text": text})}]'.encode() for text in texts]
        writer.write(
            server_frame(0x1, packets[0])
            + server_frame(0x1, packets[1])
            + server_frame(0x1, packets[2][:5], fin=False)
            + server_frame(0x9, b"hi")
            + server_frame(0x0, packets[2][5:9], fin=False)
            + server_frame(0x0, packets[2][9:])
        )
        heard["pong"] = await reader.readexactly(8)
        # Last, a close frame: the client counts the connection as dropped.
        writer.write(server_frame(0x8, b""))
        await writer.drain()
        await reader.read()  # until the client hangs up
        writer.close()

    async def scenario():
        server = await asyncio.start_server(scripted_server, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server, LoadClient(f"http://127.0.0.1:{port}", keep_events=True, epoll=epoll) as fleet:
            opened = await fleet.open(1, timeout=5)
            assert opened.connected == 1, opened.errors
            # The sockets are read through what was asked for: epoll itself, or the selectors module.
            assert type(fleet._epoll) is (select.epoll if epoll else SelectorPoll)
            conn = fleet.connections[0]
            await wait_for("three broadcasts", lambda: len(broadcasts(conn)) == 3)
            await wait_for("the close frame to drop the connection", lambda: fleet.dropped == 1)
            return conn.sid, broadcasts(conn), fleet.unexpected

    sid, received, unexpected = asyncio.run(scenario())
    assert (sid, unexpected) == ("s", 0)
    assert [payload["text"] for payload in received] == texts
    # Client frames are masked with an all-zero key: the payload reads as it is.
    assert heard == {"join": b"\x81\x82\0\0\0\0" + b"40", "pong": b"\x8a\x82\0\0\0\0" + b"hi"}
    assert websocket_frame(b"a" * 200)[:8] == b"\x81\xfe\x00\xc8\0\0\0\0"
    assert websocket_frame(b"a" * 70_000)[:14] == b"\x81\xff" + (70_000).to_bytes(8, "big") + b"\0\0\0\0"
