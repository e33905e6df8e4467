"""The concepts page's session app: Flask's `session`, written by an HTTP route and by a handler.

Run by tests/test_concepts.py as one process; docs/concepts.md shows its routes and handlers.
Threading mode: nothing here waits, and Werkzeug serves both transports.
"""

import os

from flask import Flask, jsonify, request, session
from flask_socketio import SocketIO

ASYNC_MODE = "threading"
HOST = os.environ.get("HOST", "127.0.0.1")
PORT = int(os.environ.get("PORT", "5000"))
INSTANCE_NAME = os.environ.get("INSTANCE_NAME", "app-1")

app = Flask(__name__)
app.config["SECRET_KEY"] = os.urandom(16).hex()  # signs the session cookie; one process, one key
socketio = SocketIO(app, async_mode=ASYNC_MODE)


@app.get("/healthz")
def healthz():
    return jsonify(status="ok", instance=INSTANCE_NAME)


# --8<-- [start:session]
@app.post("/color")
def set_color():
    """An HTTP route writes the session: the new cookie goes back with this response."""
    session["color"] = request.get_json()["color"]
    return jsonify(color=session["color"])


@app.get("/color")
def get_color():
    return jsonify(color=session.get("color"))


@socketio.on("color")
def on_color():
    """A handler reads the session: its connection's copy, taken when the connection opened."""
    return {"color": session.get("color")}


@socketio.on("paint")
def on_paint(color):
    """A handler writes the session: its connection's copy changes, and nothing else."""
    session["color"] = color
    return {"color": session["color"]}


# --8<-- [end:session]

if __name__ == "__main__":
    # Werkzeug's development server refuses to start outside a terminal without the last argument.
    socketio.run(app, host=HOST, port=PORT, allow_unsafe_werkzeug=True)
