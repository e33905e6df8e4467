"""Chapter 05: Celery workers that push progress and results to the right browser, once.

What this shows
    A Flask-SocketIO app laid out as a real one is: an app factory
    (`create_app`), a blueprint for the page and the HTTP routes (views.py),
    a class-based Namespace for the socket events (events.py), and Celery
    wired as Flask's own Celery example does it (`celery_init_app`, every
    task in an app context; tasks.py). Redis is the broker, the result
    backend and the Socket.IO message queue. A worker reaches browsers by
    publishing on that queue; the web instances deliver. Progress goes to
    the room of the user who asked (named from the token sent in `auth` at
    connect), so a page that reconnects mid-task, with a new sid, still gets
    the rest, and nobody else gets any of it. One producer for the live
    dashboard figure: Celery beat, whatever the number of web instances. The
    figure has a namespace of its own, /dashboard, which any page joins
    without a token; the worker names it in its emit (namespace=...).

How to run it (each terminal, from chapters/05_celery)
    1. redis-server --port 6379 --bind 127.0.0.1 --save "" --appendonly no
    2. PORT=5001 INSTANCE_NAME=web-1 python app.py     (PORT=5002 INSTANCE_NAME=web-2 for a second)
    3. celery -A make_celery worker --loglevel INFO
    4. celery -A make_celery beat --loglevel INFO --schedule /tmp/celerybeat-schedule
    Open http://127.0.0.1:5001 in two browsers, log in as two users, start a report.
    Settings come from the environment: HOST, PORT, INSTANCE_NAME, REDIS_URL,
    SOCKETIO_CHANNEL, SECRET_KEY (the same on every instance and worker),
    STEP_SECONDS, TOKEN_MAX_AGE, ALLOWED_ORIGINS, TRUSTED_HOSTS,
    EVENTS_PER_SECOND and PRODUCTION=1 (then SECRET_KEY must be set). The
    last four are the guard's: docs/hardening.md says what each one stops.

What breaks without it
    antipatterns/05_worker_without_queue.py: the worker emits through a
    SocketIO with no message_queue; the task succeeds and nobody hears of it.
    antipatterns/05_duplicate_background_tasks.py: each web instance runs its
    own dashboard producer; every client gets every figure once per instance.
    antipatterns/05_emit_to_sid.py: progress addressed to the requesting sid;
    a page that reconnects mid-task never gets its result.

TL;DR
    Workers emit through SocketIO(message_queue=REDIS_URL), write-only, naming
    the namespace unless it is "/"; address a user's room, never a sid; one beat
    for periodic work; acks_late with task_reject_on_worker_lost, and an
    idempotent last event, for exactly one result.
"""

import os
from pathlib import Path

import redis
from celery import Celery, Task
from flask import Flask
from flask_socketio import SocketIO
from flask_socketio_guard import SocketIOGuard, secret

# --8<-- [start:config]
# gevent for the web instances (chapter 02); app.py patches before importing this package.
# The workers do not: Celery runs tasks in its own processes (prefork).
ASYNC_MODE = "gevent"
HOST = os.environ.get("HOST", "127.0.0.1")
PORT = int(os.environ.get("PORT", "5000"))
INSTANCE_NAME = os.environ.get("INSTANCE_NAME", "web-1")
# One Redis, three jobs: Celery's broker (the task queue), its result backend, and the
# Socket.IO message queue that carries the workers' emits to the web instances.
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CHANNEL = os.environ.get("SOCKETIO_CHANNEL", "flask-socketio")
PRODUCTION = os.environ.get("PRODUCTION") == "1"
TOKEN_MAX_AGE = int(os.environ.get("TOKEN_MAX_AGE", "3600"))
# The report task: how long each of its steps takes, and at most how many steps.
STEP_SECONDS = float(os.environ.get("STEP_SECONDS", "0.5"))
MAX_STEPS = 20
# Tasks one user may have queued or running at once: one page cannot fill the queue.
MAX_TASKS_PER_USER = 3
# How often beat asks for the dashboard figure.
FIGURE_SECONDS = 1.0
# The figure's own namespace, on the page's one connection: open to every page, logged in or
# not. The tasks stay on "/", where a connection needs a token.
DASHBOARD = "/dashboard"
JS_CLIENT_DIR = Path(
    os.environ.get("JS_CLIENT_DIR")
    or Path(__file__).resolve().parents[3] / "node_modules" / "socket.io-client" / "dist"
)
MAX_NAME = 32
# --8<-- [end:config]

socketio = SocketIO()
# Task bookkeeping that web instances and workers share: who owns a task, whether it was
# cancelled, whether its last event went out.
store = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2, decode_responses=True)

# What every chapter needs and none teaches: a client that is not the page gets a reason or loses
# its own connection, never anyone else's (docs/hardening.md, flask-socketio-guard/). The factory
# installs it, as it does SocketIO; these are its limits.
guard = SocketIOGuard()
GUARD_SETTINGS = {
    "SOCKETIO_GUARD_EVENTS_PER_SECOND": int(os.environ.get("EVENTS_PER_SECOND", "20")),
    "SOCKETIO_GUARD_TRUSTED_HOSTS": os.environ.get("TRUSTED_HOSTS", "127.0.0.1,localhost").split(","),
    "SOCKETIO_GUARD_ALLOWED_ORIGINS": [o for o in os.environ.get("ALLOWED_ORIGINS", "").split(",") if o],
}


# --8<-- [start:factory]
def create_app():
    """The app, for a web instance (app.py) and a Celery worker or beat (make_celery.py) alike."""
    app = Flask(__name__)
    app.config.from_mapping(
        # Signs the tokens: every instance and every worker must share it, so set it.
        SECRET_KEY=secret("SECRET_KEY", production=PRODUCTION),
        REDIS_URL=REDIS_URL,
        SOCKETIO_CHANNEL=CHANNEL,
        CELERY=dict(
            broker_url=REDIS_URL,
            result_backend=REDIS_URL,
            # A task is acknowledged when it ends, not when it starts; if the process running it
            # dies, the message goes back to the queue and another worker runs it again.
            task_acks_late=True,
            task_reject_on_worker_lost=True,
            # Each worker process reserves one task at a time: a long task does not hold a
            # second one hostage while other workers sit idle.
            worker_prefetch_multiplier=1,
            broker_connection_retry_on_startup=True,
            # One result backend (and its Redis connections) for the process. Celery's default
            # is one per thread, and under gevent every socket event runs in a new greenlet:
            # each `start` would build a backend of its own, with new Redis connections.
            result_backend_thread_safe=True,
            beat_schedule={
                "dashboard-figure": {
                    "task": "taskboard.tasks.publish_figure",
                    "schedule": FIGURE_SECONDS,
                    # A figure nobody ran in time is dropped, not piled up behind long tasks.
                    "options": {"expires": 2 * FIGURE_SECONDS},
                },
            },
        ),
        **GUARD_SETTINGS,
    )
    celery_init_app(app)

    from . import events, views

    # message_queue: the web instances subscribe to it; the workers publish on it (tasks.py).
    socketio.init_app(app, async_mode=ASYNC_MODE, message_queue=REDIS_URL, channel=CHANNEL)
    guard.init_app(app, socketio)  # after socketio.init_app, which makes the server it guards
    socketio.on_namespace(events.TaskEvents("/"))
    socketio.on_namespace(events.Dashboard(DASHBOARD))
    app.register_blueprint(views.bp)
    return app


# --8<-- [end:factory]


# --8<-- [start:celery_init_app]
def celery_init_app(app):
    """Flask's own recipe (flask.palletsprojects.com/patterns/celery): every task runs in an
    app context, so it reads app.config like a view does."""

    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(app.config["CELERY"])
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app


# --8<-- [end:celery_init_app]
