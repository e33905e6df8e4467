"""Antipattern 03: several instances with no message queue between them.

What it does
    The chapter 03 chat, a copy of chapters/03_redis_scaling/app.py, started
    as several instances, but created with `SocketIO(app, async_mode=...)`
    and no `message_queue`. Each instance works perfectly on its own.

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
    With REDIS_URL=redis://127.0.0.1:6379/1 (a database of its own beside the
    chapter's; the online count still lives in Redis: only the queue is missing,
    and the count is right while every cross-instance emit is lost), then
    PORT=5101 INSTANCE_NAME=chat-1 python antipatterns/03_no_message_queue.py
    PORT=5102 INSTANCE_NAME=chat-2 python antipatterns/03_no_message_queue.py

Differs from chapters/03_redis_scaling/app.py
    socketio: created with no message_queue and no channel
    JS_CLIENT_DIR, app: this file is in antipatterns/; the page, the JS client and the
        modules it imports (gevent_patch, online) are the chapter's (plumbing)
"""

import sys
from pathlib import Path

# The chapter's folder, for the modules this copy of its app.py imports.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "chapters" / "03_redis_scaling"))
# First, before any other import: gevent_patch.py monkey patches the standard library for
# gevent. A module imported before it could keep the blocking originals (chapter 02), and
# python-socketio refuses a Redis queue on an unpatched socket.
import gevent_patch  # noqa: F401  (imported for what it does, not for a name)

# isort: split
import hmac
import os

import redis
from flask import Flask, jsonify, render_template, request, send_from_directory, session
from flask_socketio import SocketIO, emit, join_room, leave_room, rooms
from flask_socketio_guard import Refused, SocketIOGuard, require, secret
from online import OnlineCount

# gevent: one process serves thousands of connections on greenlets (chapter 02).
ASYNC_MODE = "gevent"
HOST = os.environ.get("HOST", "127.0.0.1")
PORT = int(os.environ.get("PORT", "5000"))
INSTANCE_NAME = os.environ.get("INSTANCE_NAME", "chat-1")
# PRODUCTION=1: secrets must come from the environment, never a throwaway default.
PRODUCTION = os.environ.get("PRODUCTION") == "1"
# The message queue every instance of this cluster shares.
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
# The pub/sub channel of this cluster. Two clusters on one Redis stay apart only if their
# channels differ; the online count's keys are named after it too.
CHANNEL = os.environ.get("SOCKETIO_CHANNEL", "flask-socketio")
# Unset: anyone who can reach the port may POST /notify (fine on loopback, in the lab).
# Set: POST /notify needs "Authorization: Bearer <NOTIFY_TOKEN>".
NOTIFY_TOKEN = os.environ.get("NOTIFY_TOKEN", "")
# Each instance reads the count from Redis this often and, when it moved, tells its own
# clients. A burst of connects costs each client one message per interval, not one per
# connect (n connects x n clients), nor one per instance (instances x n).
ONLINE_PUSH_SECONDS = 1.0
# How often this instance rewrites its users into Redis. A crashed instance's users
# still count for three missed rewrites, then drop out.
HEARTBEAT_SECONDS = float(os.environ.get("HEARTBEAT_SECONDS", "5"))
# The Socket.IO browser client, installed from npm (`npm ci` at the repository root)
# and served by this app, so the page works with no internet.
JS_CLIENT_DIR = Path(
    os.environ.get("JS_CLIENT_DIR")
    or Path(__file__).resolve().parents[1] / "node_modules" / "socket.io-client" / "dist"
)

MAX_NAME = 32
MAX_ROOM = 32
MAX_TEXT = 500
MAX_ROOMS = 10  # rooms one connection may be in at once

# The chapter's page, so the two can be compared side by side.
app = Flask(
    __name__,
    template_folder=Path(__file__).resolve().parents[1] / "chapters" / "03_redis_scaling" / "templates",
)
app.config["SECRET_KEY"] = secret("SECRET_KEY", production=PRODUCTION)
# --8<-- [start:socketio]
socketio = SocketIO(
    app,
    async_mode=ASYNC_MODE,
    # expected: message_queue=REDIS_URL, channel=CHANNEL: every emit published on Redis, and
    # every instance delivers it to its own clients;
    # actual: no queue, so each instance is an island and its emits stay at home
)
# --8<-- [end:socketio]

# What every chapter needs and none teaches: a client that is not this page gets a reason or
# loses its own connection, never anyone else's (docs/hardening.md, flask-socketio-guard/).
app.config.update(
    SOCKETIO_GUARD_EVENTS_PER_SECOND=int(os.environ.get("EVENTS_PER_SECOND", "20")),
    SOCKETIO_GUARD_MAX_ROOMS=MAX_ROOMS,
    SOCKETIO_GUARD_TRUSTED_HOSTS=os.environ.get("TRUSTED_HOSTS", "127.0.0.1,localhost").split(","),
    SOCKETIO_GUARD_ALLOWED_ORIGINS=[o for o in os.environ.get("ALLOWED_ORIGINS", "").split(",") if o],
)
guard = SocketIOGuard(app, socketio)


# Users online across every instance, counted in Redis: one set per instance (online.py).
online = OnlineCount(
    REDIS_URL,
    channel=CHANNEL,
    instance=INSTANCE_NAME,
    heartbeat_seconds=HEARTBEAT_SECONDS,
    push_seconds=ONLINE_PUSH_SECONDS,
)


def online_count_loop():
    """Every second, read the count from Redis and tell this instance's own clients if it moved.

    Every instance does the same for its own clients, so each client hears of a change
    within about a second, wherever it happened (another instance's connects, a crashed
    instance's set expiring, Redis restarting empty). Pushed through the queue instead,
    each change would reach every client once per instance: hence ignore_queue=True.
    """
    while True:
        if payload := online.update():
            socketio.emit("online", payload, ignore_queue=True)
        socketio.sleep(ONLINE_PUSH_SECONDS)


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
    try:
        _, per_instance = online.count()
    except redis.RedisError:
        # This instance still serves its own clients; the shared count is unknown.
        return jsonify(status="ok", instance=INSTANCE_NAME, async_mode=ASYNC_MODE, redis="down")
    return jsonify(
        status="ok",
        instance=INSTANCE_NAME,
        async_mode=ASYNC_MODE,
        redis="up",
        channel=CHANNEL,
        online=sum(per_instance.values()),
        online_by_instance=per_instance,
    )


# Rooms a client names live under this prefix, apart from the rooms the server keeps for
# itself: each connection's own room, named after its sid. A client that names a sid as
# its room finds nothing there to leave or write to.
ROOM_PREFIX = "room:"


def chat_room(name):
    return ROOM_PREFIX + name


def chat_rooms():
    return [room for room in rooms() if room.startswith(ROOM_PREFIX)]


@socketio.on("join")
def on_join(data=None):
    fields = require(data, room=MAX_ROOM, name=MAX_NAME)
    room, name = fields["room"], fields["name"]
    # Rooms are kept by the instance that holds the connection; the queue carries each
    # room emit to every instance, and each delivers it to its own members of the room.
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


@socketio.on("message")
def on_message(data=None):
    fields = require(data, room=MAX_ROOM, text=MAX_TEXT)
    room = fields["room"]
    if chat_room(room) not in rooms():
        raise Refused(f"join room '{room}' before writing to it")
    emit("message", {"room": room, "name": session["name"], "text": fields["text"]}, to=chat_room(room))
    return {"ok": True}


@socketio.on("connect")
def on_connect(auth=None):
    if auth:
        rejoin(auth)  # a bad `auth` refuses the connection: then it is never counted
    online.connected(request.sid)


@socketio.on("disconnect")
def on_disconnect(reason=None):
    # chat_rooms(), not rooms(): that also lists the connection's own room, named after its sid.
    for room in chat_rooms():
        name = room.removeprefix(ROOM_PREFIX)
        text = f"{session.get('name', 'someone')} left {name}"
        emit("system", {"room": name, "text": text}, to=room, include_self=False)
    online.disconnected(request.sid)


def rejoin(auth):
    """A page that reconnects names itself and its rooms in `auth`; it is back in them at once.

    The Socket.IO client sends what it buffered while offline right after the connect: a
    `join` from the page would arrive after those messages, and they would be refused.
    """
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


@socketio.on("broadcast")
def on_broadcast(data=None):
    text = require(data, text=MAX_TEXT)["text"]
    # No `to`: every client of every instance. The ack means "published", not "delivered":
    # if Redis is down, python-socketio logs the failure and the other instances never hear of it.
    socketio.emit("broadcast", {"text": text})
    return {"ok": True}


# The cheapest event there is: what the tests and the bench time.
@socketio.on("ping")
def on_ping(data=None):
    return {"ok": True}


if PRODUCTION and not NOTIFY_TOKEN:
    raise SystemExit("NOTIFY_TOKEN must be set when PRODUCTION=1: anyone could POST /notify")


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
    """Send a `notice` to every client of every instance: POST {"text": "..."} as JSON."""
    if not authorized():
        return jsonify(ok=False, reason="missing or wrong bearer token"), 401
    try:
        # silent=True: a body that is not JSON (or not sent as application/json) is None,
        # which require() refuses with a reason, instead of Flask's generic HTML error page.
        text = require(request.get_json(silent=True), text=MAX_TEXT)["text"]
    except Refused as bad:
        return jsonify(ok=False, reason=f'body must be JSON like {{"text": "..."}}: {bad}'), 400
    socketio.emit("notice", {"text": text, "source": f"POST /notify on {INSTANCE_NAME}"})
    return jsonify(ok=True)


if __name__ == "__main__":
    socketio.start_background_task(online_count_loop)
    print(f"{INSTANCE_NAME} starting on http://{HOST}:{PORT}/", flush=True)  # the server itself says nothing
    # log_output=False: no access-log line per long-polling request; errors still show.
    socketio.run(app, host=HOST, port=PORT, log_output=False)
