"""The yardstick for chapter 05's latency row: a Celery round trip to a page, with none of the chapter.

What this is
    The path a no-op task of chapter 05 takes, and nothing else: a page's `start` reaches this
    gevent Flask-SocketIO server, which queues a Celery task and acks its id; a worker runs the
    task (tasks.py), which publishes a `progress` and a `result` on the Redis queue through a
    write-only SocketIO; this server delivers both to the page. The same pins, the same Celery
    settings (acks_late, prefetch 1, Redis as broker, result backend and Socket.IO queue), the
    same two emits, TCP_NODELAY as the chapter's `serve` sets it. bench/celery_tasks.py runs it
    beside the chapter, in the same run, with the same pages and task count: the chapter's p50
    minus this one's is what the chapter's own code costs a task.

What it leaves out, against chapters/05_celery
    - the guard (flask-socketio-guard): no Host or Origin check, no rate limit, no refusals;
    - login: no token and no user, so a task's events go to its page's sid (the chapter
      addresses its user's room; antipatterns/05_emit_to_sid.py says why a real app must);
    - the quota (SCARD of the user's running tasks) and ownership (the owner's SET, the SADD);
    - the attempt count (INCR), the cancel check (EXISTS) and Flask's app context in the task;
    - the one-result guard (SET NX, then SREM and the done count);
    - the second web instance: one here, two in the chapter's run, on the same cores.

How to run it (each terminal, from bench/celery_reference)
    1. redis-server --port 6379 --bind 127.0.0.1 --save "" --appendonly no
    2. PORT=5001 python web.py
    3. celery -A tasks worker --loglevel INFO --concurrency 1
"""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import socket  # noqa: E402

from flask import Flask, request  # noqa: E402
from flask_socketio import SocketIO  # noqa: E402
from gevent import pywsgi  # noqa: E402
from tasks import REDIS_URL, noop_report  # noqa: E402

ASYNC_MODE = "gevent"  # the chapter's web instances run on gevent
HOST = os.environ.get("HOST", "127.0.0.1")
PORT = int(os.environ.get("PORT", "5000"))
INSTANCE_NAME = os.environ.get("INSTANCE_NAME", "reference")

app = Flask(__name__)
socketio = SocketIO(app, async_mode=ASYNC_MODE, message_queue=REDIS_URL)


@app.get("/healthz")
def healthz():
    return {"status": "ok", "instance": INSTANCE_NAME}


@socketio.on("start")
def start(data=None):
    """Queue the task; the ack carries its id at once, the events follow from the worker."""
    return {"ok": True, "task": noop_report.delay(request.sid).id}


class NoDelayHandler(pywsgi.WSGIHandler):
    """pywsgi's handler with Nagle's algorithm off, as chapter 05's taskboard/web.py has it."""

    def __init__(self, sock, address, server, rfile=None):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().__init__(sock, address, server, rfile)


if __name__ == "__main__":
    print(f"{INSTANCE_NAME} starting on http://{HOST}:{PORT}/", flush=True)
    socketio.run(app, host=HOST, port=PORT, log_output=False, handler_class=NoDelayHandler)
