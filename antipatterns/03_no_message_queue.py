"""Antipattern 03: several instances with no message queue between them.

What it does
    The chapter 03 chat (same events, same validation) started as several
    instances, but created with `SocketIO(app, async_mode=...)` and no
    `message_queue`. Each instance works perfectly on its own.

Why is this bad?
    An emit reaches only the clients of the process that made it. A
    `broadcast` from a client on instance 1 reaches exactly the clients of
    instance 1; everyone on the other instances misses it, and nothing
    anywhere logs an error. The same for a room whose members sit on
    different instances, and for `POST /notify`. An external emitter
    (notify.py) reaches nobody: no instance listens to Redis. With one
    instance in development, none of this shows.

Use instead
    chapters/03_redis_scaling/app.py: `SocketIO(app, async_mode=...,
    message_queue=REDIS_URL, channel=CHANNEL)` on every instance.

How to run it
    PORT=5101 INSTANCE_NAME=chat-1 python antipatterns/03_no_message_queue.py
    PORT=5102 INSTANCE_NAME=chat-2 python antipatterns/03_no_message_queue.py
    (no Redis needed: that is the bug). The online count is left out here;
    antipatterns/03_counter_in_process_memory.py gets it wrong on purpose.
"""

from gevent import monkey

monkey.patch_all()

import hmac  # noqa: E402  (imported after patching, on purpose: the rest of this file too)
import os  # noqa: E402
from pathlib import Path  # noqa: E402

from flask import Flask, jsonify, render_template, request, send_from_directory, session  # noqa: E402
from flask_socketio import SocketIO, emit, join_room, leave_room, rooms  # noqa: E402

ASYNC_MODE = "gevent"
HOST = os.environ.get("HOST", "127.0.0.1")
PORT = int(os.environ.get("PORT", "5000"))
INSTANCE_NAME = os.environ.get("INSTANCE_NAME", "chat-1")
ALLOWED_ORIGINS = [o for o in os.environ.get("ALLOWED_ORIGINS", "").split(",") if o] or None
# Set: POST /notify needs "Authorization: Bearer <NOTIFY_TOKEN>", as on the chapter.
NOTIFY_TOKEN = os.environ.get("NOTIFY_TOKEN", "")
CHAPTER_DIR = Path(__file__).resolve().parents[1] / "chapters" / "03_redis_scaling"
JS_CLIENT_DIR = Path(
    os.environ.get("JS_CLIENT_DIR")
    or Path(__file__).resolve().parents[1] / "node_modules" / "socket.io-client" / "dist"
)
MAX_NAME = 32
MAX_ROOM = 32
MAX_TEXT = 500

# The same page as the chapter, so the two can be compared side by side.
app = Flask(__name__, template_folder=CHAPTER_DIR / "templates")
app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY", os.urandom(16).hex())
# --8<-- [start:socketio]
# expected: every instance shares its emits through Redis;
# actual: no message_queue, so each instance is an island and its emits stay at home
socketio = SocketIO(app, async_mode=ASYNC_MODE, cors_allowed_origins=ALLOWED_ORIGINS)
# --8<-- [end:socketio]


@app.get("/")
def index():
    return render_template("index.html", instance=f"{INSTANCE_NAME} (antipattern 03, no queue)")


@app.get("/vendor/socket.io.min.js")
def socketio_client_js():
    return send_from_directory(JS_CLIENT_DIR, "socket.io.min.js")


@app.get("/healthz")
def healthz():
    return jsonify(status="ok", instance=INSTANCE_NAME, async_mode=ASYNC_MODE)


class BadPayload(ValueError):
    """The reason a payload was refused; it is sent back to the sender as is."""


def require(data, **limits):
    """Return the payload's fields, stripped, or raise BadPayload with the reason."""
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
    emit("error", {"event": event, "reason": reason})
    return {"ok": False, "reason": reason}


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


# --8<-- [start:emits]
@socketio.on("message")
def on_message(data=None):
    try:
        fields = require(data, room=MAX_ROOM, text=MAX_TEXT)
    except BadPayload as bad:
        return refuse("message", str(bad))
    room = fields["room"]
    if chat_room(room) not in rooms():
        return refuse("message", f"join room '{room}' before writing to it")
    # expected: every member of the room, on any instance;
    # actual: only the members connected to this instance
    emit("message", {"room": room, "name": session["name"], "text": fields["text"]}, to=chat_room(room))
    return {"ok": True}


@socketio.on("broadcast")
def on_broadcast(data=None):
    try:
        text = require(data, text=MAX_TEXT)["text"]
    except BadPayload as bad:
        return refuse("broadcast", str(bad))
    # expected: every client of every instance; actual: only the clients of this instance,
    # and the sender's ack still says ok
    socketio.emit("broadcast", {"text": text})
    return {"ok": True}


# --8<-- [end:emits]


@socketio.on("ping")
def on_ping(data=None):
    return {"ok": True}


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


def authorized():
    """True when no NOTIFY_TOKEN is set, or the request carries it as a bearer token.

    Compared in constant time (hmac.compare_digest): how long a wrong token takes to be
    refused must say nothing of how much of it was right.
    """
    if not NOTIFY_TOKEN:
        return True
    given = request.headers.get("Authorization", "").encode()
    return hmac.compare_digest(given, f"Bearer {NOTIFY_TOKEN}".encode())


@app.post("/notify")
def notify():
    if not authorized():
        return jsonify(ok=False, reason="missing or wrong bearer token"), 401
    try:
        text = require(request.get_json(silent=True), text=MAX_TEXT)["text"]
    except BadPayload as bad:
        return jsonify(ok=False, reason=f'body must be JSON like {{"text": "..."}}: {bad}'), 400
    # expected: a notice for everyone; actual: for the clients of whichever instance got the POST
    socketio.emit("notice", {"text": text, "source": f"POST /notify on {INSTANCE_NAME}"})
    return jsonify(ok=True)


if __name__ == "__main__":
    socketio.run(app, host=HOST, port=PORT, log_output=False)
