"""antipatterns/02_blocking_sleep.py with the fix its "Use instead" names: socketio.sleep.

Chapter 02's app in gevent mode, unpatched, as the twin serves it; only its stand-in for slow
I/O waits with `socketio.sleep` instead of `time.sleep`. Run by tests/test_concepts.py.
"""

import sys
from pathlib import Path

# The chapter's app, loaded by path ("02_async_modes" is not an importable package name).
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "chapters" / "02_async_modes"))
import app as chapter

flask_app, socketio = chapter.create_app("gevent")


# --8<-- [start:wait]
def wait_on_slow_io(seconds):
    # The mode's own sleep (gevent.sleep here): it parks this greenlet, patched or not.
    socketio.sleep(seconds)


# --8<-- [end:wait]

chapter.wait_on_slow_io = wait_on_slow_io

if __name__ == "__main__":
    chapter.serve(flask_app, socketio)
