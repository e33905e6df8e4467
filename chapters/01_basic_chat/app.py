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
    SECRET_KEY and ALLOWED_ORIGINS (a comma-separated list; unset means
    "same origin only").

What breaks without it
    antipatterns/01_broadcast_to_everyone.py emits with broadcast=True
    instead of to=room, so every room's messages leak into every other room,
    and it indexes payloads unchecked, so a malformed message kills the
    handler with no word to the sender.

TL;DR
    emit(..., to=room), never broadcast=True, for room messages; validate
    every payload and answer a bad one with an `error` event.
"""

import os
from pathlib import Path

from flask import Flask, jsonify, render_template, request, send_from_directory, session
from flask_socketio import SocketIO, emit, join_room, leave_room, rooms

# --8<-- [start:config]
# Explicit, always: left to auto-detection, Flask-SocketIO silently picks
# eventlet whenever it happens to be installed. Chapter 02 compares the modes.
ASYNC_MODE = "threading"
HOST = os.environ.get("HOST", "127.0.0.1")
PORT = int(os.environ.get("PORT", "5000"))
INSTANCE_NAME = os.environ.get("INSTANCE_NAME", "chat-1")
# Unset: only pages served by this app may connect (python-engineio's same-origin default).
ALLOWED_ORIGINS = [o for o in os.environ.get("ALLOWED_ORIGINS", "").split(",") if o] or None
# The Socket.IO browser client, installed from npm (`npm ci` at the repository root)
# and served by this app, so the page works with no internet.
JS_CLIENT_DIR = Path(
    os.environ.get("JS_CLIENT_DIR")
    or Path(__file__).resolve().parents[2] / "node_modules" / "socket.io-client" / "dist"
)

MAX_NAME = 32
MAX_ROOM = 32
MAX_TEXT = 500
# --8<-- [end:config]

# --8<-- [start:socketio]
app = Flask(__name__)
app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY", os.urandom(16).hex())
socketio = SocketIO(app, async_mode=ASYNC_MODE, cors_allowed_origins=ALLOWED_ORIGINS)
# --8<-- [end:socketio]


# --8<-- [start:routes]
@app.get("/")
def index():
    return render_template("index.html", instance=INSTANCE_NAME)


@app.get("/vendor/socket.io.min.js")
def socketio_client_js():
    return send_from_directory(JS_CLIENT_DIR, "socket.io.min.js")


@app.get("/healthz")
def healthz():
    return jsonify(status="ok", instance=INSTANCE_NAME, async_mode=ASYNC_MODE)


# --8<-- [end:routes]


# --8<-- [start:validate]
class BadPayload(ValueError):
    """The reason a payload was refused; it is sent back to the sender as is."""


def require(data, **limits):
    """Return the payload's fields, stripped, or raise BadPayload with the reason.

    `limits` maps each required key to its maximum length: require(data, room=32).
    """
    if not isinstance(data, dict):
        raise BadPayload("payload must be an object")
    fields = {}
    for key, max_length in limits.items():
        if key not in data:
            raise BadPayload(f"missing key '{key}'")
        value = data[key]
        if not isinstance(value, str):
            raise BadPayload(f"'{key}' must be a string")
        value = value.strip()
        if not value:
            raise BadPayload(f"'{key}' must not be empty")
        if len(value) > max_length:
            raise BadPayload(f"'{key}' is longer than {max_length} characters")
        fields[key] = value
    return fields


def refuse(event, reason):
    """Tell the sender, and only the sender, why its event was refused."""
    emit("error", {"event": event, "reason": reason})
    return {"ok": False, "reason": reason}


# --8<-- [end:validate]


# --8<-- [start:errors]
@socketio.on_error_default
def on_handler_error(error):
    """Whatever a handler raises: the sender gets a reason and a failed ack; the log, one line.

    A client that is not this page can send anything. `42["join",{...},{...}]` (two
    arguments) makes the call itself raise TypeError before the handler runs. A
    traceback for each such event would let one client fill the disk.
    """
    event, args = request.event["message"], request.event["args"]
    app.logger.warning("refused %r from %s: %s: %s", event, request.sid, type(error).__name__, error)
    if len(args) > 1:
        return refuse(event, f"send one object, not {len(args)} arguments")
    return refuse(event, "the server could not handle this event")


def sent_by_the_client():
    """True when a `connect` or `disconnect` handler runs for an event a client sent itself.

    Any client can emit an event named "disconnect", and python-socketio hands it to the
    disconnect handler. The real one runs while the connection is still pending
    (python-socketio's pre_connect and pre_disconnect); a client's own, once it is connected.
    """
    return socketio.server.manager.is_connected(request.sid, request.namespace)


# Rooms a client names live under this prefix, apart from the rooms the server keeps for
# itself: each connection's own room, named after its sid (and, in chapter 05, each
# user's). A client that names a sid as its room finds nothing there to leave or write to.
ROOM_PREFIX = "room:"


def chat_room(name):
    return ROOM_PREFIX + name


# --8<-- [end:errors]


# --8<-- [start:handlers]
@socketio.on("join")
def on_join(data=None):
    try:
        fields = require(data, room=MAX_ROOM, name=MAX_NAME)
    except BadPayload as bad:
        return refuse("join", str(bad))
    room, name = fields["room"], fields["name"]
    session["name"] = name
    join_room(chat_room(room))
    emit("system", {"room": room, "text": f"{name} joined {room}"}, to=chat_room(room))
    return {"ok": True, "room": room, "instance": INSTANCE_NAME}


@socketio.on("leave")
def on_leave(data=None):
    try:
        room = require(data, room=MAX_ROOM)["room"]
    except BadPayload as bad:
        return refuse("leave", str(bad))
    if chat_room(room) not in rooms():
        return refuse("leave", f"you are not in room '{room}'")
    emit("system", {"room": room, "text": f"{session['name']} left {room}"}, to=chat_room(room))
    leave_room(chat_room(room))
    return {"ok": True, "room": room}


# --8<-- [start:message]
@socketio.on("message")
def on_message(data=None):
    try:
        fields = require(data, room=MAX_ROOM, text=MAX_TEXT)
    except BadPayload as bad:
        return refuse("message", str(bad))
    room = fields["room"]
    if chat_room(room) not in rooms():
        return refuse("message", f"join room '{room}' before writing to it")
    # to=chat_room(room): only the room's members receive it (the sender is one of them).
    emit("message", {"room": room, "name": session["name"], "text": fields["text"]}, to=chat_room(room))
    return {"ok": True}


# --8<-- [end:message]


@socketio.on("disconnect")
def on_disconnect(reason=None):
    if sent_by_the_client():
        return refuse("disconnect", "a client cannot send 'disconnect'; close the connection instead")
    # rooms() also lists the connection's own room, named after its sid: not a chat room.
    for room in rooms():
        if room.startswith(ROOM_PREFIX):
            name = room.removeprefix(ROOM_PREFIX)
            text = f"{session.get('name', 'someone')} left {name}"
            emit("system", {"room": name, "text": text}, to=room, include_self=False)


# --8<-- [end:handlers]


# --8<-- [start:run]
if __name__ == "__main__":
    # allow_unsafe_werkzeug: the threading mode runs on Werkzeug's development
    # server, which refuses to start outside a terminal (under a test or nox)
    # without it. Chapter 02 shows the production command.
    socketio.run(app, host=HOST, port=PORT, allow_unsafe_werkzeug=True)
# --8<-- [end:run]
