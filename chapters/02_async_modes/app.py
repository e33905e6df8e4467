"""Chapter 02: one chat app, three async modes (threading, gevent, eventlet), and work that must not block.

What this shows
    The chapter 01 chat plus four events the load bench and the tests drive:
    `ping` (answers at once), `broadcast` (to every client), `slow_io` (waits
    on slow I/O) and `cpu_work` (burns the CPU). The same code is served
    under each async mode by run_threading.py, run_gevent.py and
    run_eventlet.py, and by gunicorn's gevent worker through wsgi.py. In every
    one of them a client that asks for slow I/O or CPU work does not hold up
    anybody else's `ping`.

How to run it
    One terminal, one of:
        python chapters/02_async_modes/app.py            (threading, the same as run_threading.py)
        python chapters/02_async_modes/run_gevent.py
        python chapters/02_async_modes/run_eventlet.py
        cd chapters/02_async_modes && gunicorn -c gunicorn.conf.py wsgi:app    (production)
    Then open http://127.0.0.1:5000 in two browser windows.
    Settings come from the environment: HOST, PORT, INSTANCE_NAME, SECRET_KEY,
    ALLOWED_ORIGINS, TRUSTED_HOSTS, EVENTS_PER_SECOND, PRODUCTION (all as in
    chapter 01) and MAX_CLIENTS (the most connections one process accepts).

What breaks without it
    antipatterns/02_blocking_sleep.py sleeps with the real time.sleep under
    gevent without monkey patching: for the length of the sleep, every
    client of the process waits. antipatterns/02_cpu_bound_handler.py burns
    the CPU inside the handler: the same stall. antipatterns/02_late_monkey_patch.py
    patches after its imports: what it imported by name stays blocking.

TL;DR
    Pick the mode explicitly. Under gevent or eventlet, monkey patch on the
    first line of the program, before any other import; move CPU work to
    another process (here a process pool, in chapter 05 a Celery worker), and
    run gunicorn with ONE gevent worker.
"""

import errno
import functools
import io
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs

from engineio.packet import CLOSE, MESSAGE, PONG
from engineio.payload import Payload
from flask import Flask, jsonify, render_template, request, send_from_directory, session
from flask_socketio import ConnectionRefusedError, SocketIO, emit, join_room, leave_room, rooms
from socketio.packet import BINARY_EVENT, EVENT
from werkzeug.sansio.utils import host_is_trusted

# --8<-- [start:config]
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
# The most connections one process serves at once. eventlet's WSGI server caps them at
# 1024 by default (eventlet.wsgi.DEFAULT_MAX_SIMULTANEOUS_REQUESTS) and gunicorn's gevent
# worker at 1000 (--worker-connections): each websocket holds one slot for as long as it
# lives, so the default would turn away client 1025 while the CPU idles. 10,000 is above
# what one process on one core serves well (the load bench measures it), so the cap is a
# safety net against runaway connections, not the limit you hit first.
MAX_CLIENTS = int(os.environ.get("MAX_CLIENTS", "10000"))
# The Socket.IO browser client, installed from npm (`npm ci` at the repository root).
JS_CLIENT_DIR = Path(
    os.environ.get("JS_CLIENT_DIR")
    or Path(__file__).resolve().parents[2] / "node_modules" / "socket.io-client" / "dist"
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
# Processes for CPU-bound work (see cpu_pool()): all cores but one, which stays with the event loop.
CPU_WORKERS = int(os.environ.get("CPU_WORKERS", max(1, (os.cpu_count() or 2) - 1)))
CPU_WORKER_NICENESS = 10
# slow_io and cpu_work accept 0 < seconds <= MAX_SECONDS: a client cannot book the server for an hour.
MAX_SECONDS = 5
# --8<-- [end:config]


class BadPayload(ValueError):
    """The reason a payload was refused; it is sent back to the sender as is."""


def require(data, **limits):
    """Return the payload's string fields, stripped, or raise BadPayload with the reason.

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


def require_seconds(data):
    """Return data["seconds"], a number with 0 < seconds <= MAX_SECONDS, or raise BadPayload."""
    if not isinstance(data, dict):
        raise BadPayload("payload must be an object")
    if "seconds" not in data:
        raise BadPayload("missing key 'seconds'")
    seconds = data["seconds"]
    # bool is an int in Python; `true` is not a duration.
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise BadPayload("'seconds' must be a number")
    if not 0 < seconds <= MAX_SECONDS:
        raise BadPayload(f"'seconds' must be more than 0 and at most {MAX_SECONDS}")
    return seconds


def refuse(event, reason):
    """Tell the sender, and only the sender, why its event was refused."""
    emit("error", {"event": event, "reason": reason})
    return {"ok": False, "reason": reason}


# --8<-- [start:work]
def wait_on_slow_io(seconds):
    """Stand-in for a slow database query or HTTP call: a plain, blocking time.sleep.

    Under threading it blocks only this handler's own thread. Under gevent and
    eventlet it is cooperative only because run_gevent.py / run_eventlet.py
    monkey patched `time` before this module was imported: the patched sleep
    parks this greenlet and lets the event loop serve everybody else.
    """
    time.sleep(seconds)


def burn_cpu(seconds):
    """CPU-heavy work: a pure-Python loop that never waits on anything, for `seconds`."""
    deadline = time.perf_counter() + seconds
    spins = 0
    while time.perf_counter() < deadline:
        spins += 1
    return spins


# --8<-- [end:work]


# --8<-- [start:offload]
def cpu_pool():
    """Worker processes for CPU-bound work: the one way that keeps the event loop free in every mode.

    A greenlet only yields when it waits, and a pure-Python loop never waits:
    run inline it freezes the event loop and every client with it
    (antipatterns/02_cpu_bound_handler.py). A native thread (gevent's
    threadpool, eventlet.tpool, or threading mode's own handler thread) is
    not enough either: it shares the GIL, and every time the loop wants the
    GIL back it waits up to the 5 ms switch interval (sys.getswitchinterval()),
    several times per round trip; on this machine the loop fell 20 to 50 ms
    behind at a time while the work ran. A process has its own interpreter and
    GIL, and the calling greenlet waits for the result cooperatively.

    "spawn", not the default "fork": a fork would copy the running event loop,
    its locks and its sockets into the child; spawn starts a clean interpreter.
    Chapter 05 moves this work out of the web process entirely, to a Celery worker.
    """
    context = multiprocessing.get_context("spawn")
    # The workers run at a lower priority (nice +10): when the cores are short, the kernel
    # gives the event loop, which every client waits on, the CPU first.
    return ProcessPoolExecutor(
        max_workers=CPU_WORKERS, mp_context=context, initializer=os.nice, initargs=(CPU_WORKER_NICENESS,)
    )


CPU_POOL = cpu_pool()


def start_cpu_workers():
    """Start the worker processes now, before any client connects.

    The pool would start them on first use, but a spawned worker imports this
    app anew: a second or more of CPU that would land on the event loop's core
    in the middle of serving (it stalled pings by up to 240 ms here).
    """
    list(CPU_POOL.map(int, range(CPU_WORKERS)))


# --8<-- [end:offload]


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


def create_app(async_mode):
    """The chat app under `async_mode`: returns (app, socketio)."""
    app = Flask(__name__)
    app.config["SECRET_KEY"] = secret("SECRET_KEY")
    # --8<-- [start:socketio]
    socketio = SocketIO(
        app,
        async_mode=async_mode,
        cors_allowed_origins=accepted_origin,
        max_http_buffer_size=MAX_EVENT_BYTES,
    )
    # --8<-- [end:socketio]

    @app.get("/")
    def index():
        return render_template("index.html", instance=f"{INSTANCE_NAME} ({async_mode})")

    @app.get("/vendor/socket.io.min.js")
    def socketio_client_js():
        return send_from_directory(JS_CLIENT_DIR, "socket.io.min.js")

    @app.get("/healthz")
    def healthz():
        return jsonify(
            status="ok",
            instance=INSTANCE_NAME,
            async_mode=async_mode,
            # Werkzeug, gevent's pywsgi, gunicorn, or eventlet.wsgi (which sets no SERVER_SOFTWARE).
            server=request.environ.get("SERVER_SOFTWARE")
            or ("eventlet.wsgi" if "eventlet.input" in request.environ else "unknown"),
            max_clients=MAX_CLIENTS,
        )

    # The chapter 01 chat protocol, with its error path and its rooms.

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

    @socketio.on("connect")
    def on_connect(auth=None):
        if sent_by_the_client():
            return refuse("connect", "a client cannot send 'connect'; it is connected already")
        rejoin(auth)

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
        # to=chat_room(room): only the room's members receive it (the sender is one of them).
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

    # --8<-- [start:handlers]
    # Not rate limited: the cheapest event there is, and what the tests and the bench time.
    @socketio.on("ping")
    def on_ping(data=None):
        # The round trip the tests and the load bench time: no work at all.
        return {"ok": True}

    @socketio.on("broadcast")
    @rate_limited
    def on_broadcast(data=None):
        try:
            text = require(data, text=MAX_TEXT)["text"]
        except BadPayload as bad:
            return refuse("broadcast", str(bad))
        # One emit with no `to`: python-socketio sends it to every client, the sender too.
        socketio.emit("broadcast", {"text": text})
        return {"ok": True}

    @socketio.on("slow_io")
    @rate_limited
    def on_slow_io(data=None):
        try:
            seconds = require_seconds(data)
        except BadPayload as bad:
            return refuse("slow_io", str(bad))
        wait_on_slow_io(seconds)
        return {"ok": True}

    @socketio.on("cpu_work")
    @rate_limited
    def on_cpu_work(data=None):
        try:
            seconds = require_seconds(data)
        except BadPayload as bad:
            return refuse("cpu_work", str(bad))
        # Off the event loop, in a worker process (see cpu_pool()); chapter 05 uses Celery instead.
        CPU_POOL.submit(burn_cpu, seconds).result()
        return {"ok": True}

    # --8<-- [end:handlers]
    return app, socketio


# --8<-- [start:serve]
def serve(app, socketio):
    """socketio.run with what each mode's server needs; its kwargs go to that server."""
    options = {}
    if socketio.async_mode == "eventlet":
        # Passed through to eventlet.wsgi.server: the cap on simultaneous connections.
        options["max_size"] = MAX_CLIENTS
    if socketio.async_mode == "threading":
        # Werkzeug's development server refuses to start outside a terminal without it:
        # threading mode is for development and small apps. Production: gunicorn, below.
        options["allow_unsafe_werkzeug"] = True
    start_cpu_workers()
    socketio.run(app, host=HOST, port=PORT, **options)


# --8<-- [end:serve]


if __name__ == "__main__":
    serve(*create_app("threading"))
