"""Chapter 02: one chat app, three async modes (threading, gevent, eventlet), and work that must not block.

What this shows
    One app served under each async mode: create_app(async_mode) builds it,
    and the entry point names the mode. run_threading.py, run_gevent.py and
    run_eventlet.py (which monkey patch first, then import this file) serve
    it with socketio.run; wsgi.py hands it to gunicorn's gevent worker. Four
    events show what a handler may do without holding up anybody else:
    `ping` (answers at once), `broadcast` (to every client), `slow_io` (waits
    on slow I/O) and `cpu_work` (burns the CPU, in a worker process). In
    every mode, a client that asks for slow I/O or CPU work does not delay
    anybody else's `ping`. Below them, the chapter 01 chat, unchanged.

How to run it
    One terminal, one of:
        python chapters/02_async_modes/app.py            (threading, the same as run_threading.py)
        python chapters/02_async_modes/run_gevent.py
        python chapters/02_async_modes/run_eventlet.py
        cd chapters/02_async_modes && gunicorn -c gunicorn.conf.py wsgi:app    (production)
    Then open http://127.0.0.1:5000 in two browser windows.
    Settings come from the environment: HOST, PORT, INSTANCE_NAME, SECRET_KEY,
    ALLOWED_ORIGINS, TRUSTED_HOSTS, EVENTS_PER_SECOND, PRODUCTION (all as in
    chapter 01), MAX_CLIENTS (the most connections one process accepts) and
    CPU_WORKERS (the processes that run CPU work).

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

import gc
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from flask import Blueprint, Flask, jsonify, render_template, request, send_from_directory, session
from flask_socketio import SocketIO, emit, join_room, leave_room, rooms
from flask_socketio_guard import Refused, SocketIOGuard, require, secret

# --8<-- [start:config]
HOST = os.environ.get("HOST", "127.0.0.1")
PORT = int(os.environ.get("PORT", "5000"))
INSTANCE_NAME = os.environ.get("INSTANCE_NAME", "chat-1")
# The most connections one process serves at once. eventlet's server caps them at 1024 by
# default and gunicorn's gevent worker at 1000, and each websocket holds a slot for its whole
# life. 10,000 is a safety net above what one process serves well (the load bench measures it).
MAX_CLIENTS = int(os.environ.get("MAX_CLIENTS", "10000"))
# Processes for CPU-bound work (see cpu_pool()): all cores but one, which stays with the event loop.
CPU_WORKERS = int(os.environ.get("CPU_WORKERS", max(1, (os.cpu_count() or 2) - 1)))
CPU_WORKER_NICENESS = 10
# slow_io and cpu_work accept 0 < seconds <= MAX_SECONDS: a client cannot book the server for an hour.
MAX_SECONDS = 5
# The Socket.IO browser client, installed from npm (`npm ci` at the repository root).
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
# Made without an app, so that the handlers below can register on it; create_app binds it
# to the app, in the mode the entry point names (Flask-SocketIO's application factory).
socketio = SocketIO()


def create_app(async_mode):
    """The app under `async_mode`, which each entry point names: returns (app, socketio)."""
    app = Flask(__name__)
    app.config["SECRET_KEY"] = secret("SECRET_KEY", production=os.environ.get("PRODUCTION") == "1")
    # Explicit, always: left to auto-detection, Flask-SocketIO picks eventlet whenever it is installed.
    socketio.init_app(app, async_mode=async_mode)
    app.register_blueprint(pages)
    # --8<-- [end:socketio]
    # What every chapter needs and none teaches: a client that is not this page gets a reason or
    # loses its own connection, never anyone else's (docs/hardening.md, flask-socketio-guard/).
    app.config.update(
        SOCKETIO_GUARD_EVENTS_PER_SECOND=int(os.environ.get("EVENTS_PER_SECOND", "20")),
        SOCKETIO_GUARD_MAX_ROOMS=MAX_ROOMS,
        SOCKETIO_GUARD_TRUSTED_HOSTS=os.environ.get("TRUSTED_HOSTS", "127.0.0.1,localhost").split(","),
        SOCKETIO_GUARD_ALLOWED_ORIGINS=[o for o in os.environ.get("ALLOWED_ORIGINS", "").split(",") if o],
    )
    SocketIOGuard(app, socketio)
    return app, socketio


pages = Blueprint("pages", __name__)


# The file this process was started with (not sys.argv: runpy changes it), named on the page.
STARTED_WITH = next((arg for arg in sys.orig_argv[1:] if arg.endswith(".py")), sys.argv[0])
SERVED_BY = "/".join(Path(STARTED_WITH).resolve().parts[-2:])


@pages.get("/")
def index():
    instance = f"{INSTANCE_NAME} ({socketio.async_mode})"
    return render_template("index.html", instance=instance, served_by=SERVED_BY)


@pages.get("/vendor/socket.io.min.js")
def socketio_client_js():
    return send_from_directory(JS_CLIENT_DIR, "socket.io.min.js")


@pages.get("/healthz")
def healthz():
    # Which server runs the mode; eventlet.wsgi is the one that sets no SERVER_SOFTWARE.
    environ = request.environ
    server = environ.get("SERVER_SOFTWARE") or ("eventlet.wsgi" if "eventlet.input" in environ else "unknown")
    health = dict(status="ok", instance=INSTANCE_NAME, async_mode=socketio.async_mode, server=server)
    # The garbage collector's thresholds: gunicorn.conf.py raises them for the production command.
    return jsonify(**health, max_clients=MAX_CLIENTS, gc_thresholds=gc.get_threshold())


# --8<-- [start:serve]
def serve(app, socketio):
    """socketio.run with what each mode's server needs; its kwargs go to that server."""
    options = {}
    if socketio.async_mode == "eventlet":
        # Passed through to eventlet.wsgi.server: the cap on simultaneous connections.
        options["max_size"] = MAX_CLIENTS
    if socketio.async_mode == "threading":
        # Werkzeug's development server refuses to start outside a terminal without it:
        # threading mode is for development and small apps. Production: gunicorn (wsgi.py).
        options["allow_unsafe_werkzeug"] = True
    start_cpu_workers()
    print(f"{INSTANCE_NAME}: {socketio.async_mode} starting on http://{HOST}:{PORT}/", flush=True)
    try:
        socketio.run(app, host=HOST, port=PORT, **options)
    finally:  # the workers would keep the process alive after the server fails (port taken)
        CPU_POOL.shutdown()


# --8<-- [end:serve]


# --8<-- [start:work]
def wait_on_slow_io(seconds):
    """Stand-in for a slow database query or HTTP call: a plain, blocking time.sleep.

    Under threading it blocks only this handler's own thread. Under gevent and eventlet it is
    cooperative only because run_gevent.py / run_eventlet.py monkey patched `time` before this
    module was imported: the patched sleep parks this greenlet and the event loop serves the rest.
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

    A greenlet only yields when it waits, and a pure-Python loop never waits: run inline, it
    freezes the event loop and every client with it (antipatterns/02_cpu_bound_handler.py). A
    native thread (gevent's threadpool, eventlet.tpool, threading mode's handler thread) is not
    enough either: it shares the GIL, and each time the loop wants the GIL back it may wait out
    the switch interval (sys.getswitchinterval()). A process has its own interpreter and GIL,
    and the calling greenlet waits for the result cooperatively.

    "spawn", not the default "fork": a fork would copy the running event loop, its locks and
    its sockets into the child. Chapter 05 moves this work to a Celery worker instead.
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

    The pool would start them on first use, but a spawned worker imports this app anew: a
    second or more of CPU that would land on the event loop's core in the middle of serving.
    """
    list(CPU_POOL.map(int, range(CPU_WORKERS)))


# --8<-- [end:offload]


# --8<-- [start:handlers]
@socketio.on("ping")
def on_ping(data=None):
    # The round trip the tests and the load bench time: no work at all.
    return {"ok": True}


@socketio.on("broadcast")
def on_broadcast(data=None):
    text = require(data, text=MAX_TEXT)["text"]
    # One emit with no `to`: python-socketio sends it to every client, the sender too.
    socketio.emit("broadcast", {"text": text})
    return {"ok": True}


@socketio.on("slow_io")
def on_slow_io(data=None):
    wait_on_slow_io(require_seconds(data))
    return {"ok": True}


@socketio.on("cpu_work")
def on_cpu_work(data=None):
    seconds = require_seconds(data)
    # Off the event loop, in a worker process (see cpu_pool()); chapter 05 uses Celery instead.
    CPU_POOL.submit(burn_cpu, seconds).result()
    return {"ok": True}


def require_seconds(data):
    """Return data["seconds"], a number with 0 < seconds <= MAX_SECONDS, or raise Refused."""
    if not isinstance(data, dict):
        raise Refused("payload must be an object")
    if "seconds" not in data:
        raise Refused("missing key 'seconds'")
    seconds = data["seconds"]
    # bool is an int in Python; `true` is not a duration.
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise Refused("'seconds' must be a number")
    if not 0 < seconds <= MAX_SECONDS:
        raise Refused(f"'seconds' must be more than 0 and at most {MAX_SECONDS}")
    return seconds


# --8<-- [end:handlers]


# The chapter 01 chat, as it is there. Rooms a client names live under this prefix, apart from
# the rooms the server keeps for itself: each connection's own room, named after its sid.
ROOM_PREFIX = "room:"


def chat_room(name):
    return ROOM_PREFIX + name


def chat_rooms():
    return [room for room in rooms() if room.startswith(ROOM_PREFIX)]


@socketio.on("join")
def on_join(data=None):
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
    """A page that reconnects names itself and its rooms in `auth`; it is back in them at once."""
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
    for room in chat_rooms():
        name = room.removeprefix(ROOM_PREFIX)
        text = f"{session.get('name', 'someone')} left {name}"
        emit("system", {"room": name, "text": text}, to=room, include_self=False)


if __name__ == "__main__":
    serve(*create_app("threading"))
