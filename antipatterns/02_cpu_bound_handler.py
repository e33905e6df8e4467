"""Antipattern 02: CPU-bound work inline in an event handler, under gevent.

What it does
    Serves the chapter 02 app in gevent mode, monkey patched correctly, but
    its `cpu_work` handler runs the pure-Python loop right there in the
    handler instead of handing it to a worker process.

Why is this bad?
    Monkey patching makes WAITING cooperative; it cannot interrupt a greenlet
    that never waits. A CPU-bound loop keeps the event loop for its whole
    duration, so every other client's `ping`, message and connection attempt
    waits for it to finish. The same holds under eventlet.

Use instead
    chapters/02_async_modes/app.py, `cpu_pool()`: a process pool, whose
    worker has its own GIL; for real workloads a Celery worker (chapter 05).

How to run it
    python antipatterns/02_cpu_bound_handler.py   (same settings as the chapter)

Differs from chapters/02_async_modes/app.py
    on_cpu_work: runs burn_cpu in the handler instead of in the process pool
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "chapters" / "02_async_modes"))
# Patched before the app is imported, as it should be: this antipattern is about the handler.
from gevent import monkey

monkey.patch_all()

from app import burn_cpu, create_app, require_seconds, serve, socketio  # noqa: E402  (after patching)

ASYNC_MODE = "gevent"


# --8<-- [start:handler]
# Registered after the chapter's own `cpu_work` handler, so this one replaces it.
@socketio.on("cpu_work")
def on_cpu_work(data=None):
    seconds = require_seconds(data)
    # expected: the loop runs beside the event loop and other clients stay responsive;
    # actual: it runs ON the event loop, and no other greenlet runs until it ends
    burn_cpu(seconds)
    return {"ok": True}


# --8<-- [end:handler]


if __name__ == "__main__":
    serve(*create_app(ASYNC_MODE))
