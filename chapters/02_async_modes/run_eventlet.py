"""Chapter 02, eventlet mode: green threads, kept for existing projects, capped by MAX_CLIENTS.

What this shows
    The chapter's app (app.py) served by eventlet's WSGI server with
    async_mode="eventlet", monkey patched before any other import. serve()
    passes MAX_CLIENTS to eventlet.wsgi.server as `max_size`: without it the
    server accepts at most 1,024 simultaneous connections, and since every
    websocket holds one for its whole life, client 1,025 waits for a free
    slot that may never come.

How to run it
    One terminal:  python chapters/02_async_modes/run_eventlet.py
    Settings: see app.py (MAX_CLIENTS defaults to 10000).

What breaks without it
    The same as gevent (see run_gevent.py). And eventlet itself is in
    maintenance mode: its own documentation asks new projects not to use it.
    Prefer gevent for new work; this file is for apps that already run on it.

TL;DR
    import eventlet; eventlet.monkey_patch()  -- first; and raise max_size.
"""

# --8<-- [start:patch]
import eventlet

eventlet.monkey_patch()

from app import create_app, serve  # noqa: E402  (imported after patching, on purpose)

# --8<-- [end:patch]

ASYNC_MODE = "eventlet"

if __name__ == "__main__":
    serve(*create_app(ASYNC_MODE))
