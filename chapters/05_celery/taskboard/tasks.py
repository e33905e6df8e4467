"""The Celery side: tasks that run in a worker and reach browsers through the message queue."""

import functools
import os
import time
import uuid

import redis
from celery import shared_task
from flask import current_app
from flask_socketio import SocketIO
from flask_socketio_guard import Refused

from . import DASHBOARD, MAX_STEPS, MAX_TASKS_PER_USER, STEP_SECONDS, store

STAGES = ("fetching", "crunching", "rendering")


# --8<-- [start:emitter]
@functools.cache
def emitter():
    """How a worker reaches browsers: a SocketIO with no app, only the queue the instances read.

    Flask-SocketIO makes such an object write-only ("Emitting from an External Process"):
    each emit is published on Redis, and every web instance delivers it to its own clients
    in the room named. One per worker process, made on first use (after Celery forks).
    """
    return SocketIO(
        message_queue=current_app.config["REDIS_URL"],
        channel=current_app.config["SOCKETIO_CHANNEL"],
        async_mode="threading",  # explicit, always; a worker process has no event loop of gevent's
    )


def push(event, data, to=None, namespace="/"):
    """Emit from a worker to one room of `namespace` (a user's), or with `to=None` to all of it."""
    emitter().emit(event, data, to=to, namespace=namespace)


# --8<-- [end:emitter]


# --8<-- [start:start]
class TaskRefused(Refused):
    """Why a task was not started or not cancelled; the client is told as is.

    A Refused: raised in a socket handler, the guard sends it to the sender as an `error` event
    and a failed ack. The HTTP routes answer it with a 400 or a 404 (views.py).
    """


def key(task_id, what):
    return f"taskboard:task:{task_id}:{what}"


def running_key(user):
    return f"taskboard:user:{user}:tasks"


def start_report(user, to, steps, fail_at=None):
    """Queue a report for `user`; its events go to the room `to`. Returns the task id at once."""
    running = running_key(user)
    if store.scard(running) >= MAX_TASKS_PER_USER:
        raise TaskRefused(f"you have {MAX_TASKS_PER_USER} tasks running already: wait for one")
    task_id = str(uuid.uuid4())  # chosen here, so its owner is on record before it can run
    # Who owns it, for cancel; kept an hour, like Celery's own results. One round trip, not three.
    with store.pipeline(transaction=False) as pipe:
        pipe.set(key(task_id, "user"), user, ex=3600)
        pipe.sadd(running, task_id)
        pipe.expire(running, 3600)
        pipe.execute()
    build_report.apply_async((to, steps, fail_at), task_id=task_id)
    return task_id


def cancel_report(user, task_id):
    """Ask a running or queued task of `user`'s to stop; it says `failed: cancelled` when it does."""
    if not isinstance(task_id, str) or store.get(key(task_id, "user")) != user:
        raise TaskRefused("no such task of yours")
    store.set(key(task_id, "cancel"), 1, ex=3600)


# --8<-- [end:start]


# --8<-- [start:task]
@shared_task(bind=True)
def build_report(self, to, steps, fail_at=None):
    """Build a report in `steps` steps, telling room `to` how far it got; then the result.

    If the process running it dies, Celery runs it again from the start (acks_late): its
    progress repeats, with attempt 2, and `finish` makes sure only one result goes out.
    """
    task_id = self.request.id
    with store.pipeline(transaction=False) as pipe:  # one round trip, not two
        pipe.incr(key(task_id, "runs"))
        pipe.expire(key(task_id, "runs"), 3600)
        attempt = pipe.execute()[0]
    worker = {"worker": self.request.hostname, "pid": os.getpid(), "attempt": attempt}
    try:
        for step in range(1, steps + 1):
            # Cooperative cancel: checked between steps, so it works queued or running, on
            # any pool. (Celery's revoke(terminate=True) kills the whole process instead.)
            if cancelled(task_id):
                return finish(task_id, to, "failed", {"reason": "cancelled"})
            time.sleep(STEP_SECONDS)  # the work: a query, a render, a call to another service
            if step == fail_at:
                raise RuntimeError(f"step {step} of {steps} failed")
            percent = round(100 * step / steps)
            stage = STAGES[min(len(STAGES) - 1, (step - 1) * len(STAGES) // steps)]
            push("progress", {"task": task_id, "percent": percent, "stage": stage, **worker}, to=to)
    except Exception as error:
        finish(task_id, to, "failed", {"reason": str(error)})
        raise  # Celery records the task as FAILURE too
    return finish(task_id, to, "result", {"report": f"a report in {steps} steps", **worker})


def cancelled(task_id):
    """Was this task cancelled? A Redis blip must not end a long task: then, carry on."""
    try:
        return store.exists(key(task_id, "cancel"))
    except redis.RedisError as error:
        current_app.logger.warning("cancel check skipped: Redis unreachable (%s)", error)
        return False


def finish(task_id, to, event, data):
    """Send a task's last event (`result` or `failed`) once, however many times the task ran.

    SET NX is the idempotency key: a run that gets here after another one did sends nothing.
    """
    with store.pipeline(transaction=False) as pipe:  # one round trip, not two
        pipe.set(key(task_id, "finished"), event, nx=True, ex=3600)
        pipe.get(key(task_id, "user"))
        first, user = pipe.execute()
    if first:
        # Out of its user's running tasks before the page hears it ended: a page that starts the
        # next task on this event must not find it still counted against the quota.
        store.srem(running_key(user or ""), task_id)
        push(event, {"task": task_id, **data}, to=to)
        if event == "result":
            store.incr("taskboard:done")
    return {"event": event, **data}


# --8<-- [end:task]


# --8<-- [start:figure]
@shared_task
def publish_figure():
    """The live dashboard figure, sent to every page on the dashboard's namespace. Beat calls it
    once a second: one producer for the whole cluster, however many web instances there are."""
    push("figure", dashboard_figure(producer="celery beat"), namespace=DASHBOARD)


def dashboard_figure(producer):
    return {
        "tick": store.incr("taskboard:tick"),  # one count for the cluster: a repeat shows
        "done": int(store.get("taskboard:done") or 0),
        "queued": store.llen("celery"),  # Celery's default queue, a Redis list
        "producer": producer,
    }


# --8<-- [end:figure]


def validate_steps(data):
    """The report's settings from an event or a POST body, or TaskRefused with the reason."""
    if not isinstance(data, dict):
        raise TaskRefused("payload must be an object")
    steps, fail_at = data.get("steps", 5), data.get("fail_at")
    if type(steps) is not int or not 1 <= steps <= MAX_STEPS:
        raise TaskRefused(f"'steps' must be a whole number from 1 to {MAX_STEPS}")
    if fail_at is not None and (type(fail_at) is not int or not 1 <= fail_at <= steps):
        raise TaskRefused("'fail_at' must be a step number, or left out")
    return steps, fail_at
