"""The chapter 02 gevent app with one knob turned: what `python -m bench knobs` serves, row by row.

Not a chapter: a learner runs chapters/02_async_modes/run_gevent.py. This is that script with
the knobs the bench turns, each set by an environment variable and each off by default, so
with none set it serves exactly what run_gevent.py serves:

    KNOB_WEBSOCKET=gevent-websocket   gevent-websocket's handler instead of simple-websocket
    KNOB_JSON=stdlib|orjson           SocketIO(json=...): the standard library's json, or orjson,
                                      instead of Flask's json behind an app context per call
    KNOB_SERIALIZER=msgpack           SocketIO(serializer="msgpack"): binary packets, not JSON text
    KNOB_PING_INTERVAL=5              SocketIO(ping_interval=5): a heartbeat every 5 s, not 25 s
    KNOB_GUARD=off                    the chapter's SocketIOGuard(app, socketio) installs nothing:
                                      the app unguarded, for the guard's cost (bench/guard_cost.py)
    KNOB_COMPRESSION=on               the guard's SOCKETIO_GUARD_WEBSOCKET_COMPRESSION: a browser's
                                      offer of per-message deflate is accepted, not struck
    KNOB_GC=freeze                    gc.freeze() once the app is built, before it serves: what
                                      start-up allocated is never scanned again
    KNOB_GC=thresholds                that, and gc.set_threshold(*GC_THRESHOLDS): collections far
                                      rarer, so the long full ones stop the event loop less often
    KNOB_MAX_TEXT=<characters>        the chapter's MAX_TEXT (500): the bench's larger payloads
    KNOB_PACKAGES=<folder>            where the knobs' packages are (requirements/knobs.txt)

The chapter's own create_app builds the app: SocketIO is swapped, before the chapter is imported,
for a subclass that adds the knob's options to the ones the chapter passes; with KNOB_GUARD=off,
the guard's init_app is replaced by one that does nothing, so the chapter's one guard line is a no-op.
"""

from gevent import monkey

monkey.patch_all()  # first, as in run_gevent.py

import collections  # noqa: E402  (after patching, on purpose)
import gc  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

CHAPTER = Path(__file__).resolve().parents[1] / "chapters" / "02_async_modes"
WEBSOCKET = os.environ.get("KNOB_WEBSOCKET", "simple-websocket")
JSON = os.environ.get("KNOB_JSON", "flask")
SERIALIZER = os.environ.get("KNOB_SERIALIZER", "default")
PING_INTERVAL = os.environ.get("KNOB_PING_INTERVAL")
GUARD = os.environ.get("KNOB_GUARD", "on")
COMPRESSION = os.environ.get("KNOB_COMPRESSION", "off")
GC = os.environ.get("KNOB_GC", "default")
MAX_TEXT = os.environ.get("KNOB_MAX_TEXT")
# Python's defaults are (700, 10, 10): a young collection every 700 allocations net, a full one
# every 100 young ones (when the long-lived objects have grown by a quarter since the last).
GC_THRESHOLDS = (50_000, 20, 100)

if os.environ.get("KNOB_PACKAGES"):
    # Appended: the tests' pinned packages, earlier on the path, win over anything found here.
    sys.path.append(os.environ["KNOB_PACKAGES"])
if WEBSOCKET != "gevent-websocket":
    # As if it were not installed: python-engineio (async_drivers/gevent.py) and Flask-SocketIO's
    # run() both use gevent-websocket whenever `import geventwebsocket` succeeds.
    sys.modules["geventwebsocket"] = None  # type: ignore[assignment]
sys.path.insert(0, str(CHAPTER))

import flask_socketio  # noqa: E402
import flask_socketio_guard  # noqa: E402
from flask import request  # noqa: E402


def orjson_module():
    """orjson as python-socketio calls a json module: dumps(obj, separators=...) -> str, and loads."""
    import orjson

    class Orjson:
        @staticmethod
        def dumps(obj, **_options):
            return orjson.dumps(obj).decode()  # compact already, as the separators ask

        @staticmethod
        def loads(text, **_options):
            return orjson.loads(text)

    return Orjson


def knob_options():
    """The SocketIO options the knobs add."""
    options = {}
    if JSON == "stdlib":
        import json

        options["json"] = json
    elif JSON == "orjson":
        options["json"] = orjson_module()
    if SERIALIZER != "default":
        options["serializer"] = SERIALIZER
    if PING_INTERVAL:
        options["ping_interval"] = float(PING_INTERVAL)
    return options


class KnobbedSocketIO(flask_socketio.SocketIO):
    def __init__(self, app=None, **kwargs):
        super().__init__(app, **{**kwargs, **knob_options()})


flask_socketio.SocketIO = KnobbedSocketIO
if GUARD == "off":
    flask_socketio_guard.SocketIOGuard.init_app = lambda self, app, socketio: None
elif COMPRESSION == "on":
    guard_init_app = flask_socketio_guard.SocketIOGuard.init_app

    def init_app_with_compression(self, app, socketio):
        app.config["SOCKETIO_GUARD_WEBSOCKET_COMPRESSION"] = True
        guard_init_app(self, app, socketio)

    flask_socketio_guard.SocketIOGuard.init_app = init_app_with_compression

import app as chapter  # noqa: E402
from app import create_app, serve  # noqa: E402

if MAX_TEXT:
    chapter.MAX_TEXT = int(MAX_TEXT)  # read by the handlers at each call


class Collections:
    """Each garbage collection's generation and pause, from gc.callbacks: where a tail may come from."""

    def __init__(self):
        self.pauses = {0: [], 1: [], 2: []}  # milliseconds, per generation
        # The older generations' collections as they happened: (start, generation, ms), the start
        # on CLOCK_MONOTONIC, the clock the load client's perf_counter reads on Linux too.
        self.events = collections.deque(maxlen=2000)
        self._started = None
        gc.callbacks.append(self._callback)

    def _callback(self, phase, info):
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None:
            ms = (time.perf_counter() - self._started) * 1000
            self.pauses[info["generation"]].append(ms)
            if info["generation"]:
                self.events.append((round(self._started, 4), info["generation"], round(ms, 2)))

    def report(self):
        return {
            str(gen): {
                "count": len(ms),
                "total_ms": round(sum(ms), 1),
                "longest_ms": round(max(ms, default=0), 2),
            }
            for gen, ms in self.pauses.items()
        } | {"events": list(self.events)}


if __name__ == "__main__":
    app, socketio = create_app("gevent")
    if GC in ("freeze", "thresholds"):
        gc.collect()
        gc.freeze()
    if GC == "thresholds":
        gc.set_threshold(*GC_THRESHOLDS)
    collected = Collections()  # from here on: the collections serving causes

    @app.get("/knobs")
    def knobs():
        """What this process really runs with, for the bench to check before it measures."""
        eio = socketio.server.eio
        return {
            "websocket": "gevent-websocket" if sys.modules.get("geventwebsocket") else "simple-websocket",
            "json": getattr(socketio.server.packet_class.json, "__name__", "?"),
            "serializer": socketio.server.packet_class.__name__,
            "ping_interval": eio.ping_interval,
            "guard": "on" if (guard := app.extensions.get("socketio_guard")) else "off",
            "compression": "on" if not guard or guard.config["WEBSOCKET_COMPRESSION"] else "off",
            "gc": GC if gc.get_freeze_count() else "default",
            "gc_thresholds": gc.get_threshold(),
            "max_text": chapter.MAX_TEXT,
        }

    @app.get("/gc")
    def garbage_collections():
        """The collections since start, per generation: how many, their total and longest pause.

        `?collect=2` runs a full collection first: the tests' way to make one happen.
        """
        if request.args.get("collect") == "2":
            gc.collect(2)
        return collected.report()

    serve(app, socketio)
