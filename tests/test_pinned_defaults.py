"""The defaults of the pinned libraries that the pages rely on, read from those libraries.

A page that says "gunicorn caps the gevent worker at 1,000 connections" cites gunicorn's
documentation; this holds the claim to the version requirements/ pins, so an upgrade that
changes a default fails here rather than leaving the page wrong.
"""

from __future__ import annotations

import inspect
import json
import socket
import subprocess
import sys
import types
import warnings

import engineio
import gunicorn.config
import kombu.transport.redis
import pytest
import simple_websocket
import socketio
import socketio.redis_manager
from flask import Flask
from flask_socketio import SocketIO

from lab.processes import REPO_ROOT


def defaults(function) -> dict:
    return {name: p.default for name, p in inspect.signature(function).parameters.items()}


def test_gunicorn_caps_a_gevent_worker_at_1000_connections():
    """gunicorn's `worker_connections` defaults to 1,000 (chapter 02's gunicorn command raises it)."""
    assert gunicorn.config.WorkerConnections.default == 1000


def test_eventlet_serves_at_most_1024_connections_unless_told():
    """eventlet.wsgi.server's `max_size` defaults to 1,024 simultaneous connections."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eventlet's own deprecation notice, on import
        import eventlet.wsgi

    assert eventlet.wsgi.DEFAULT_MAX_SIMULTANEOUS_REQUESTS == 1024
    assert defaults(eventlet.wsgi.server)["max_size"] in (None, 1024)


def test_the_python_client_reconnects_after_about_a_second():
    """python-socketio's client waits 1 s ± 0.5 s before its first reconnect, then at most 5 s + 0.5 s."""
    options = defaults(socketio.Client.__init__)
    assert options["reconnection"] is True
    assert (options["reconnection_delay"], options["randomization_factor"]) == (1, 0.5)
    assert options["reconnection_delay_max"] == 5


def test_the_server_pings_every_25_seconds_well_inside_nginx_60_second_read_timeout():
    """python-engineio pings every 25 s and waits 20 s for the pong: a live connection is never quiet 60 s."""
    options = defaults(engineio.Server.__init__)
    assert (options["ping_interval"], options["ping_timeout"]) == (25, 20)
    assert options["ping_interval"] + options["ping_timeout"] < 60


def test_engineio_reads_at_most_1_000_000_bytes_of_one_packet():
    """python-engineio's `max_http_buffer_size` is 1,000,000 bytes per packet, and Flask-SocketIO keeps it."""
    assert defaults(engineio.Server.__init__)["max_http_buffer_size"] == 1_000_000
    unguarded = SocketIO(Flask(__name__), async_mode="threading")
    assert unguarded.server.eio.max_http_buffer_size == 1_000_000


class Enough(Exception):
    """Stops the listener's retry loop once the waits that matter are recorded."""


def test_the_redis_listener_retries_after_1_2_4_seconds_and_never_waits_more_than_60(monkeypatch):
    """Cut off from Redis, python-socketio's listener retries after 1, 2, 4 ... s, and at most 60 s apart."""
    waits: list[float] = []

    def record(seconds: float) -> None:
        # The listener's own wait, recorded instead of slept: the loop, the refusals and the
        # doubling are the library's, and the test does not sit through two minutes of them.
        waits.append(seconds)
        if len(waits) == 9:
            raise Enough

    monkeypatch.setattr(socketio.redis_manager, "time", types.SimpleNamespace(sleep=record))
    # A port that is bound but not listening: every connection to it is refused at once.
    with socket.socket() as nobody:
        nobody.bind(("127.0.0.1", 0))
        manager = socketio.RedisManager(f"redis://127.0.0.1:{nobody.getsockname()[1]}/0")
        with pytest.raises(Enough):
            next(manager._redis_listen_with_retries())
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60, 60]


# Chapter 05's Celery app as its worker loads it (`celery -A make_celery worker`, in its folder):
# in a process of its own, so that the chapter's modules stay out of this one.
CHAPTER05_BROKER_OPTIONS = """
import json
from make_celery import celery_app
print(json.dumps(celery_app.conf.broker_transport_options))
"""


def test_celery_redelivers_a_task_whose_worker_died_after_an_hour():
    """Celery redelivers an unacknowledged Redis task after the visibility timeout: 1 hour, in chapter 05."""
    assert kombu.transport.redis.Channel.visibility_timeout == 3600
    # Chapter 05 sets no transport options of its own: its broker keeps that hour.
    ran = subprocess.run(
        [sys.executable, "-c", CHAPTER05_BROKER_OPTIONS],
        cwd=REPO_ROOT / "chapters" / "05_celery",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert "visibility_timeout" not in json.loads(ran.stdout.strip().splitlines()[-1])


def test_node_frames_a_broadcast_once_and_python_engineio_frames_it_per_connection():
    """The knobs page's account of the CPU gap to Node's server, held to the pinned sources.

    socket.io's in-memory adapter builds a broadcast's WebSocket frame once and engine.io sends
    those bytes to each connection, when compression is off. python-engineio's writer hands each
    connection's packet to its own simple-websocket, which frames it; simple-websocket's options
    have nothing that shares a frame between connections.
    """
    node_modules = REPO_ROOT / "node_modules"
    adapter = (node_modules / "socket.io-adapter/dist/in-memory-adapter.js").read_text(encoding="utf-8")
    assert "packetOpts.wsPreEncodedFrame = WebSocket.Sender.frame(" in adapter
    transport = (node_modules / "engine.io/build/transports/websocket.js").read_text(encoding="utf-8")
    assert "!this.perMessageDeflate" in transport
    assert "sendFrame(packet.options.wsPreEncodedFrame" in transport

    assert "ws.send(pkt.encode())" in inspect.getsource(engineio.socket.Socket._websocket_handler)
    options = list(inspect.signature(simple_websocket.Server.__init__).parameters)[2:]
    assert options == [
        "subprotocols",
        "receive_bytes",
        "ping_interval",
        "max_message_size",
        "thread_class",
        "event_class",
        "selector_class",
    ]
