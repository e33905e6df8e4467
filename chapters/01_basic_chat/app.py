"""Chapter 01: a basic chat with rooms, in one process.

What this shows
    A Flask-SocketIO chat where people join rooms, messages go to the room
    only, and everyone in a room sees a system message when someone joins or
    leaves. Every payload is checked before it is used: a bad one earns its
    sender an `error` event with a reason, and nobody else notices.

How to run it
    One terminal:  python chapters/01_basic_chat/app.py
    Then open http://127.0.0.1:5000 in two browser windows.
    Settings come from the environment: HOST, PORT, INSTANCE_NAME,
    SECRET_KEY, ALLOWED_ORIGINS, TRUSTED_HOSTS, EVENTS_PER_SECOND, and
    PRODUCTION=1 (then SECRET_KEY must be set). The last five are the
    guard's: docs/hardening.md says what each one stops.

What breaks without it
    antipatterns/01_broadcast_to_everyone.py emits with broadcast=True
    instead of to=room, so every room's messages leak into every other room.
    antipatterns/01_unguarded_handler.py is this file without its guard: a
    hostile client gets silence and fills the log.

TL;DR
    emit(..., to=room), never broadcast=True, for room messages; validate
    every payload and answer a bad one with an `error` event.
"""

import os
import sys
from pathlib import Path

from flask import Flask, jsonify, render_template, send_from_directory, session
from flask_socketio import SocketIO, emit, join_room, leave_room, rooms
from flask_socketio_guard import Refused, SocketIOGuard, require, secret

# --8<-- [start:config]
# Explicit, always: left to auto-detection, Flask-SocketIO silently picks
# eventlet whenever it happens to be installed. Chapter 02 compares the modes.
ASYNC_MODE = "threading"
HOST = os.environ.get("HOST", "127.0.0.1")
PORT = int(os.environ.get("PORT", "5000"))
INSTANCE_NAME = os.environ.get("INSTANCE_NAME", "chat-1")
# The Socket.IO browser client, installed from npm (`npm ci` at the repository root)
# and served by this app, so the page works with no internet.
JS_CLIENT_DIR = Path(
    os.environ.get("JS_CLIENT_DIR")
    or Path(__file__).resolve().parents[2] / "node_modules" / "socket.io-client" / "dist"
)

MAX_NAME = 32
MAX_ROOM = 32
MAX_TEXT = 500
MAX_ROOMS = 10  # rooms one connection may be in at once
# --8<-- [end:config]

# --8<-- [start:socketio]
app = Flask(__name__)
app.config["SECRET_KEY"] = secret("SECRET_KEY", production=os.environ.get("PRODUCTION") == "1")
socketio = SocketIO(app, async_mode=ASYNC_MODE)
# --8<-- [end:socketio]

# --8<-- [start:guard]
# What every chapter needs and none teaches: a client that is not this page gets a reason or
# loses its own connection, never anyone else's (docs/hardening.md, flask-socketio-guard/).
app.config.update(
    SOCKETIO_GUARD_EVENTS_PER_SECOND=int(os.environ.get("EVENTS_PER_SECOND", "20")),
    SOCKETIO_GUARD_MAX_ROOMS=MAX_ROOMS,
    SOCKETIO_GUARD_TRUSTED_HOSTS=os.environ.get("TRUSTED_HOSTS", "127.0.0.1,localhost").split(","),
    SOCKETIO_GUARD_ALLOWED_ORIGINS=[o for o in os.environ.get("ALLOWED_ORIGINS", "").split(",") if o],
)
guard = SocketIOGuard(app, socketio)
# --8<-- [end:guard]


# --8<-- [start:routes]
# The file this process was started with (not sys.argv: runpy changes it), named on the page.
STARTED_WITH = next((arg for arg in sys.orig_argv[1:] if arg.endswith(".py")), sys.argv[0])
SERVED_BY = "/".join(Path(STARTED_WITH).resolve().parts[-2:])


@app.get("/")
def index():
    return render_template("index.html", instance=INSTANCE_NAME, served_by=SERVED_BY)


@app.get("/vendor/socket.io.min.js")
def socketio_client_js():
    return send_from_directory(JS_CLIENT_DIR, "socket.io.min.js")


@app.get("/healthz")
def healthz():
    return jsonify(status="ok", instance=INSTANCE_NAME, async_mode=ASYNC_MODE)


# --8<-- [end:routes]


# --8<-- [start:rooms]
# Rooms a client names live under this prefix, apart from the rooms the server keeps for
# itself: each connection's own room, named after its sid. A client that names a sid as
# its room finds nothing there to leave or write to.
ROOM_PREFIX = "room:"


def chat_room(name):
    return ROOM_PREFIX + name


def chat_rooms():
    return [room for room in rooms() if room.startswith(ROOM_PREFIX)]


# --8<-- [end:rooms]


# --8<-- [start:handlers]
@socketio.on("join")
def on_join(data=None):
    # require() returns the fields, stripped, or raises Refused: the sender gets an `error`.
    fields = require(data, room=MAX_ROOM, name=MAX_NAME)
    room, name = fields["room"], fields["name"]
    join_room(chat_room(room))
    session["name"] = name
    emit("system", {"room": room, "text": f"{name} joined {room}"}, to=chat_room(room))
    return {"ok": True, "room": room, "instance": INSTANCE_NAME}


@socketio.on("leave")
def on_leave(data=None):
    room = require(data, room=MAX_ROOM)["room"]
    if chat_room(room) not in rooms():
        raise Refused(f"you are not in room '{room}'")
    emit("system", {"room": room, "text": f"{session['name']} left {room}"}, to=chat_room(room))
    leave_room(chat_room(room))
    return {"ok": True, "room": room}


# --8<-- [start:message]
@socketio.on("message")
def on_message(data=None):
    fields = require(data, room=MAX_ROOM, text=MAX_TEXT)
    room = fields["room"]
    if chat_room(room) not in rooms():
        raise Refused(f"join room '{room}' before writing to it")
    # to=chat_room(room): only the room's members receive it (the sender is one of them).
    emit("message", {"room": room, "name": session["name"], "text": fields["text"]}, to=chat_room(room))
    return {"ok": True}


# --8<-- [end:message]


@socketio.on("connect")
def on_connect(auth=None):
    """A page that reconnects names itself and its rooms in `auth`; it is back in them at once.

    The Socket.IO client sends what it buffered while offline right after the connect: a
    `join` from the page would arrive after those messages, and they would be refused.
    """
    if not auth:
        return
    name = require(auth, name=MAX_NAME)["name"]
    names = auth.get("rooms")
    if not isinstance(names, list) or len(names) > MAX_ROOMS:
        raise Refused(f"'rooms' must be a list of at most {MAX_ROOMS} rooms")
    back_in = [require({"room": room}, room=MAX_ROOM)["room"] for room in names]
    session["name"] = name
    for room in back_in:
        join_room(chat_room(room))
        text = f"{name} is back in {room}"
        emit("system", {"room": room, "text": text}, to=chat_room(room), include_self=False)


@socketio.on("disconnect")
def on_disconnect(reason=None):
    # chat_rooms(), not rooms(): that also lists the connection's own room, named after its sid.
    for room in chat_rooms():
        name = room.removeprefix(ROOM_PREFIX)
        text = f"{session.get('name', 'someone')} left {name}"
        emit("system", {"room": name, "text": text}, to=room, include_self=False)


# --8<-- [end:handlers]


if __name__ == "__main__":
    # allow_unsafe_werkzeug: the threading mode runs on Werkzeug's development
    # server, which refuses to start outside a terminal (under a test or nox)
    # without it. Chapter 02 shows the production command.
    socketio.run(app, host=HOST, port=PORT, allow_unsafe_werkzeug=True)
