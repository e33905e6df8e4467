"""Chapter 02's eventlet app served by Flask's `app.run()`: run_eventlet.py but for its last line.

Run by tests/test_concepts.py beside run_eventlet.py, for the contrast on docs/concepts.md.
"""

import eventlet

eventlet.monkey_patch()

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

# The chapter's app, loaded by path ("02_async_modes" is not an importable package name).
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "chapters" / "02_async_modes"))
from app import HOST, PORT, create_app  # noqa: E402

app, socketio = create_app("eventlet")

if __name__ == "__main__":
    # --8<-- [start:app_run]
    # expected: eventlet's server, which socketio.run(app) starts; actual: Werkzeug's, whatever the mode
    app.run(host=HOST, port=PORT)
    # --8<-- [end:app_run]
