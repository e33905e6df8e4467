"""The reference's worker side: `celery -A tasks worker`. web.py says what the reference is for
and what it leaves out of chapter 05."""

import functools
import os

from celery import Celery
from flask_socketio import SocketIO

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

celery_app = Celery("reference", broker=REDIS_URL, backend=REDIS_URL)
# Chapter 05's Celery settings (taskboard/__init__.py says why each), beat's schedule aside.
celery_app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    result_backend_thread_safe=True,
)


@functools.cache
def emitter():
    """Write-only: a SocketIO with no app publishes on the queue the web instance reads."""
    return SocketIO(message_queue=REDIS_URL, async_mode="threading")


@celery_app.task(bind=True)
def noop_report(self, to):
    """What chapter 05's one-step report sends with STEP_SECONDS=0: a `progress`, then the `result`."""
    worker = {"worker": self.request.hostname, "pid": os.getpid()}
    emitter().emit("progress", {"task": self.request.id, "percent": 100, **worker}, to=to)
    emitter().emit("result", {"task": self.request.id, "report": "a report in 1 step", **worker}, to=to)
