"""The knobs table measures what it says: each row's knob is in force, and the load client speaks it.

A row whose knob silently did not take would be measured as the baseline and published as a
finding. So each row's server is asked what it runs with, and the lean client, which the bench
trusts to count, must count every delivery in the row's protocol: msgpack binary packets, and
compressed frames where the server agrees to the per-message deflate every browser offers.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest

from bench import knobs
from bench.loadclient import LoadClient
from lab.apps import get_json, healthz, start_app

BASELINE = {
    "websocket": "simple-websocket",
    "json": "engineio.json",
    "serializer": "Packet",
    "ping_interval": 25,
    "guard": "on",
    "compression": "off",
    "gc": "default",
    "gc_thresholds": [700, 10, 10],
    "max_text": 500,
}
# What each row's server must report at /knobs: the baseline with one thing changed.
IN_FORCE = {
    "baseline": {},
    "gevent-websocket": {"websocket": "gevent-websocket"},
    "orjson": {"json": "Orjson"},
    "msgpack": {"serializer": "MsgPackPacket"},
    "deflate": {"compression": "on"},
    "gc-freeze": {"gc": "freeze"},
    "gc-thresholds": {"gc": "thresholds", "gc_thresholds": [50_000, 20, 100]},
}
CLIENTS = 10


async def _count_every_delivery(url: str, options: dict) -> tuple[list[bool], int]:
    """Broadcasts one at a time, then in a burst, every one counted; which connections inflate, and strays."""
    async with LoadClient(url, keep_events=True, **options) as fleet:
        opened = await fleet.open(CLIENTS, timeout=15)
        assert opened.connected == CLIENTS, opened.errors
        for sequential in (True, False):
            report = await fleet.measure(3, sequential=sequential, timeout=10)
            assert report.complete and report.disorder == 0, report.as_dict()
        # The texts themselves, decoded from the row's protocol: "#<seq>#", in order.
        for conn in fleet.connections:
            assert [data["text"] for name, data in conn.events if name == "broadcast"] == [
                f"#{seq}#" for seq in range(6)
            ]
        assert await fleet.call(fleet.connections[1], "ping") == {"ok": True}
        return [conn._inflater is not None for conn in fleet.connections], fleet.unexpected


@pytest.fixture(scope="module")
def packages():
    knobs.require_packages()  # MissingDependency names the install command (a failure under CI=true)


@pytest.mark.parametrize("key", list(IN_FORCE))
def test_each_row_runs_its_knob_and_the_load_client_counts_every_delivery_in_it(bench, packages, key):
    """Each knobs-table row runs its knob, and the lean client counts every delivery in its protocol."""
    knob = knobs.KNOBS[key]
    server = knobs.start_row(bench, key, knob)
    assert get_json(f"{server.url}/knobs") == {**BASELINE, **IN_FORCE[key]}
    inflating, unexpected = asyncio.run(_count_every_delivery(server.url, knobs.client_options(knob)))
    assert unexpected == 0
    # Every row's client offers compression; it is agreed to only where the guard lets the offer through.
    assert inflating == [knob.compression] * CLIENTS


def test_gevent_websocket_never_agrees_to_per_message_deflate(bench, packages):
    """gevent-websocket turns down a browser's per-message deflate, even with the guard's compression on."""
    knob = knobs.KNOBS["gevent-websocket"]
    compression_on = replace(knob, env={**knob.env, "KNOB_COMPRESSION": "on"})
    server = knobs.start_row(bench, "gevent-websocket", compression_on)
    assert get_json(f"{server.url}/knobs")["compression"] == "on"
    inflating, unexpected = asyncio.run(_count_every_delivery(server.url, {"deflate": True}))
    assert inflating == [False] * CLIENTS and unexpected == 0


def test_the_gunicorn_row_serves_the_chapters_production_command(bench):
    """The gunicorn row is chapter 02's own gunicorn.conf.py and wsgi.py: gevent, under gunicorn."""
    server = knobs.start_row(bench, "gunicorn", knobs.KNOBS["gunicorn"])
    answer = healthz(server.url)
    assert answer["async_mode"] == "gevent" and answer["server"].startswith("gunicorn")


@pytest.mark.browser
@pytest.mark.parametrize("compression", ["off", "on"], ids=["as-the-chapter-ships", "compression-on"])
def test_a_browsers_websocket_to_the_chapter_comes_up_uncompressed_unless_compression_is_on(
    bench, open_page, compression
):
    """Chromium offers per-message deflate; chapter 02's gevent page refuses it, as the guard ships."""
    if compression == "on":
        app = start_app(bench, knobs.KNOB_SERVER, env={"KNOB_COMPRESSION": "on"})
    else:
        app = start_app(bench, "chapters/02_async_modes/run_gevent.py")
    page = open_page(app.url + "/")
    page.get_by_test_id("transport").filter(has_text="websocket").wait_for(timeout=10_000)
    # The WebSocket's `extensions`: what the server agreed to of what the browser offered.
    agreed = page.evaluate("socket.io.engine.transport.ws.extensions")
    assert agreed.startswith("permessage-deflate") if compression == "on" else agreed == "", agreed


def in_a_thread(function, *args):
    """Run a bench stage (it starts its own event loop) away from a browser test's loop in this thread."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(function, *args).result()


PAIR = {"first", "against_us", "row_us"}
SMALL = replace(
    knobs.QUICK, pair_clients=10, pairs=2, pair_deliveries=200, wire_clients=5, wire_broadcasts=10
)


def test_a_pair_serves_both_sides_at_once_and_bursts_on_each_in_turn(bench, packages):
    """A knobs-table verdict's pairs: both servers up, bursts in turns (AB, BA), every delivery counted."""
    found = in_a_thread(knobs._pair, bench, "baseline", "gc-freeze", SMALL, knobs.common.Budget(60))
    assert "broke" not in found, found
    assert [pair["first"] for pair in found["pairs"]] == ["against", "row"]
    # Bursts this small may read as no CPU at all (10 ms ticks): the interval is bench/stats.py's test.
    assert found["deliveries_per_burst"] == 200 and all(set(pair) == PAIR for pair in found["pairs"])


def test_compression_reads_fewer_bytes_per_delivery_only_where_it_is_on(bench, packages):
    """The wire table's payloads: every delivery counted, and compressed only with the guard's setting on."""
    found = in_a_thread(knobs._wire, bench, SMALL, knobs.common.Budget(60))
    for payload in knobs.PAYLOADS:
        off, on = found[payload]["off"], found[payload]["on"]
        assert (off["compressed"], on["compressed"]) == (False, True), found
        assert on["bytes_per_delivery"] < off["bytes_per_delivery"], found


def test_the_knob_server_reports_each_older_collection_on_the_clients_clock(bench, packages):
    """/gc gives each generation 1 and 2 collection's start on the clock the load client's rounds use."""
    server = knobs.start_row(bench, "gc", knobs.KNOBS["baseline"])
    before = time.perf_counter()
    assert get_json(f"{server.url}/gc?collect=2")
    events = get_json(f"{server.url}/gc")["events"]
    assert any(generation == 2 and before <= began <= time.perf_counter() for began, generation, _ in events)


def test_the_gc_thresholds_row_measures_the_thresholds_chapter_02_ships(bench, packages):
    """The knob server's thresholds are chapter 02's gunicorn.conf.py's, which the gunicorn row runs."""
    server = knobs.start_row(bench, "gc-thresholds", knobs.KNOBS["gc-thresholds"])
    shipped = knobs.start_row(bench, "gunicorn", knobs.KNOBS["gunicorn"])
    assert healthz(shipped.url)["gc_thresholds"] == get_json(f"{server.url}/knobs")["gc_thresholds"]
