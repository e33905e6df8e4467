"""Antipattern 02: a blocking sleep under gevent, without monkey patching.

What it does
    Serves the chapter 02 app in gevent mode but never calls
    monkey.patch_all(), and its `slow_io` handler waits with the standard
    library's time.sleep: the stand-in for any blocking call (a database
    driver, requests.get, a socket read) that nothing made cooperative.

Why is this bad?
    gevent runs every client on ONE OS thread and switches between them only
    when a greenlet waits on something gevent knows about. The real
    time.sleep waits inside the OS, so the whole process sleeps with it:
    while one client's slow_io runs, nobody's `ping` is answered, nobody's
    message is delivered, and no new client can connect. One slow request
    costs every client its full duration.

Use instead
    chapters/02_async_modes/run_gevent.py: `from gevent import monkey;
    monkey.patch_all()` on the first line, before any other import (or call
    gevent.sleep / socketio.sleep explicitly).

How to run it
    python antipatterns/02_blocking_sleep.py   (same settings as the chapter)
    In one browser window trigger slow I/O; the other window freezes with it.
"""

import sys
import time
from pathlib import Path

# The chapter's app, loaded by path ("02_async_modes" is not an importable package name).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "chapters" / "02_async_modes"))
from app import BadPayload, create_app, refuse, require_seconds, serve

# expected: gevent's monkey.patch_all() before the imports above; actual: never called.
ASYNC_MODE = "gevent"

app, socketio = create_app(ASYNC_MODE)


# --8<-- [start:handler]
@socketio.on("slow_io")
def on_slow_io(data=None):
    try:
        seconds = require_seconds(data)
    except BadPayload as bad:
        return refuse("slow_io", str(bad))
    # expected: this client waits and the others carry on;
    # actual: the unpatched time.sleep blocks the only OS thread, and every client waits `seconds`
    time.sleep(seconds)
    return {"ok": True}


# --8<-- [end:handler]


if __name__ == "__main__":
    serve(app, socketio)
