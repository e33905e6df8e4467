"""Chapter 06: delivery guarantees: nothing lost, nothing shown twice, one order, through reconnects.

What this shows
    Chapter 04's chat (rooms, the Redis queue, behind nginx), where a client that comes back
    misses no room message, sees none twice or out of order, or is told what it cannot have.
    Each message is written to its room's log in Redis first (roomlog.py: a stream, numbered
    1, 2, 3... per room), then sent live. The page sends, per room, the id of the last message
    it showed with every connect (`auth`); the server joins the rooms, replays what followed,
    then says `replay_done`. The page shows each number once, in order, and asks for gaps. Away
    longer than the log keeps messages, it gets `resync`: how many are gone. What it sends, it
    sends until acknowledged, under an id the server stores it under once.

How to run it (each terminal)
    1. redis-server --port 6379 --bind 127.0.0.1 --save "" --appendonly yes --appendfsync always \
                    --dir /tmp/redis06     (mkdir /tmp/redis06 first: its append-only file lives there)
    2. PORT=5001 INSTANCE_NAME=chat-1 python chapters/06_delivery_guarantees/app.py
    3. PORT=5002 INSTANCE_NAME=chat-2 python chapters/06_delivery_guarantees/app.py
    4. PORT=5003 INSTANCE_NAME=chat-3 python chapters/06_delivery_guarantees/app.py
    5. nginx -p /tmp/nginx06 -c "$PWD/chapters/04_nginx_lb/nginx.conf" -e stderr \
             -g 'daemon off; pid /tmp/nginx06/nginx.pid;'      (mkdir /tmp/nginx06 first)
    Open http://127.0.0.1:8080 in two browsers. Settings: chapter 04's environment variables
    (without HEARTBEAT_SECONDS), plus LOG_MAXLEN, LOG_WINDOW_SECONDS and HEAD_SECONDS below.

What breaks without it
    antipatterns/06_replay_before_join.py: replays, then joins; what is said in between is never
    sent. antipatterns/06_no_dedupe_on_retry.py: stores a retried message again; everyone sees it
    twice. antipatterns/06_apply_on_arrival.py: a page that shows what arrives as it arrives;
    after a replay or a fetch it shows messages twice and out of order.

TL;DR
    Log first (a numbered Redis stream per room), then live; join, replay, `replay_done`; the
    client drops, orders and asks by number; bounded retention, said out loud; one id per send.
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
from roomlog import CURSOR, START, Resync, RoomLog

# gevent: one process serves thousands of connections on greenlets (chapter 02).
ASYNC_MODE = "gevent"
HOST = os.environ.get("HOST", "127.0.0.1")
PORT = int(os.environ.get("PORT", "5000"))
INSTANCE_NAME = os.environ.get("INSTANCE_NAME", "chat-1")
PRODUCTION = os.environ.get("PRODUCTION") == "1"
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CHANNEL = os.environ.get("SOCKETIO_CHANNEL", "flask-socketio")
# --8<-- [start:knobs]
# Retention: each room's log keeps about its last LOG_MAXLEN messages, none older than
# LOG_WINDOW_SECONDS. A client away longer gets `resync` (what it lost), not a silent gap.
LOG_MAXLEN = int(os.environ.get("LOG_MAXLEN", "10000"))
LOG_WINDOW_SECONDS = float(os.environ.get("LOG_WINDOW_SECONDS", "3600"))
# A client's retry of a message is recognised for this long after the first try.
DEDUPE_SECONDS = 24 * 3600
# Every HEAD_SECONDS, each instance tells its clients the last number of each of their rooms:
# a live message lost on its way (Redis pub/sub keeps nothing) is then missed for that long
# at most, even in a room where nothing is said after it.
HEAD_SECONDS = float(os.environ.get("HEAD_SECONDS", "2"))
# A replay is sent in pages of this many messages, yielding between pages to the other clients.
REPLAY_PAGE = 500
# --8<-- [end:knobs]
JS_CLIENT_DIR = Path(
    os.environ.get("JS_CLIENT_DIR")
    or Path(__file__).resolve().parents[2] / "node_modules" / "socket.io-client" / "dist"
)

MAX_NAME = 32
MAX_ROOM = 32
MAX_TEXT = 500
MAX_ID = 64  # a client's id for one message it sends
MAX_ROOMS = 10

app = Flask(__name__)
app.config["SECRET_KEY"] = secret("SECRET_KEY", production=PRODUCTION)
# The queue carries the live fan-out (chapter 03), and keeps nothing: what it drops, the log
# below makes good.
socketio = SocketIO(app, async_mode=ASYNC_MODE, message_queue=REDIS_URL, channel=CHANNEL)

app.config.update(
    SOCKETIO_GUARD_EVENTS_PER_SECOND=int(os.environ.get("EVENTS_PER_SECOND", "20")),
    SOCKETIO_GUARD_MAX_ROOMS=MAX_ROOMS,
    SOCKETIO_GUARD_TRUSTED_HOSTS=os.environ.get("TRUSTED_HOSTS", "127.0.0.1,localhost").split(","),
    SOCKETIO_GUARD_ALLOWED_ORIGINS=[o for o in os.environ.get("ALLOWED_ORIGINS", "").split(",") if o],
)
guard = SocketIOGuard(app, socketio)

log = RoomLog(
    REDIS_URL,
    prefix=CHANNEL,
    maxlen=LOG_MAXLEN,
    window_seconds=LOG_WINDOW_SECONDS,
    dedupe_seconds=DEDUPE_SECONDS,
)

ROOM_PREFIX = "room:"


def chat_room(name):
    return ROOM_PREFIX + name


def chat_rooms():
    return [room for room in rooms() if room.startswith(ROOM_PREFIX)]


# --8<-- [start:message]
@socketio.on("message")
def on_message(data=None):
    fields = require(data, room=MAX_ROOM, text=MAX_TEXT, id=MAX_ID)
    room = fields["room"]
    if chat_room(room) not in rooms():
        raise Refused(f"join room '{room}' before writing to it")
    try:
        # The log first: once Redis has it, no crash loses it (with appendfsync always).
        entry, _retried = log.append(room, name=session["name"], text=fields["text"], cid=fields["id"])
    except redis.RedisError:
        # Not stored, so not sent: the client keeps it and sends it again, with the same id.
        return {"ok": False, "retry": True, "reason": "the log is unavailable; sending again"}
    # Then live. A retry is sent again too: its first fan-out may have died with an instance,
    # and a client that has it already drops it by its number.
    emit("message", entry, to=chat_room(room))
    return {"ok": True, "id": entry["id"]}


# --8<-- [end:message]


# --8<-- [start:connect]
@socketio.on("connect")
def on_connect(auth=None):
    cursors = rejoin(auth) if auth else {}
    emit("welcome", {"instance": INSTANCE_NAME})
    # Joined first, replayed second: a message stored from here on reaches this client live,
    # and one stored before is in what the replay reads. Either way it arrives (maybe twice:
    # the client drops the second). In a background task, so that the connect is answered
    # before the replay starts.
    if cursors:
        socketio.start_background_task(replay, request.sid, cursors)


# --8<-- [end:connect]


# --8<-- [start:replay]
# (sid, room) of each replay running on this instance: a client that asks again meanwhile
# (a fetch per gap it sees) costs nothing more than the replay it is already getting.
replaying = set()


def replay(sid, cursors):
    """Send `sid` what followed each cursor, a page at a time, then `replay_done` per room."""
    for room, cursor in cursors.items():
        if (sid, room) in replaying:
            continue  # its replay_done is coming: the client looks for gaps again then
        replaying.add((sid, room))
        try:
            catch_up(sid, room, cursor)
        except redis.RedisError:
            # The client asks again: at its next reconnect, or when the next message shows a gap.
            socketio.emit("replay_failed", {"room": room}, to=sid)
        finally:
            replaying.discard((sid, room))


def catch_up(sid, room, cursor):
    while True:
        entries = log.after(room, cursor, REPLAY_PAGE)
        if isinstance(entries, Resync):
            socketio.emit("resync", {"room": room, "after": entries.after, "lost": entries.lost}, to=sid)
            cursor = entries.after
            continue
        if entries:
            socketio.emit("replay", {"room": room, "entries": entries}, to=sid)
            cursor = entries[-1]["id"]
        if len(entries) < REPLAY_PAGE:
            break
        socketio.sleep(0)  # let the other clients of this instance have their turn
    socketio.emit("replay_done", {"room": room, "upto": cursor}, to=sid)


# --8<-- [end:replay]


# --8<-- [start:fetch]
@socketio.on("fetch")
def on_fetch(data=None):
    """A client saw a gap (or a head beyond what it has): replay from its cursor, as on a connect."""
    fields = require(data, room=MAX_ROOM, after=MAX_ID)
    room, cursor = fields["room"], fields["after"]
    if chat_room(room) not in rooms():
        raise Refused(f"you are not in room '{room}'")
    if not CURSOR.match(cursor):
        raise Refused("'after' must be a message id, like '1733580000000-42'")
    socketio.start_background_task(replay, request.sid, {room: cursor})
    return {"ok": True}


# --8<-- [end:fetch]


# --8<-- [start:join]
@socketio.on("join")
def on_join(data=None):
    fields = require(data, room=MAX_ROOM, name=MAX_NAME)
    room, name = fields["room"], fields["name"]
    # Joined first, then the head read: whatever follows the head reaches this client live.
    join_room(chat_room(room))
    session["name"] = name
    try:
        head = log.head(room)
    except redis.RedisError:
        leave_room(chat_room(room))
        return {"ok": False, "retry": True, "reason": "the log is unavailable; join again"}
    emit("system", {"room": room, "text": f"{name} joined {room}"}, to=chat_room(room))
    return {"ok": True, "room": room, "instance": INSTANCE_NAME, "head": head}


# --8<-- [end:join]


@socketio.on("leave")
def on_leave(data=None):
    room = require(data, room=MAX_ROOM)["room"]
    if chat_room(room) not in rooms():
        raise Refused(f"you are not in room '{room}'")
    emit("system", {"room": room, "text": f"{session['name']} left {room}"}, to=chat_room(room))
    leave_room(chat_room(room))
    return {"ok": True, "room": room}


@socketio.on("disconnect")
def on_disconnect(reason=None):
    for room in chat_rooms():
        name = room.removeprefix(ROOM_PREFIX)
        text = f"{session.get('name', 'someone')} left {name}"
        emit("system", {"room": name, "text": text}, to=room, include_self=False)


def rejoin(auth):
    """`auth` names the page, its rooms and, per room, the last message id it showed.

    Returns {room: cursor}. A room without a cursor starts at START: the whole log.
    """
    name = require(auth, name=MAX_NAME)["name"]
    names, cursors = auth.get("rooms"), auth.get("cursors", {})
    if not isinstance(names, list) or len(names) > MAX_ROOMS:
        raise Refused(f"'rooms' must be a list of at most {MAX_ROOMS} rooms")
    ids = cursors.values() if isinstance(cursors, dict) else [None]
    if not all(isinstance(c, str) and CURSOR.match(c) for c in ids):
        raise Refused("'cursors' must map rooms to message ids, like '1733580000000-42'")
    back_in = [require({"room": room}, room=MAX_ROOM)["room"] for room in names]
    session["name"] = name
    for room in back_in:
        join_room(chat_room(room))
        text = f"{name} is back in {room}"
        emit("system", {"room": room, "text": text}, to=chat_room(room), include_self=False)
    return {room: cursors.get(room, START) for room in back_in}


# --8<-- [start:head]
def head_loop():
    """Every HEAD_SECONDS, tell this instance's clients the last id of each of their rooms.

    A client that is behind asks for the rest (`fetch`). Sent with ignore_queue: each instance
    tells its own clients, once each.
    """
    while True:
        socketio.sleep(HEAD_SECONDS)
        # The rooms this instance's clients are in, as python-socketio keeps them (no public API
        # lists them; tests/chapter06/test_roomlog.py fails by name if that changes).
        local = [r for r in socketio.server.manager.rooms.get("/", {}) if r and r.startswith(ROOM_PREFIX)]
        for room in local:
            name = room.removeprefix(ROOM_PREFIX)
            try:
                head = log.head(name)
            except redis.RedisError:
                break
            socketio.emit("head", {"room": name, "head": head}, to=room, ignore_queue=True)


# --8<-- [end:head]


STARTED_WITH = next((arg for arg in sys.orig_argv[1:] if arg.endswith(".py")), sys.argv[0])
SERVED_BY = "/".join(Path(STARTED_WITH).resolve().parts[-2:])


@app.get("/")
def index():
    return render_template("index.html", served_by=SERVED_BY)


@app.get("/vendor/socket.io.min.js")
def socketio_client_js():
    return send_from_directory(JS_CLIENT_DIR, "socket.io.min.js")


@app.get("/healthz")
def healthz():
    try:
        up = log.redis.ping()
    except redis.RedisError:
        up = False  # this instance still serves its clients; nothing can be stored meanwhile
    return jsonify(status="ok", instance=INSTANCE_NAME, async_mode=ASYNC_MODE, redis="up" if up else "down")


@socketio.on("ping")
def on_ping(data=None):
    return {"ok": True}


def serve():
    """The head ticks, then the server: what `python app.py` runs (and each twin, after its change)."""
    socketio.start_background_task(head_loop)
    print(f"{INSTANCE_NAME} starting on http://{HOST}:{PORT}/", flush=True)
    socketio.run(app, host=HOST, port=PORT, log_output=False)


if __name__ == "__main__":
    serve()
