"""The socket events, as class-based Namespaces: the tasks on "/", the dashboard on its own."""

from flask import session
from flask_socketio import ConnectionRefusedError, Namespace, emit, join_room

from . import INSTANCE_NAME
from .auth import NotLoggedIn, user_from, user_room
from .tasks import cancel_report, start_report, validate_steps


# --8<-- [start:reply_to]
def reply_to():
    """Where a task started by this connection sends its progress: its user's room.

    Every connection of the user is in that room, on any instance, and a page that
    reconnects is back in it at connect, before any event (antipatterns/05_emit_to_sid.py
    addresses the sid instead, and loses the result).
    """
    return user_room(session["user"])


# --8<-- [end:reply_to]


# --8<-- [start:namespace]
class TaskEvents(Namespace):
    """A refusal (TaskRefused, from tasks.py) reaches the sender as an `error` event and a failed
    ack, through the guard; so does any other error, as `the server could not handle this event`."""

    def on_connect(self, auth=None):
        """Let a connection in only with a valid token; it joins its user's room at once."""
        try:
            user = user_from(auth.get("token") if isinstance(auth, dict) else None)
        except NotLoggedIn as refused:
            raise ConnectionRefusedError(str(refused)) from None
        session["user"] = user
        join_room(user_room(user))
        emit("welcome", {"user": user, "instance": INSTANCE_NAME})

    def on_start(self, data=None):
        """Queue a report; the ack carries its task id at once, the events follow."""
        steps, fail_at = validate_steps(data)
        return {"ok": True, "task": start_report(session["user"], reply_to(), steps, fail_at)}

    def on_cancel(self, data=None):
        task_id = data.get("task") if isinstance(data, dict) else None
        cancel_report(session["user"], task_id)
        return {"ok": True, "task": task_id}

    def on_ping(self, data=None):
        return {"ok": True, "instance": INSTANCE_NAME}


# --8<-- [end:namespace]


# --8<-- [start:dashboard]
class Dashboard(Namespace):
    """The live figure's namespace. It has no connect handler, so it lets every connection in,
    token or not; and no events: the figure comes from beat's task, through the queue (tasks.py)."""


# --8<-- [end:dashboard]
