"""The knobs table measures what it says: each row's knob is in force, and the load client speaks it.

A row whose knob silently did not take would be measured as the baseline and published as a
finding. So each row's server is asked what it runs with, and the lean client, which the bench
trusts to count, must count every delivery in the row's protocol: msgpack binary packets, and
compressed frames once the server agrees to per-message deflate.
"""

from __future__ import annotations

import asyncio

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
}
# What each row's server must report at /knobs: the baseline with one thing changed.
IN_FORCE = {
    "baseline": {},
    "gevent-websocket": {"websocket": "gevent-websocket"},
    "orjson": {"json": "Orjson"},
    "msgpack": {"serializer": "MsgPackPacket"},
    "deflate": {},  # the client's knob: the server is the baseline
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
    # Compressed frames are read only where the server agreed to compress (simple-websocket does).
    assert inflating == [knob.deflate] * CLIENTS


def test_gevent_websocket_never_agrees_to_per_message_deflate(bench, packages):
    """gevent-websocket turns down the per-message deflate a browser offers: its frames stay uncompressed."""
    server = knobs.start_row(bench, "gevent-websocket", knobs.KNOBS["gevent-websocket"])
    inflating, unexpected = asyncio.run(_count_every_delivery(server.url, {"deflate": True}))
    assert inflating == [False] * CLIENTS and unexpected == 0


def test_the_gunicorn_row_serves_the_chapters_production_command(bench):
    """The gunicorn row is chapter 02's own gunicorn.conf.py and wsgi.py: gevent, under gunicorn."""
    server = knobs.start_row(bench, "gunicorn", knobs.KNOBS["gunicorn"])
    answer = healthz(server.url)
    assert answer["async_mode"] == "gevent" and answer["server"].startswith("gunicorn")


@pytest.mark.browser
def test_a_browser_page_gets_per_message_deflate_from_the_chapter_unasked(bench, open_page):
    """Chromium's WebSocket to chapter 02's gevent page comes up compressed: the deflate row's case."""
    app = start_app(bench, "chapters/02_async_modes/run_gevent.py")
    page = open_page(app.url + "/")
    page.get_by_test_id("transport").filter(has_text="websocket").wait_for(timeout=10_000)
    # The WebSocket's `extensions`: what the server agreed to of what the browser offered.
    assert "permessage-deflate" in page.evaluate("socket.io.engine.transport.ws.extensions")
