"""Chapter 02, gevent mode: thousands of clients on greenlets, monkey patched on line one.

What this shows
    The chapter's app (app.py) served by gevent's WSGI server with
    async_mode="gevent". WebSocket comes from simple-websocket, which
    python-engineio uses under gevent when gevent-websocket is not installed.
    monkey.patch_all() runs before ANY other import, so every `time.sleep`,
    socket and lock the app and its libraries use yields to the event loop
    instead of blocking it.

How to run it
    One terminal:  python chapters/02_async_modes/run_gevent.py
    Settings: see app.py. In production use gunicorn instead (gunicorn.conf.py).

What breaks without it
    antipatterns/02_blocking_sleep.py: no patching, so time.sleep freezes every
    client. antipatterns/02_late_monkey_patch.py: patching after the imports,
    so names imported before it stay blocking.

TL;DR
    from gevent import monkey; monkey.patch_all()  -- first, then everything else.
"""

# --8<-- [start:patch]
# First, before any other import: modules imported earlier may already hold the
# blocking originals (`from time import sleep`, `from socket import socket`).
from gevent import monkey

monkey.patch_all()

from app import create_app, serve  # noqa: E402  (imported after patching, on purpose)

# --8<-- [end:patch]

ASYNC_MODE = "gevent"

if __name__ == "__main__":
    serve(*create_app(ASYNC_MODE))
