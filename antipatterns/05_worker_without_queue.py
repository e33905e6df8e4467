"""Antipattern 05: a Celery worker that emits through a SocketIO with no message queue.

What it does
    Chapter 05's worker, with one definition changed: `emitter`, the SocketIO
    its tasks emit through, is built from the worker's own app, `SocketIO(app)`,
    with no `message_queue`. Everything else is the chapter's (taskboard.tasks).

Why is this bad?
    A SocketIO object delivers only to clients connected to its own process,
    plus, with a message queue, to every process listening on that queue. A
    worker has no clients. So every emit lands nowhere, no error is raised,
    and the task runs to the end and is recorded as SUCCESS: the worker's log
    says all is well while the browser waits forever.

Use instead
    chapters/05_celery/taskboard/tasks.py `emitter`:
    SocketIO(message_queue=REDIS_URL), write-only, on the channel the web
    instances listen to.

How to run it (from antipatterns/, with the chapter's web instance and Redis running)
    celery -A 05_worker_without_queue worker --loglevel INFO

Differs from chapters/05_celery/taskboard/tasks.py
    emitter: SocketIO(app) of the worker's own, with no message_queue
"""

import functools
import sys
from pathlib import Path

from flask import current_app
from flask_socketio import SocketIO

# The chapter's package, loaded by path ("05_celery" is not an importable package name).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "chapters" / "05_celery"))
from taskboard import create_app, tasks


# --8<-- [start:emitter]
@functools.cache
def emitter():
    # expected: SocketIO(message_queue=REDIS_URL), which publishes every emit to the web instances;
    # actual: a SocketIO of this worker's own, whose emits reach the clients of this process: none
    return SocketIO(current_app, async_mode="threading")


# --8<-- [end:emitter]

tasks.emitter = emitter
flask_app = create_app()
celery_app = flask_app.extensions["celery"]
