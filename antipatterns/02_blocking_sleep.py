"""Antipattern 02: a blocking sleep under gevent, without monkey patching.

What it does
    run_gevent.py without its first two lines: it serves the chapter 02 app
    in gevent mode but never calls monkey.patch_all(). The chapter's
    `slow_io` handler waits with the standard library's time.sleep
    (`wait_on_slow_io`): the stand-in for any blocking call (a database
    driver, requests.get, a socket read) that nothing made cooperative.

Why is this bad?
    gevent runs every client on ONE OS thread and switches between them only
    when a greenlet waits on something gevent knows about. The real
    time.sleep waits inside the OS, so the whole process sleeps with it:
    while one client's slow_io runs, nobody's `ping` is answered, nobody's
    message is delivered, and no new client can connect. One slow request
    costs every client its full duration. `cpu_work` stalls everyone too: its
    wait for the process pool's answer is a real, blocking wait.

Use instead
    chapters/02_async_modes/run_gevent.py: `from gevent import monkey;
    monkey.patch_all()` on the first line, before any other import (or call
    gevent.sleep / socketio.sleep explicitly).

How to run it
    python antipatterns/02_blocking_sleep.py   (same settings as the chapter)
    In one browser window trigger slow I/O; the other window freezes with it.

Differs from chapters/02_async_modes/run_gevent.py
    from gevent import monkey, monkey.patch_all(): never called
"""

import sys
from pathlib import Path

# The chapter's app, loaded by path ("02_async_modes" is not an importable package name).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "chapters" / "02_async_modes"))
# --8<-- [start:patch]
# expected: gevent's monkey.patch_all() first, so that the time.sleep in the chapter's
# wait_on_slow_io parks one greenlet; actual: never called, so it blocks the only OS thread
from app import create_app, serve

# --8<-- [end:patch]

ASYNC_MODE = "gevent"

if __name__ == "__main__":
    serve(*create_app(ASYNC_MODE))
