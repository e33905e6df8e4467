"""Error strings every chapter shares, verbatim, as python-engineio prints them (docs/troubleshooting.md)."""

from __future__ import annotations

import re
import socket
import sys

import pytest
import requests

from lab.apps import healthz, start_app
from lab.processes import REPO_ROOT
from lab.raw import RAW_TIMEOUT, RawWebSocket
from lab.redis_server import start_redis

UNSUPPORTED = "The client is using an unsupported version of the Socket.IO or Engine.IO protocols"
# python-engineio logs an error the first time, then the same text at INFO (base_server.py,
# `_log_error_once`): the first line a log shows ends with this.
FIRST_TIME = " (further occurrences of this error will be logged with level INFO)"
# A port another program listens on, as Werkzeug's development server and gevent's server say it.
WERKZEUG_PORT_TAKEN = (
    "Address already in use\nPort {port} is in use by another program. Either identify and stop that"
    " program, or start the server with a different port."
)
GEVENT_PORT_TAKEN = "OSError: [Errno 98] Address already in use: ('127.0.0.1', {port})"
EVENTLET_PORT_TAKEN = "OSError: [Errno 98] Address already in use"
PORT_TAKEN = {"werkzeug": WERKZEUG_PORT_TAKEN, "gevent": GEVENT_PORT_TAKEN, "eventlet": EVENTLET_PORT_TAKEN}
# Each chapter's entry point, and the server it runs on.
SERVERS = {
    "01": ("chapters/01_basic_chat/app.py", "werkzeug"),
    "02-threading": ("chapters/02_async_modes/run_threading.py", "werkzeug"),
    "02-gevent": ("chapters/02_async_modes/run_gevent.py", "gevent"),
    # Its CPU workers kept it alive once: chapter 02's serve() shuts them down when the server fails.
    "02-eventlet": ("chapters/02_async_modes/run_eventlet.py", "eventlet"),
    "03": ("chapters/03_redis_scaling/app.py", "gevent"),
    "04": ("chapters/04_nginx_lb/app.py", "gevent"),
    "05": ("chapters/05_celery/app.py", "gevent"),
    "06": ("chapters/06_delivery_guarantees/app.py", "gevent"),
}
ON_GEVENT = [chapter for chapter, (_, server) in SERVERS.items() if server == "gevent"]
NEEDS_A_TOKEN = {"05"}  # its connect handler refuses a client without one


# gevent's pywsgi, left to itself, reading what a WebSocket client sent after its session ended as
# the next HTTP request line (the guard stops it): WebSocket frames, a text frame (\x81) or a close
# frame (\x88), each with a masked payload (\x8_), quoted by repr(). Which complaint depends on
# where the random mask puts whitespace.
LEFTOVER_FRAMES = re.compile(
    r"<gevent\._socket3\.socket at 0x[0-9a-f]+ object, fd=\d+, family=2, type=1, proto=0>: "
    r"\(from \('127\.0\.0\.1', (?P<port>\d+)\)\) "
    r"(?:Invalid HTTP method: |Invalid http version: |Expected GET method; Got command=)['\"]\\x8[18]\\x8"
)


@pytest.mark.parametrize(
    "script",
    [
        pytest.param("chapters/01_basic_chat/app.py", id="01-threading"),
        pytest.param("chapters/02_async_modes/run_gevent.py", id="02-gevent"),
    ],
)
def test_an_old_protocol_client_gets_a_400_naming_the_version_mismatch(bench, script):
    """A Socket.IO 2.x client (`EIO=3`) gets 400 "...unsupported version..." and the server logs it."""
    app = start_app(bench, script)

    # The first request of a Socket.IO 2.x client (the JS client 2.x, python-socketio 4.x).
    old = requests.get(f"{app.url}/socket.io/?EIO=3&transport=polling&t=N1a2b3c", timeout=5)
    assert (old.status_code, old.text) == (400, f'"{UNSUPPORTED}"')
    assert f"{UNSUPPORTED}{FIRST_TIME}" in app.log_text()

    # The same request with EIO=4, what Socket.IO 3.x and 4.x clients send, opens a session.
    current = requests.get(f"{app.url}/socket.io/?EIO=4&transport=polling&t=N1a2b3c", timeout=5)
    assert current.status_code == 200 and current.text.startswith('0{"sid":'), current.text


@pytest.mark.parametrize("chapter", ON_GEVENT)
def test_a_websocket_client_that_leaves_gevents_server_leaves_no_line_in_its_log(bench, clients, chapter):
    """Frames a WebSocket client sends after its close: the guard has gevent end the connection, no line."""
    script, _ = SERVERS[chapter]
    redis = start_redis(bench)
    app = start_app(bench, script, env={"REDIS_URL": redis.url, "SECRET_KEY": "error-strings"})
    auth = None
    if chapter in NEEDS_A_TOKEN:
        auth = {"token": requests.post(f"{app.url}/login", json={"name": "ann"}, timeout=5).json()["token"]}
    stays = clients("stays").connect(app.url, "polling", auth=auth)

    # python-socketio's client says goodbye, and its session ends cleanly.
    leaves = clients("leaves").connect(app.url, "websocket", auth=auth)
    leaves.disconnect()
    assert leaves.received("disconnect") == ["client disconnect"]

    # By hand: a close frame, the server's answer, then websocket-client's own reply to it. Left
    # to itself, gevent's server would read that reply as its next HTTP request and log it (the
    # troubleshooting page's line). With the guard it has ended the connection instead.
    raw = RawWebSocket(app.url, auth=auth)
    raw.ws.send_close()
    while raw.ws.recv() != "":  # "" is the server's close frame, which websocket-client answers
        pass
    raw.ws.sock.settimeout(RAW_TIMEOUT)
    try:
        rest = raw.ws.sock.recv(4096)
    except ConnectionResetError:  # a reply that reached the closed socket: ended all the same
        rest = b""
    assert rest == b"", f"the server went on after the close handshake: {rest!r}"

    # Nothing else: no line for either client's leftovers, the other client still there.
    lines = [line for line in app.log_text().splitlines() if not line.startswith("=== ")]
    assert not any(map(LEFTOVER_FRAMES.match, lines)), lines
    assert all(" on http://127.0.0.1:" in line for line in lines), lines
    assert stays.sio.connected and healthz(app.url)["status"] == "ok"
    assert clients("next").connect(app.url, "websocket", auth=auth).sio.connected


@pytest.mark.parametrize("chapter", SERVERS)
def test_a_chapter_started_on_a_taken_port_exits_saying_the_address_is_in_use(bench, chapter):
    """Started on a port another program listens on, a chapter exits (status 1): "Address already in use"."""
    script, server = SERVERS[chapter]
    redis = start_redis(bench)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        env = {"HOST": "127.0.0.1", "PORT": str(port), "REDIS_URL": redis.url}
        result = bench.run("taken-port", [sys.executable, str(REPO_ROOT / script)], env=env)
    assert result.returncode == 1, result.stdout
    assert result.stdout.rstrip().endswith(PORT_TAKEN[server].format(port=port)), result.stdout
