"""Chapter 04's error strings, verbatim, as python-engineio and nginx print them (docs/troubleshooting.md).

test_nginx_lb.py already asserts the 400 `"Invalid session <sid>"` a client gets behind
round-robin nginx and `gunicorn -w 4`; here, the line the instance logs, nginx's alert
when its connections run out, and HAProxy's refusal to start below the open files it needs.
"""

from __future__ import annotations

import json
import re
import resource
import subprocess
from contextlib import ExitStack
from pathlib import Path

import requests
import websocket

from lab.apps import start_apps
from lab.deps import require_binary
from lab.haproxy import render_config
from lab.processes import REPO_ROOT, free_port, wait_until
from lab.redis_server import start_redis

CHAPTER = "chapters/04_nginx_lb/app.py"
NGINX = "chapters/04_nginx_lb/nginx.conf"
# python-engineio logs an error the first time, then the same text at INFO (base_server.py,
# `_log_error_once`): the first line a log shows ends with this.
FIRST_TIME = " (further occurrences of this error will be logged with level INFO)"


def test_a_long_poll_on_another_instance_is_logged_as_invalid_session(bench):
    """A long-poll on an instance that did not open its session: 400 and the log "Invalid session <sid>"."""
    redis = start_redis(bench)
    opener, other = start_apps(bench, CHAPTER, 2, env={"REDIS_URL": redis.url})

    # The handshake reaches one instance; the next request of the session, another: what
    # round-robin does to every long-polling client.
    opened = requests.get(f"{opener.url}/socket.io/?EIO=4&transport=polling", timeout=5)
    sid = json.loads(opened.text[1:])["sid"]
    answer = requests.post(f"{other.url}/socket.io/?EIO=4&transport=polling&sid={sid}", data="40", timeout=5)

    assert (answer.status_code, answer.text) == (400, f'"Invalid session {sid}"')
    wait_until(
        lambda: f"Invalid session {sid}{FIRST_TIME}" in other.log_text(), timeout=5, what="the log line"
    )
    assert "Invalid session" not in opener.log_text()


# Connections per nginx worker: its listening socket, and two per WebSocket client (the
# client's, and nginx's to the instance), so about 15 clients fill it.
WORKER_CONNECTIONS = 32
MAX_CLIENTS = WORKER_CONNECTIONS  # bounded: twice what fits
NOT_ENOUGH = f"{WORKER_CONNECTIONS} worker_connections are not enough"


def with_few_connections(folder: Path) -> str:
    """The chapter's nginx.conf with its `limits` section cut down to one worker of 32 connections."""
    text = (REPO_ROOT / NGINX).read_text()
    limits = re.compile(r"# --8<-- \[start:limits\].*# --8<-- \[end:limits\]", re.S)
    small = f"worker_processes 1;\nevents {{ worker_connections {WORKER_CONNECTIONS}; }}"
    path = folder / "nginx-few-connections.conf"
    path.write_text(limits.sub(small, text))
    return str(path)


def test_nginx_out_of_worker_connections_says_they_are_not_enough(deploy, tmp_path):
    """WebSockets beyond worker_connections fail; nginx logs "32 worker_connections are not enough"."""
    deployment = deploy(with_few_connections(tmp_path), instances=1)
    url = deployment.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"

    refused = 0
    with ExitStack() as held:
        # Each WebSocket stays open, holding two of the worker's connections, until the end.
        for _ in range(MAX_CLIENTS):
            try:
                ws = websocket.create_connection(url, timeout=5)
                held.callback(ws.close)
                assert ws.recv().startswith("0{")  # Engine.IO's open packet: it went through to the app
            except (websocket.WebSocketException, OSError):
                refused += 1
            if NOT_ENOUGH in deployment.proxy.log_text():
                break
        wait_until(lambda: NOT_ENOUGH in deployment.proxy.log_text(), timeout=5, what="nginx's alert")
    assert refused >= 1
    alert = next(line for line in deployment.proxy.log_text().splitlines() if NOT_ENOUGH in line)
    assert "[alert]" in alert, alert


def test_haproxy_refuses_to_start_below_the_open_files_its_maxconn_needs(tmp_path):
    """HAProxy, run on the chapter's haproxy.cfg under a hard limit of 1,024 open files, refuses to start."""
    config = (REPO_ROOT / "chapters/04_nginx_lb/haproxy.cfg").read_text(encoding="utf-8")
    maxconn = int(re.search(r"^\s*maxconn\s+(\d+)", config, re.M).group(1))
    path = tmp_path / "haproxy.cfg"
    path.write_text(render_config(config, free_port(), [("chat-1", f"127.0.0.1:{free_port()}")]))

    def low_limit() -> None:  # in the child, before haproxy runs: what a default `ulimit -n` gives
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    ran = subprocess.run(
        [require_binary("haproxy"), "-f", str(path), "-db"],
        preexec_fn=low_limit,
        capture_output=True,
        text=True,
        timeout=10,
    )

    assert ran.returncode != 0
    # Two descriptors per connection (the browser's and the instance's), and a few of its own:
    # the string haproxy.cfg quotes, which docs/troubleshooting.md lists.
    wanted = re.search(r"Cannot raise FD limit to (\d+), limit is 1024\.", ran.stderr)
    assert wanted, ran.stderr
    assert 2 * maxconn <= int(wanted.group(1)) <= 2 * maxconn + 100, ran.stderr
