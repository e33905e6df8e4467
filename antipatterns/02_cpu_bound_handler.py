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

# Patched first, as it should be: this antipattern is about the handler, not the patching.
from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "chapters" / "02_async_modes"))
from app import BadPayload, burn_cpu, create_app, refuse, require_seconds, serve  # noqa: E402

ASYNC_MODE = "gevent"

app, socketio = create_app(ASYNC_MODE)


# --8<-- [start:handler]
@socketio.on("cpu_work")
def on_cpu_work(data=None):
    try:
        seconds = require_seconds(data)
    except BadPayload as bad:
        return refuse("cpu_work", str(bad))
    # expected: the loop runs beside the event loop and other clients stay responsive;
    # actual: it runs ON the event loop, and no other greenlet runs until it ends
    burn_cpu(seconds)
    return {"ok": True}


# --8<-- [end:handler]


if __name__ == "__main__":
    serve(app, socketio)
