"""Chapter 04: one address in front of the instances: nginx with sticky sessions.

What this shows
    Chapter 03's app (the chat, the Redis message queue, the online count in
    online.py) run as three instances behind one nginx, configured by
    nginx.conf in this folder: WebSocket upgrades passed through, and every
    request of a session kept on the instance that holds it
    (`hash $remote_addr consistent`), so long-polling works too. haproxy.cfg
    does the same with a cookie. The app itself changes in one way: it tells
    each connection which instance holds it (the `welcome` event), because
    behind one address the page can no longer tell from its URL. When an
    instance dies, its clients reconnect through the same address to the
    others. And its /healthz tells a balancer when the instance can no longer
    hear the queue (watched_queue.py), so that HAProxy moves its users away.

How to run it (each terminal)
    1. redis-server --port 6379 --bind 127.0.0.1 --save "" --appendonly no
    2. PORT=5001 INSTANCE_NAME=chat-1 python chapters/04_nginx_lb/app.py
    3. PORT=5002 INSTANCE_NAME=chat-2 python chapters/04_nginx_lb/app.py
    4. PORT=5003 INSTANCE_NAME=chat-3 python chapters/04_nginx_lb/app.py
    5. nginx -p /tmp/nginx04 -c "$PWD/chapters/04_nginx_lb/nginx.conf" -e stderr \
             -g 'daemon off; pid /tmp/nginx04/nginx.pid;'      (mkdir /tmp/nginx04 first)
    Open http://127.0.0.1:8080 in two browsers. README.md has the HAProxy line.
    Settings come from the environment, as in chapter 03 (without
    NOTIFY_TOKEN: there is no POST /notify here): chapter 01's HOST, PORT,
    INSTANCE_NAME, SECRET_KEY, PRODUCTION and the guard's, plus REDIS_URL,
    SOCKETIO_CHANNEL, HEARTBEAT_SECONDS and QUEUE_HEARTBEAT_SECONDS.

What breaks without it
    antipatterns/04_round_robin.conf: no stickiness; long-polling clients get
    400 "Invalid session <sid>". antipatterns/04_no_upgrade_headers.conf: no
    Upgrade headers; every client stays on long-polling, and nothing says so.
    antipatterns/04_ip_hash.conf: ip_hash puts every client of one /24 (one
    office, one NAT) on one instance. antipatterns/04_gunicorn_many_workers.conf.py:
    `gunicorn -w 4` on one port, a balancer with no stickiness at all.

TL;DR
    proxy_http_version 1.1 and the Upgrade/Connection headers for WebSocket;
    a sticky upstream for polling (hash on the client address, or a cookie);
    a message queue behind it (chapter 03); one worker per app process; a
    /healthz that fails while the instance cannot hear the queue.
"""

# First, before any other import: gevent_patch.py monkey patches the standard library for
# gevent (chapter 02 says why first, chapter 03 why the Redis queue insists on it).
import gevent_patch  # noqa: F401  (imported for what it does, not for a name)

# isort: split
import os
import sys
from pathlib import Path

import redis
from flask import Flask, jsonify, render_template, request, send_from_directory, session
from flask_socketio import SocketIO, emit, join_room, leave_room, rooms
from flask_socketio_guard import Refused, SocketIOGuard, require, secret
from online import OnlineCount
from watched_queue import WatchedRedisManager, keepalive_options

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
# Each instance reads the count from Redis this often and, when it moved, tells its own
# clients. A burst of connects costs each client one message per interval, not one per
# connect (n connects x n clients), nor one per instance (instances x n).
ONLINE_PUSH_SECONDS = 1.0
# How often this instance rewrites its users into Redis. A crashed instance's users
# still count for three missed rewrites, then drop out.
HEARTBEAT_SECONDS = float(os.environ.get("HEARTBEAT_SECONDS", "5"))
# --8<-- [start:queue-settings]
# The queue's connections probe an idle path after 5 s, every 2 s, and give up after 3
# unanswered probes: a dead path is noticed within 11 s (redis-py's defaults: 30, 5, 3).
QUEUE_OPTIONS = {
    "socket_keepalive": True,
    "socket_keepalive_options": keepalive_options(idle=5, interval=2, count=3),
    "socket_connect_timeout": 3,
}
# This instance publishes a heartbeat on the queue this often, and hears its own. When it
# has heard nothing for three of them, /healthz answers 503: this instance is deaf.
QUEUE_HEARTBEAT_SECONDS = float(os.environ.get("QUEUE_HEARTBEAT_SECONDS", "1"))
DEAF_AFTER_SECONDS = 3 * QUEUE_HEARTBEAT_SECONDS
# --8<-- [end:queue-settings]
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

app = Flask(__name__)
app.config["SECRET_KEY"] = secret("SECRET_KEY", production=PRODUCTION)
# --8<-- [start:queue]
# The queue: every emit is delivered to this instance's clients and published on Redis;
# every instance subscribed to `channel` delivers it to its own (chapter 03). A balancer
# does not replace it: stickiness keeps a client on one instance, the queue reaches the
# clients of all the others. If Redis goes away, python-socketio drops what it cannot
# publish (it logs "Cannot publish to redis... giving up"; python-socketio#1411) and
# resubscribes on its own after 1, 2, 4... up to 60 s (python-socketio#617).
# It is passed as a client_manager, not as message_queue=REDIS_URL: Flask-SocketIO builds
# that one with no redis_options, so the keepalive settings would never reach Redis.
queue = WatchedRedisManager(
    REDIS_URL, channel=CHANNEL, redis_options=QUEUE_OPTIONS, heartbeat_seconds=QUEUE_HEARTBEAT_SECONDS
)
socketio = SocketIO(app, async_mode=ASYNC_MODE, client_manager=queue)
# --8<-- [end:queue]

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
    return render_template("index.html", served_by=SERVED_BY)


@app.get("/vendor/socket.io.min.js")
def socketio_client_js():
    return send_from_directory(JS_CLIENT_DIR, "socket.io.min.js")


# --8<-- [start:healthz]
@app.get("/healthz")
def healthz():
    heard_ago = queue.heard_ago()  # None until the first client's connect starts the listener
    if heard_ago is not None and heard_ago > DEAF_AFTER_SECONDS:
        # Its users would miss everything said on the other instances: a balancer that
        # checks this (haproxy.cfg) takes the instance out and closes its connections.
        return jsonify(status="deaf", instance=INSTANCE_NAME, queue_heard_ago=round(heard_ago, 1)), 503
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


# --8<-- [end:healthz]


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
    # --8<-- [start:welcome]
    # Behind one address, the page cannot tell from its URL which instance holds its
    # connection, and after a failover it is another one: say so on every connect.
    emit("welcome", {"instance": INSTANCE_NAME})
    # --8<-- [end:welcome]


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


# --8<-- [start:run]
if __name__ == "__main__":
    socketio.start_background_task(online_count_loop)
    print(f"{INSTANCE_NAME} starting on http://{HOST}:{PORT}/", flush=True)  # the server itself says nothing
    # log_output=False: no access-log line per long-polling request; errors still show.
    socketio.run(app, host=HOST, port=PORT, log_output=False)
# --8<-- [end:run]
