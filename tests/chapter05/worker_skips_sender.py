"""Chapter 05's worker with one mistake: its emits skip "the sender", as a handler's may.

`include_self=False` copied from a socket handler into a Celery task, to spare the page that
asked its own echo. tests/chapter05/test_skip_sender.py runs it as the worker
(`celery -A worker_skips_sender worker`, from this folder); the chapter page shows it under
"A worker has no sender to skip".
"""

import sys
from pathlib import Path

# The chapter's package, loaded by path ("05_celery" is not an importable package name).
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "chapters" / "05_celery"))
from taskboard import create_app, tasks


# --8<-- [start:push]
def push(event, data, to=None, namespace="/"):
    # expected: the room, less the page that asked; actual: RuntimeError "Working outside of
    # request context": a task has no request, so no sender, and nothing is sent to anyone
    tasks.emitter().emit(event, data, to=to, namespace=namespace, include_self=False)


# --8<-- [end:push]

tasks.push = push
flask_app = create_app()
celery_app = flask_app.extensions["celery"]
