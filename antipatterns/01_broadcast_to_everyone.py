"""Antipattern 01: room messages sent with broadcast=True.

What it does
    Runs chapters/01_basic_chat/app.py, imported, not copied, with its
    `join`, `leave` and `message` handlers replaced by the same handlers
    that emit with `broadcast=True` instead of `to=chat_room(room)`:
    the mistake people make when their first room "does nothing".

Why is this bad?
    `broadcast=True` sends to every connected client, whatever room they
    joined: every room's messages, joins and leaves leak into every other
    room. The sender sees nothing wrong (it gets its own message, as it
    should), and nothing is logged.

Use instead
    chapters/01_basic_chat/app.py: `emit(..., to=chat_room(room))`, so only
    the room's members receive it.

How to run it
    python antipatterns/01_broadcast_to_everyone.py   (same settings as the chapter)

Differs from chapters/01_basic_chat/app.py
    on_join, on_leave, on_message: `broadcast=True` instead of `to=chat_room(room)`
"""

import sys
from pathlib import Path

# The chapter's app, loaded by path ("01_basic_chat" is not an importable package name).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "chapters" / "01_basic_chat"))
from app import HOST, INSTANCE_NAME, MAX_NAME, MAX_ROOM, MAX_TEXT, PORT, app, chat_room, socketio
from flask import session
from flask_socketio import emit, join_room, leave_room, rooms
from flask_socketio_guard import Refused, require


# --8<-- [start:handlers]
@socketio.on("join")
def on_join(data=None):
    fields = require(data, room=MAX_ROOM, name=MAX_NAME)
    room, name = fields["room"], fields["name"]
    join_room(chat_room(room))
    session["name"] = name
    # expected: the room's members hear of it; actual: every connected client does
    emit("system", {"room": room, "text": f"{name} joined {room}"}, broadcast=True)
    return {"ok": True, "room": room, "instance": INSTANCE_NAME}


@socketio.on("leave")
def on_leave(data=None):
    room = require(data, room=MAX_ROOM)["room"]
    if chat_room(room) not in rooms():
        raise Refused(f"you are not in room '{room}'")
    # expected: the room's members hear of it; actual: every connected client does
    emit("system", {"room": room, "text": f"{session['name']} left {room}"}, broadcast=True)
    leave_room(chat_room(room))
    return {"ok": True, "room": room}


# --8<-- [start:message]
@socketio.on("message")
def on_message(data=None):
    fields = require(data, room=MAX_ROOM, text=MAX_TEXT)
    room = fields["room"]
    if chat_room(room) not in rooms():
        raise Refused(f"join room '{room}' before writing to it")
    # expected: only the members of `room` receive it; actual: every connected client does
    emit("message", {"room": room, "name": session["name"], "text": fields["text"]}, broadcast=True)
    return {"ok": True}


# --8<-- [end:message]
# --8<-- [end:handlers]


if __name__ == "__main__":
    socketio.run(app, host=HOST, port=PORT, allow_unsafe_werkzeug=True)
