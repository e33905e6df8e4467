"""Chapter 03's error strings, verbatim, as the pinned libraries print them (docs/troubleshooting.md).

What python-socketio 5.x does, in socketio/redis_manager.py:

- RedisManager.initialize() runs on the first client's connect (socketio/server.py,
  `manager_initialized`). Under gevent or eventlet it checks that `socket` is monkey
  patched, and raises "Redis requires a monkey patched socket library to work with <mode>".
  It has started the queue's listener first, on an unpatched socket: under gevent that
  listener blocks the whole process, so every request after the first hangs.
- RedisManager._publish() tries twice: "Cannot publish to redis... retrying", then
  "Cannot publish to redis... giving up", and drops the message (python-socketio#1411).
- The listener logs "Cannot receive from redis... retrying in N secs", N = 1, 2, 4 ... 60.
"""

from __future__ import annotations

import sys

import pytest
import requests
import socketio

from lab.apps import healthz, start_app
from lab.processes import REPO_ROOT, wait_until
from lab.redis_server import start_redis

CHAPTER = "chapters/03_redis_scaling/app.py"
NOT_PATCHED = "RuntimeError: Redis requires a monkey patched socket library to work with {mode}"
# What python-socketio's client says when the server's connect handler raised: engineio
# answers the handshake 401 (engineio/server.py `_handle_connect`, engineio/client.py).
CLIENT_SEES = "Unexpected status code 401 in server response"

# The smallest app with the mistake: a Redis message queue under gevent or eventlet, and no
# monkey patching. It names its mode; it serves /healthz as every lab app does.
UNPATCHED_APP = """
import os

from flask import Flask
from flask_socketio import SocketIO

app = Flask(__name__)
socketio = SocketIO(app, async_mode=os.environ["ASYNC_MODE"], message_queue=os.environ["REDIS_URL"])


@app.get("/healthz")
def healthz():
    return {"status": "ok", "instance": os.environ["INSTANCE_NAME"]}


socketio.run(app, host=os.environ["HOST"], port=int(os.environ["PORT"]))
"""

# Chapter 03's app with its first two lines made a no-op: the chapter minus its patch.
CHAPTER_WITHOUT_PATCH = f"""
import runpy
from gevent import monkey
monkey.patch_all = lambda *args, **kwargs: None
runpy.run_path({str(REPO_ROOT / CHAPTER)!r}, run_name="__main__")
"""


@pytest.mark.parametrize("mode", ["gevent", "eventlet"])
def test_a_redis_queue_without_monkey_patching_refuses_the_first_client(bench, clients, tmp_path, mode):
    """Unpatched gevent or eventlet with a Redis queue: the first client gets 401, the log a RuntimeError."""
    redis = start_redis(bench)
    script = tmp_path / "unpatched_app.py"
    script.write_text(UNPATCHED_APP)
    app = start_app(bench, script, env={"ASYNC_MODE": mode, "REDIS_URL": redis.url})

    # The server starts and answers HTTP; the queue is checked when the first client connects.
    with pytest.raises(socketio.exceptions.ConnectionError, match=CLIENT_SEES):
        clients("first").connect(app.url, "polling")
    wait_until(lambda: NOT_PATCHED.format(mode=mode) in app.log_text(), timeout=5, what="the RuntimeError")
    # python-engineio's line before the traceback: its connect step (python-socketio's) raised.
    assert "connect handler error" in app.log_text()


def test_chapter03_without_its_patch_fails_the_first_client_and_hangs_for_the_rest(bench, clients):
    """Chapter 03 minus monkey.patch_all(): the first client gets 401, every request after it hangs."""
    redis = start_redis(bench)
    command = lambda port: [sys.executable, "-c", CHAPTER_WITHOUT_PATCH]  # noqa: E731
    app = start_app(bench, CHAPTER, command=command, env={"REDIS_URL": redis.url})
    assert healthz(app.url)["redis"] == "up"

    with pytest.raises(socketio.exceptions.ConnectionError, match=CLIENT_SEES):
        clients("first").connect(app.url, "polling")
    wait_until(
        lambda: NOT_PATCHED.format(mode="gevent") in app.log_text(), timeout=5, what="the RuntimeError"
    )

    # The queue's listener now blocks the process on an unpatched socket: nothing is served.
    with pytest.raises(socketio.exceptions.ConnectionError):
        clients("second").connect(app.url, "polling", timeout=3)
    with pytest.raises(requests.Timeout):
        requests.get(f"{app.url}/healthz", timeout=2)
    assert app.alive()


def test_a_redis_outage_logs_cannot_publish_giving_up_and_cannot_receive(start_cluster):
    """With Redis down, a broadcast is acked ok and logged "Cannot publish to redis... giving up"."""
    cluster = start_cluster(CHAPTER, instances=2, clients_per_instance=1)
    sender, other = cluster.members[0], cluster.instances[1]
    sending = next(s for s in cluster.instances if s.name == sender.instance)

    cluster.redis.kill()
    # Every instance's listener loses its subscription and says when it retries: 1 s first.
    for service in cluster.instances:
        wait_until(
            lambda service=service: "Cannot receive from redis... retrying in 1 secs" in service.log_text(),
            timeout=10,
            what=f"{service.name}'s listener to notice",
        )

    # The sender's ack still says ok: the publish failure is only logged, after a second try.
    assert sender.client.call("broadcast", {"text": "into the void"}) == {"ok": True}
    wait_until(
        lambda: "Cannot publish to redis... giving up" in sending.log_text(),
        timeout=10,
        what="the publish to be given up",
    )
    log = sending.log_text()
    assert log.index("Cannot publish to redis... retrying") < log.index(
        "Cannot publish to redis... giving up"
    )
    # Only the instance that published says so.
    assert "Cannot publish to redis" not in other.log_text()
