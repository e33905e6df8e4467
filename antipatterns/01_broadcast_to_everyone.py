"""Antipattern 01: room messages sent with broadcast=True, and payloads used unchecked.

What it does
    The chapter 01 chat, with two mistakes people really make. It emits
    room messages with `broadcast=True` instead of `to=room`, and it indexes
    each payload (`data["room"]`) without checking it.

Why is this bad?
    `broadcast=True` sends to every connected client, whatever room they
    joined: every room's messages leak into every other room. And a
    malformed payload raises inside the handler; the sender gets no answer
    and no error, only a traceback lands in the server's log.

Use instead
    chapters/01_basic_chat/app.py: `emit(..., to=room)`, and `require()`
    with an `error` event for bad input.

How to run it
    python antipatterns/01_broadcast_to_everyone.py   (same settings as the chapter)
"""

import os
from pathlib import Path

from flask import Flask, jsonify, render_template, send_from_directory, session
from flask_socketio import SocketIO, emit, join_room, leave_room

ASYNC_MODE = "threading"
HOST = os.environ.get("HOST", "127.0.0.1")
PORT = int(os.environ.get("PORT", "5000"))
INSTANCE_NAME = os.environ.get("INSTANCE_NAME", "chat-1")
ALLOWED_ORIGINS = [o for o in os.environ.get("ALLOWED_ORIGINS", "").split(",") if o] or None
CHAPTER_DIR = Path(__file__).resolve().parents[1] / "chapters" / "01_basic_chat"
JS_CLIENT_DIR = Path(
    os.environ.get("JS_CLIENT_DIR")
    or Path(__file__).resolve().parents[1] / "node_modules" / "socket.io-client" / "dist"
)

# The same page as the chapter, so the two can be compared side by side in two browsers.
app = Flask(__name__, template_folder=CHAPTER_DIR / "templates")
app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY", os.urandom(16).hex())
socketio = SocketIO(app, async_mode=ASYNC_MODE, cors_allowed_origins=ALLOWED_ORIGINS)


@app.get("/")
def index():
    return render_template("index.html", instance=f"{INSTANCE_NAME} (antipattern 01)")


@app.get("/vendor/socket.io.min.js")
def socketio_client_js():
    return send_from_directory(JS_CLIENT_DIR, "socket.io.min.js")


@app.get("/healthz")
def healthz():
    return jsonify(status="ok", instance=INSTANCE_NAME, async_mode=ASYNC_MODE)


# --8<-- [start:handlers]
@socketio.on("join")
def on_join(data):
    # expected: a bad payload gets an `error` event; actual: KeyError/TypeError, and silence
    room, name = data["room"], data["name"]
    session["name"] = name
    join_room(room)
    emit("system", {"room": room, "text": f"{name} joined {room}"}, broadcast=True)
    return {"ok": True, "room": room, "instance": INSTANCE_NAME}


@socketio.on("leave")
def on_leave(data):
    room = data["room"]
    emit("system", {"room": room, "text": f"{session['name']} left {room}"}, broadcast=True)
    leave_room(room)
    return {"ok": True, "room": room}


# --8<-- [start:message]
@socketio.on("message")
def on_message(data):
    # expected: the handler refuses a malformed payload with a reason;
    # actual: data["room"] raises, the client hears nothing, the log gets a traceback
    room = data["room"]
    # expected: only the members of `room` receive it; actual: every connected client does
    emit("message", {"room": room, "name": session["name"], "text": data["text"]}, broadcast=True)
    return {"ok": True}


# --8<-- [end:message]


# --8<-- [end:handlers]


if __name__ == "__main__":
    socketio.run(app, host=HOST, port=PORT, allow_unsafe_werkzeug=True)
