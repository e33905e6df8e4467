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
    KNOB_PACKAGES=<folder>            where the knobs' packages are (requirements/knobs.txt)

The chapter's own create_app builds the app: SocketIO is swapped, before the chapter is imported,
for a subclass that adds the knob's options to the ones the chapter passes; with KNOB_GUARD=off,
the guard's init_app is replaced by one that does nothing, so the chapter's one guard line is a no-op.
"""

from gevent import monkey

monkey.patch_all()  # first, as in run_gevent.py

import os  # noqa: E402  (after patching, on purpose)
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

CHAPTER = Path(__file__).resolve().parents[1] / "chapters" / "02_async_modes"
WEBSOCKET = os.environ.get("KNOB_WEBSOCKET", "simple-websocket")
JSON = os.environ.get("KNOB_JSON", "flask")
SERIALIZER = os.environ.get("KNOB_SERIALIZER", "default")
PING_INTERVAL = os.environ.get("KNOB_PING_INTERVAL")
GUARD = os.environ.get("KNOB_GUARD", "on")
COMPRESSION = os.environ.get("KNOB_COMPRESSION", "off")

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

from app import create_app, serve  # noqa: E402

if __name__ == "__main__":
    app, socketio = create_app("gevent")

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
        }

    serve(app, socketio)
