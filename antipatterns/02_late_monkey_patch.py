"""Antipattern 02: monkey patching AFTER the other imports.

What it does
    run_gevent.py with one line moved: it imports the app first, as any
    Python file does, and only then calls gevent's monkey.patch_all().

Why is this bad?
    patch_all() swaps the attributes of the standard library modules
    (threading.Lock, socket.socket, time.sleep, ...) for cooperative ones.
    Everything created or bound BEFORE it keeps the blocking originals, and
    from then on the process mixes the two. Here that is concrete (the tests
    check both):
      1. The app never starts serving. app.py builds its CPU process pool at
         import time, so the pool's locks and queues are real OS-thread
         objects; patch_all() then turns the threads the pool starts on first
         use into greenlets, which wait on those real locks, and nobody wakes
         them: start_cpu_workers() deadlocks, /healthz never answers.
      2. gevent says so in the log: "MonkeyPatchWarning: Monkey-patching ssl
         after ssl has already been imported may lead to errors ... Modules
         that had direct imports (NOT patched): [urllib3..., redis...]".
    What breaks depends on what your imports happened to create or import by
    name before the patch, deep inside libraries: nothing you can review.

Use instead
    chapters/02_async_modes/run_gevent.py: patch on the first line, then import.

How to run it
    python antipatterns/02_late_monkey_patch.py   (same settings as the chapter)
    It prints the warning, then hangs without ever listening: Ctrl-C to stop it.

Differs from chapters/02_async_modes/run_gevent.py
    from gevent import monkey, monkey.patch_all(): after `from app import ...` instead of before it
"""

# --8<-- [start:patch]
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "chapters" / "02_async_modes"))
# expected: nothing has run yet that patching could miss;
# actual: importing the app built its process pool with real, unpatched locks
from app import create_app, serve

# expected: from here on, every lock, socket and sleep is cooperative;
# actual: only the ones created after this line are, and they now wait on the ones created before
from gevent import monkey

monkey.patch_all()
# --8<-- [end:patch]

ASYNC_MODE = "gevent"

if __name__ == "__main__":
    serve(*create_app(ASYNC_MODE))
