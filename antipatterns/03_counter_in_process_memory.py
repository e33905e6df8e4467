"""Antipattern 03: users online counted in process memory, on several instances.

What it does
    The chapter 03 chat, a copy of chapters/03_redis_scaling/app.py with its
    Redis message queue, but the number of users online is read from process
    memory: each instance counts the connections it holds (`local_sids`, a
    module-level set) instead of summing every instance's set in Redis.

Why is this bad?
    Each process counts only its own connections. With three instances of
    ten users each, every instance says "10 online" while 30 are; /healthz
    disagrees from one instance to the next, and each page shows the share
    of the instance it happens to reach, never the total. Nothing logs an
    error: every number is right about one process. The same goes for any state
    kept in process memory: a dict of who is in which room, a rate-limit
    counter, a "last message" cache.

Use instead
    chapters/03_redis_scaling/app.py: one Redis set of session ids per
    instance, summed across instances, with a TTL so that a crashed
    instance's users drop out.

How to run it
    redis-server --port 6379, then
    PORT=5201 INSTANCE_NAME=chat-1 python antipatterns/03_counter_in_process_memory.py
    PORT=5202 INSTANCE_NAME=chat-2 python antipatterns/03_counter_in_process_memory.py

Differs from chapters/03_redis_scaling/app.py
    count_online: counts this process's connections, not every instance's
    JS_CLIENT_DIR, app: this file is in antipatterns/; the page and JS client are the chapter's (plumbing)
"""

# First, before any other import: gevent replaces the blocking parts of the standard
# library (socket, ssl, time, threading) with cooperative ones. Without it, python-socketio
# refuses the Redis queue (socketio.RedisManager.initialize checks it): the server logs
#     RuntimeError: Redis requires a monkey patched socket library to work with gevent
# and refuses the first client (401), and every client after it times out. eventlet
# without eventlet.monkey_patch() does the same. Chapter 02 explains why the patch comes
# before every other import.
from gevent import monkey

monkey.patch_all()

import errno  # noqa: E402  (imported after patching, on purpose: the rest of this file too)
import functools  # noqa: E402
import hmac  # noqa: E402
import io  # noqa: E402
import os  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from urllib.parse import parse_qs  # noqa: E402

import redis  # noqa: E402
from engineio.packet import CLOSE, MESSAGE, PONG  # noqa: E402
from engineio.payload import Payload  # noqa: E402
from flask import Flask, jsonify, render_template, request, send_from_directory, session  # noqa: E402
from flask_socketio import ConnectionRefusedError, SocketIO, emit, join_room, leave_room, rooms  # noqa: E402
from socketio.packet import BINARY_EVENT, EVENT  # noqa: E402
from werkzeug.sansio.utils import host_is_trusted  # noqa: E402

# gevent: one process serves thousands of connections on greenlets (chapter 02).
ASYNC_MODE = "gevent"
HOST = os.environ.get("HOST", "127.0.0.1")
PORT = int(os.environ.get("PORT", "5000"))
INSTANCE_NAME = os.environ.get("INSTANCE_NAME", "chat-1")
# Pages served by other origins that may connect too; this app's own page always may.
ALLOWED_ORIGINS = [o for o in os.environ.get("ALLOWED_ORIGINS", "").split(",") if o]
# The host names this app answers to. A page under any other name is refused: that is how
# a DNS-rebinding page (evil.example, resolved to 127.0.0.1) would reach an app on loopback.
TRUSTED_HOSTS = [h for h in os.environ.get("TRUSTED_HOSTS", "").split(",") if h] or ["127.0.0.1", "localhost"]
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
# still count for up to ONLINE_TTL seconds (three missed rewrites), then drop out.
HEARTBEAT_SECONDS = float(os.environ.get("HEARTBEAT_SECONDS", "5"))
ONLINE_TTL = max(1, round(3 * (HEARTBEAT_SECONDS + ONLINE_PUSH_SECONDS)))
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
# The largest packet the page sends is a message: 500 characters of text. JSON-escaped by a
# client that writes \uXXXX for every character, that is about 6 KB with the room and the
# framing. Anything larger is not from a page of ours; python-engineio's default is 1 MB.
MAX_EVENT_BYTES = 16 * 1024
# A person types a few events a second; a script can send thousands. Bursts of twice this pass.
EVENTS_PER_SECOND = int(os.environ.get("EVENTS_PER_SECOND", "20"))


def secret(name):
    """A secret from the environment, or a throwaway one for a demo; never in production."""
    if os.environ.get(name):
        return os.environ[name]
    if PRODUCTION:
        raise SystemExit(f"{name} must be set when PRODUCTION=1")
    return os.urandom(16).hex()


def accepted_origin(origin, environ):
    """The page's own origin (scheme://Host, python-engineio's default rule) and ALLOWED_ORIGINS.

    A list passed as cors_allowed_origins would replace the default rule, not extend it: the
    app's own page could no longer connect.
    """
    scheme = environ.get("HTTP_X_FORWARDED_PROTO", environ["wsgi.url_scheme"]).split(",")[0].strip()
    return origin == f"{scheme}://{environ.get('HTTP_HOST')}" or origin in ALLOWED_ORIGINS


# The chapter's page, so the two can be compared side by side.
app = Flask(
    __name__,
    template_folder=Path(__file__).resolve().parents[1] / "chapters" / "03_redis_scaling" / "templates",
)
app.config["SECRET_KEY"] = secret("SECRET_KEY")
if PRODUCTION and not NOTIFY_TOKEN:
    raise SystemExit("NOTIFY_TOKEN must be set when PRODUCTION=1: anyone could POST /notify")
# message_queue: every emit is delivered to this instance's clients and published on Redis;
# every instance subscribed to `channel` delivers it to its own. This one argument is the
# whole chapter. If Redis goes away, python-socketio drops what it cannot publish (it logs
# "Cannot publish to redis... giving up"; python-socketio#1411) and resubscribes on its own
# after 1, 2, 4... up to 60 s (RedisManager._redis_listen_with_retries; python-socketio#617).
socketio = SocketIO(
    app,
    async_mode=ASYNC_MODE,
    message_queue=REDIS_URL,
    channel=CHANNEL,
    cors_allowed_origins=accepted_origin,
    max_http_buffer_size=MAX_EVENT_BYTES,
)


@app.get("/")
def index():
    return render_template("index.html", instance=INSTANCE_NAME)


@app.get("/vendor/socket.io.min.js")
def socketio_client_js():
    return send_from_directory(JS_CLIENT_DIR, "socket.io.min.js")


@app.get("/healthz")
def healthz():
    try:
        _, online = count_online()
    except redis.RedisError:
        # This instance still serves its own clients; the shared count is unknown.
        return jsonify(status="ok", instance=INSTANCE_NAME, async_mode=ASYNC_MODE, redis="down")
    return jsonify(
        status="ok",
        instance=INSTANCE_NAME,
        async_mode=ASYNC_MODE,
        redis="up",
        channel=CHANNEL,
        online=sum(online.values()),
        online_by_instance=online,
    )


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


@socketio.on_error_default
def on_handler_error(error):
    """Whatever a handler raises: the sender gets a reason and a failed ack; the log, one line.

    A client that is not this page can send anything. `42["join",{...},{...}]` (two
    arguments) makes the call itself raise TypeError before the handler runs. A
    traceback for each such event would let one client fill the disk.
    """
    event, args = request.event["message"], request.event["args"]
    app.logger.warning("refused %r from %s: %s: %s", event, request.sid, type(error).__name__, error)
    if event == "connect" and not sent_by_the_client():
        return False  # a real connect whose handler failed: refused, never half let in
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


def chat_rooms():
    return [room for room in rooms() if room.startswith(ROOM_PREFIX)]


def rate_limited(handler):
    """Refuse an event once its connection has spent its budget: a token bucket per connection.

    The bucket lives in the connection's session: every event of a connection is handled
    by the one process that holds it (chapter 04 keeps it that way behind a balancer).
    """

    @functools.wraps(handler)
    def limited(*args):
        now = time.monotonic()
        refilled = (now - session.get("counted_at", now)) * EVENTS_PER_SECOND
        tokens = min(2 * EVENTS_PER_SECOND, session.get("tokens", 2 * EVENTS_PER_SECOND) + refilled)
        session["counted_at"] = now
        if tokens < 1:  # a refused event costs nothing: the budget refills at the same pace
            session["tokens"] = tokens
            reason = f"too many events: at most {EVENTS_PER_SECOND} a second"
            return refuse(request.event["message"], reason)
        session["tokens"] = tokens - 1
        return handler(*args)

    return limited


# Before any handler: the requests and packets no page of ours sends. python-engineio
# logs a full traceback for each packet it cannot decode and keeps the connection open,
# so one client could fill the disk; here a bad packet costs one log line and the connection.
def close_malformed(eio_sid, error):
    """Log once and close the connection that sent a packet no Socket.IO client sends.

    It leaves its rooms now, not a ping timeout later. A polling session is ended at the
    Socket.IO level only: closing its Engine.IO session would wait for a GET that a raw
    client may never send; that session times out on its own, with no rooms and no user.
    """
    eio = socketio.server.eio
    try:
        eio_session = eio.get_session(eio_sid)
    except KeyError:
        return  # already closed
    if eio_session.get("malformed"):
        return  # said once; the rest are dropped unread
    eio_session["malformed"] = True
    app.logger.warning("closed %s: malformed packet (%s: %.80s)", eio_sid, type(error).__name__, error)
    if eio.transport(eio_sid) == "websocket":
        eio.disconnect(eio_sid)
    elif sid := socketio.server.manager.sid_from_eio_sid(eio_sid, "/"):
        socketio.server.disconnect(sid)


def check_packet(data):
    """Raise for a text packet that would fail inside python-socketio, before it is handled.

    Most failures (bad JSON, a packet type that does not exist) raise while decoding. An
    event named by a list (`42[["join"],{}]`) would raise later, in the thread that runs
    the event, where nothing of ours could catch it.
    """
    packet = socketio.server.packet_class(encoded_packet=data)
    named = isinstance(packet.data, list) and packet.data and isinstance(packet.data[0], str)
    if packet.packet_type in (EVENT, BINARY_EVENT) and not named:
        raise ValueError("an event's name must be a string")


handle_socketio_packet = socketio.server.eio.handlers["message"]


@socketio.server.eio.on("message")
def on_engineio_message(eio_sid, data):
    """Every Socket.IO packet, over either transport, before python-socketio handles it."""
    try:
        if isinstance(data, str):  # bytes are the attachments of a binary event
            check_packet(data)
        handle_socketio_packet(eio_sid, data)
    except Exception as error:
        close_malformed(eio_sid, error)


CLIENT_PACKETS = (CLOSE, PONG, MESSAGE)  # what a client sends over long-polling


def guard_the_edge(wsgi_app):
    """Every HTTP request, the page's and Socket.IO's, passes here before the app sees it.

    Flask's own TRUSTED_HOSTS setting would not cover /socket.io/: Flask-SocketIO answers
    those requests before Flask does.
    """

    def edge(environ, start_response):
        def bad_request(reason):
            start_response("400 BAD REQUEST", [("Content-Type", "text/plain")])
            return [reason.encode()]

        # /healthz answers any Host: balancers and orchestrators check by address, HAProxy's
        # httpchk with no Host at all, and it tells nothing a user of the page cannot see.
        healthz = environ.get("PATH_INFO") == "/healthz"
        if not healthz and not host_is_trusted(environ.get("HTTP_HOST", ""), TRUSTED_HOSTS):
            return bad_request("untrusted host: add it to TRUSTED_HOSTS")
        if not environ.get("PATH_INFO", "").startswith("/socket.io"):
            return wsgi_app(environ, start_response)
        eio_sid = parse_qs(environ.get("QUERY_STRING", "")).get("sid", [None])[0]
        if environ["REQUEST_METHOD"] == "POST" and eio_sid:
            # A long-polling POST: its Engine.IO packets are checked here, because
            # python-engineio logs a traceback for each bad one and answers 200.
            length = int(environ.get("CONTENT_LENGTH") or 0)
            try:
                if length > MAX_EVENT_BYTES:
                    raise ValueError(f"{length} bytes is more than {MAX_EVENT_BYTES}")
                body = environ["wsgi.input"].read(length)
                # A client sends only these over polling. Any other type makes python-engineio
                # close the session, which waits for a GET that a raw client never sends.
                packets = Payload(encoded_payload=body.decode()).packets
                if any(packet.packet_type not in CLIENT_PACKETS for packet in packets):
                    raise ValueError("a packet type no client sends over polling")
            except Exception as error:
                close_malformed(eio_sid, error)
                return bad_request("malformed or oversized packet: connection closed")
            environ["wsgi.input"] = io.BytesIO(body)
        environ["edge.request"] = this_request = object()  # Flask-SocketIO copies environ
        try:
            return wsgi_app(environ, start_response)
        except (KeyError, ValueError, RecursionError) as error:
            # What python-engineio lets escape: a WebSocket frame it cannot decode (the socket is
            # gone, but its session would live on until the ping timeout: a ghost), or a request on
            # a session it has just closed. The session is named in the query, or this request opened it.
            sessions = socketio.server.environ.items()
            opened = (sid for sid, env in sessions if env.get("edge.request") is this_request)
            eio_sid = eio_sid or next(opened, None)
            if eio_sid:
                close_malformed(eio_sid, error)  # silent if that session is closed already
            if environ.get("HTTP_UPGRADE", "").lower() != "websocket":
                return bad_request("malformed or oversized packet: connection closed")
            # The WebSocket is gone: this is how every WSGI server is told, quietly.
            raise ConnectionResetError(errno.ECONNRESET, "malformed packet") from None

    edge.__wrapped__ = wsgi_app  # the app it guards, for inspect.unwrap
    return edge


app.wsgi_app = guard_the_edge(app.wsgi_app)


# Users online across all instances. Each instance owns one Redis set of the session ids
# connected to it, "<channel>:online:<instance>", and is the only one to write it; the
# total is the sum of the sets. A set lives ONLINE_TTL seconds unless its instance
# rewrites it (every HEARTBEAT_SECONDS), so a crashed instance's users drop out of the
# count on their own; and after Redis loses its data (a restart), the next rewrite puts
# every live user back.
store = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2, decode_responses=True)
ONLINE_PREFIX = f"{CHANNEL}:online"
INSTANCES_KEY = f"{ONLINE_PREFIX}:instances"  # the names of every instance that ever counted
MY_KEY = f"{ONLINE_PREFIX}:{INSTANCE_NAME}"
# The truth about this instance's own clients; Redis holds everyone's copy of it.
local_sids: set[str] = set()
# One writer at a time (a greenlet lock, thanks to the patch): writes reach Redis in the
# order they were decided, so an older snapshot never overwrites a newer one.
write_lock = threading.Lock()
# Set on every connect and disconnect here: the count loop below then pushes even if the
# total did not move (a newcomer needs it).
users_changed = threading.Event()


def save_my_users(sid=None, online=True):
    """Record one connect or disconnect in Redis; with no sid, rewrite the whole set."""
    with write_lock:
        pipe = store.pipeline()  # MULTI ... EXEC: applied at once, in this order
        if sid is None:
            pipe.delete(MY_KEY)
            if local_sids:
                pipe.sadd(MY_KEY, *local_sids)
        elif online:
            pipe.sadd(MY_KEY, sid)
        else:
            pipe.srem(MY_KEY, sid)
        pipe.expire(MY_KEY, ONLINE_TTL)
        pipe.sadd(INSTANCES_KEY, INSTANCE_NAME)
        pipe.execute()


# --8<-- [start:counter]
def count_online():
    """Return (version, users online per instance).

    The version is this process's clock, and the only instance it knows is itself.
    """
    # expected: every instance's users, summed from the sets each one writes to Redis;
    # actual: this process's own connections, held in its memory (local_sids), the only
    # ones it can see; each instance reports its own share as the total
    return time.time_ns() // 1000, ({INSTANCE_NAME: len(local_sids)} if local_sids else {})


# --8<-- [end:counter]


def track_connection(online):
    """Connect and disconnect: update this instance's set, and wake the count loop."""
    (local_sids.add if online else local_sids.discard)(request.sid)
    try:
        save_my_users(request.sid, online)
    except redis.RedisError as error:
        # The client is served all the same; the next rewrite fixes the count once Redis is back.
        app.logger.warning("online count: Redis unreachable (%s)", error)
    users_changed.set()


def online_count_loop():
    """Every second, read the count from Redis and tell our own clients if it moved.

    Every instance does the same for its own clients, so each client hears of a change
    within about a second, wherever it happened (another instance's connects, a crashed
    instance's set expiring, Redis restarting empty), and no count crosses the queue:
    pushed through it, each change would reach every client once per instance.
    Our set is rewritten every HEARTBEAT_SECONDS.
    """
    last_total, last_rewrite, redis_down = None, float("-inf"), False
    while True:
        changed = users_changed.is_set()
        users_changed.clear()
        try:
            if time.monotonic() - last_rewrite >= HEARTBEAT_SECONDS:
                save_my_users()
                last_rewrite = time.monotonic()
            version, per_instance = count_online()
            total = sum(per_instance.values())
            if changed or total != last_total:
                payload = {"count": total, "instances": per_instance, "version": version}
                socketio.emit("online", payload, ignore_queue=True)
            last_total = total
            if redis_down:
                app.logger.warning("online count: Redis is back; users rewritten")
                redis_down = False
        except redis.RedisError as error:
            if not redis_down:  # one line per outage, not one per turn of the loop
                app.logger.warning("online count: Redis unreachable (%s); retrying", error)
                redis_down = True
            last_total, last_rewrite = None, float("-inf")
        socketio.sleep(ONLINE_PUSH_SECONDS)


@socketio.on("connect")
def on_connect(auth=None):
    if sent_by_the_client():
        return refuse("connect", "a client cannot send 'connect'; it is connected already")
    rejoin(auth)  # refuses the connection if its `auth` is bad: then it is never counted
    track_connection(online=True)


def rejoin(auth):
    """A page that reconnects names itself and its rooms in `auth`; it is back in them at once.

    The Socket.IO client sends what it buffered while offline right after the connect: a
    `join` from the page would arrive after those messages, and they would be refused.
    """
    if not auth:
        return
    try:
        name = require(auth, name=MAX_NAME)["name"]
        names = auth.get("rooms")
        if not isinstance(names, list) or len(names) > MAX_ROOMS:
            raise BadPayload(f"'rooms' must be a list of at most {MAX_ROOMS} rooms")
        back_in = [require({"room": room}, room=MAX_ROOM)["room"] for room in names]
    except BadPayload as bad:
        raise ConnectionRefusedError(f"auth: {bad}") from None
    session["name"] = name
    for room in back_in:
        join_room(chat_room(room))
        text = f"{name} is back in {room}"
        emit("system", {"room": room, "text": text}, to=chat_room(room), include_self=False)


@socketio.on("join")
@rate_limited
def on_join(data=None):
    try:
        fields = require(data, room=MAX_ROOM, name=MAX_NAME)
    except BadPayload as bad:
        return refuse("join", str(bad))
    room, name = fields["room"], fields["name"]
    if chat_room(room) not in rooms() and len(chat_rooms()) >= MAX_ROOMS:
        return refuse("join", f"you are in {MAX_ROOMS} rooms already: leave one first")
    session["name"] = name
    # Rooms are kept by the instance that holds the connection; the queue carries each
    # room emit to every instance, and each delivers it to its own members of the room.
    join_room(chat_room(room))
    emit("system", {"room": room, "text": f"{name} joined {room}"}, to=chat_room(room))
    return {"ok": True, "room": room, "instance": INSTANCE_NAME}


@socketio.on("leave")
@rate_limited
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


@socketio.on("message")
@rate_limited
def on_message(data=None):
    try:
        fields = require(data, room=MAX_ROOM, text=MAX_TEXT)
    except BadPayload as bad:
        return refuse("message", str(bad))
    room = fields["room"]
    if chat_room(room) not in rooms():
        return refuse("message", f"join room '{room}' before writing to it")
    emit("message", {"room": room, "name": session["name"], "text": fields["text"]}, to=chat_room(room))
    return {"ok": True}


@socketio.on("disconnect")
def on_disconnect(reason=None):
    if sent_by_the_client():
        return refuse("disconnect", "a client cannot send 'disconnect'; close the connection instead")
    # chat_rooms(), not rooms(): that also lists the connection's own room, named after its sid.
    for room in chat_rooms():
        name = room.removeprefix(ROOM_PREFIX)
        text = f"{session.get('name', 'someone')} left {name}"
        emit("system", {"room": name, "text": text}, to=room, include_self=False)
    track_connection(online=False)


@socketio.on("broadcast")
@rate_limited
def on_broadcast(data=None):
    try:
        text = require(data, text=MAX_TEXT)["text"]
    except BadPayload as bad:
        return refuse("broadcast", str(bad))
    # No `to`: every client of every instance. The ack means "published", not "delivered":
    # if Redis is down, python-socketio logs the failure and the other instances never hear of it.
    socketio.emit("broadcast", {"text": text})
    return {"ok": True}


# Not rate limited: the cheapest event there is, and what the tests and the bench time.
@socketio.on("ping")
def on_ping(data=None):
    return {"ok": True}


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
    except BadPayload as bad:
        return jsonify(ok=False, reason=f'body must be JSON like {{"text": "..."}}: {bad}'), 400
    socketio.emit("notice", {"text": text, "source": f"POST /notify on {INSTANCE_NAME}"})
    return jsonify(ok=True)


if __name__ == "__main__":
    # Its first rewrite also forgets what a previous run of this instance left in Redis.
    socketio.start_background_task(online_count_loop)
    # log_output=False: no access-log line per long-polling request; errors still show.
    socketio.run(app, host=HOST, port=PORT, log_output=False)
