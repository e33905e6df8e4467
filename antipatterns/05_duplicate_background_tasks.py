"""Antipattern 05: every web instance runs its own periodic producer.

What it does
    Chapter 05's web instance, with one thing added: the dashboard figure is
    produced by a background task that each instance starts on its first
    connect (Flask-SocketIO's own example does this, with a lock so that one
    process starts it once), instead of by Celery beat.

Why is this bad?
    The lock works within one process. With two instances there are two
    producers, and each emits through the message queue to every client:
    every client gets each second's figure once per instance, and the work
    behind it (a query, a report) runs once per instance too. Scale to ten
    instances, get ten times the load and ten figures a second. It looks fine
    on a laptop with one instance, which is where it gets written.

Use instead
    Celery beat (chapters/05_celery/taskboard/__init__.py `beat_schedule`):
    one scheduler for the cluster, whatever the number of web instances. Run
    exactly one beat (never `celery worker -B` on several workers: that is
    this mistake again).

How to run it
    Two of them, in place of the chapter's web instances (with Redis and a worker, no beat):
        PORT=5301 INSTANCE_NAME=web-1 python antipatterns/05_duplicate_background_tasks.py
        PORT=5302 INSTANCE_NAME=web-2 python antipatterns/05_duplicate_background_tasks.py

Differs from chapters/05_celery/app.py
    dashboard_loop, TaskEventsWithProducer: a producer started in each web instance, added
    producer, producer_lock: once per process, as Flask-SocketIO's example does it, added
"""

import sys
import threading
from pathlib import Path

# The chapter's web instance, loaded by path ("05_celery" is not an importable package name):
# importing its app.py patches the standard library for gevent, then builds the app. Everything
# below is created after the patch.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "chapters" / "05_celery"))
from app import app
from taskboard import DASHBOARD, FIGURE_SECONDS, INSTANCE_NAME, events, socketio
from taskboard.tasks import dashboard_figure
from taskboard.web import serve

producer = None
producer_lock = threading.Lock()


# --8<-- [start:producer]
def dashboard_loop():
    while True:
        socketio.sleep(FIGURE_SECONDS)
        with app.app_context():
            # expected: one figure a second for the cluster; actual: one per instance, each
            # published on the queue to every client of every instance
            socketio.emit("figure", dashboard_figure(producer=INSTANCE_NAME), namespace=DASHBOARD)


class TaskEventsWithProducer(events.TaskEvents):
    def on_connect(self, auth=None):
        global producer
        with producer_lock:  # once per process: the lock cannot see the other instances
            if producer is None:
                producer = socketio.start_background_task(dashboard_loop)
        return super().on_connect(auth)


# --8<-- [end:producer]

socketio.on_namespace(TaskEventsWithProducer("/"))

if __name__ == "__main__":
    serve(app)
