"""The socket events, as one class-based Namespace: connect, start, cancel."""

from flask import session
from flask_socketio import ConnectionRefusedError, Namespace, emit, join_room

from . import INSTANCE_NAME
from .auth import NotLoggedIn, user_from, user_room
from .guards import rate_limited, refuse, sent_by_the_client
from .tasks import TaskRefused, cancel_report, start_report, validate_steps


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
    def on_connect(self, auth=None):
        """Let a connection in only with a valid token; it joins its user's room at once."""
        if sent_by_the_client():
            return refuse("connect", "a client cannot send 'connect'")
        try:
            user = user_from(auth.get("token") if isinstance(auth, dict) else None)
        except NotLoggedIn as refused:
            raise ConnectionRefusedError(str(refused)) from None
        session["user"] = user
        join_room(user_room(user))
        emit("welcome", {"user": user, "instance": INSTANCE_NAME})

    @rate_limited
    def on_start(self, data=None):
        """Queue a report; the ack carries its task id at once, the events follow."""
        try:
            steps, fail_at = validate_steps(data)
            task_id = start_report(session["user"], reply_to(), steps, fail_at)
        except TaskRefused as refused:
            return refuse("start", str(refused))
        return {"ok": True, "task": task_id}

    @rate_limited
    def on_cancel(self, data=None):
        task_id = data.get("task") if isinstance(data, dict) else None
        try:
            cancel_report(session["user"], task_id)
        except TaskRefused as refused:
            return refuse("cancel", str(refused))
        return {"ok": True, "task": task_id}

    def on_disconnect(self, reason=None):
        if sent_by_the_client():
            return refuse("disconnect", "a client cannot send 'disconnect'")

    def on_ping(self, data=None):
        return {"ok": True, "instance": INSTANCE_NAME}


# --8<-- [end:namespace]
