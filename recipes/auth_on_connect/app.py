"""Recipe: authenticate a Socket.IO connection once, when it connects, and give each user a room.

What this shows
    `POST /login` trades a name for a signed, timed token. The browser (or any
    Socket.IO client) sends that token in `auth` when it connects; the connect
    handler checks it and refuses the connection, with a reason the client can
    read, when it is missing, forged or expired. An accepted connection is
    tied to its user for life: the user id goes into the Socket.IO session and
    the connection joins the room "user:<id>". Every tab of one user shares
    that room, so `notify_me` reaches all of them and nobody else. A client that
    reconnects sends its token again and is back in its room at once.

How to run it
    One terminal:  python recipes/auth_on_connect/app.py
    Then open http://127.0.0.1:5000 in three tabs; log in as "ann" in two of
    them and as "bob" in the third, and send a notice from one of ann's tabs.
    Settings come from the environment: HOST, PORT, INSTANCE_NAME, SECRET_KEY,
    TOKEN_MAX_AGE (seconds, default 3600) and PRODUCTION=1 (then SECRET_KEY
    must be set). Without SECRET_KEY a random key is made at each start, so no
    token survives a restart: every client must log in again. ALLOWED_ORIGINS,
    TRUSTED_HOSTS and EVENTS_PER_SECOND are the guard's, as in the chapters:
    docs/hardening.md says what each one stops.

What breaks without it
    A connect handler that accepts everyone leaves each event handler to find
    out who is talking, and a user id sent in each event's payload is whatever
    the client claims. Raising Python's built-in ConnectionRefusedError instead
    of Flask-SocketIO's makes the handler fail like any other error: the guard
    refuses the connection (it fails closed), but the client reads only
    "Connection rejected by server", not why.

TL;DR
    Check a signed token in `on_connect(auth)`; refuse with
    flask_socketio.ConnectionRefusedError(reason); keep the user id in
    `session`; address a user through the room "user:<id>", never a sid.
"""

import os
from pathlib import Path

from flask import Flask, jsonify, render_template, request, send_from_directory, session
from flask_socketio import ConnectionRefusedError, SocketIO, emit, join_room
from flask_socketio_guard import Refused, SocketIOGuard, require, secret
from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer

# --8<-- [start:config]
# Explicit, always: left to auto-detection, Flask-SocketIO silently picks
# eventlet whenever it happens to be installed. Chapter 02 compares the modes.
ASYNC_MODE = "threading"
HOST = os.environ.get("HOST", "127.0.0.1")
PORT = int(os.environ.get("PORT", "5000"))
INSTANCE_NAME = os.environ.get("INSTANCE_NAME", "chat-1")
# How long a token opens connections. A connection that is already open outlives it:
# the token is checked at connect time only, so an expired one bites at the next reconnect.
TOKEN_MAX_AGE = int(os.environ.get("TOKEN_MAX_AGE", "3600"))
# PRODUCTION=1: secrets must come from the environment, never a throwaway default.
PRODUCTION = os.environ.get("PRODUCTION") == "1"
# The Socket.IO browser client, installed from npm (`npm ci` at the repository root)
# and served by this app, so the page works with no internet.
JS_CLIENT_DIR = Path(
    os.environ.get("JS_CLIENT_DIR")
    or Path(__file__).resolve().parents[2] / "node_modules" / "socket.io-client" / "dist"
)

MAX_NAME = 32
MAX_TEXT = 500
# --8<-- [end:config]


# --8<-- [start:secret]
app = Flask(__name__)
# Without SECRET_KEY, secret() makes a throwaway key, new at every start: the tokens signed
# with it die with the process, and after a restart every client is refused with "invalid
# token" and logs in again. With PRODUCTION=1 it refuses to start instead.
app.config["SECRET_KEY"] = secret("SECRET_KEY", production=PRODUCTION)
socketio = SocketIO(app, async_mode=ASYNC_MODE)
# The salt keeps these tokens apart from everything else signed with the same key (Flask's
# session cookie): no other signed value of this app is ever accepted as a socket token.
tokens = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt="socket-auth")
# --8<-- [end:secret]

# What every chapter needs and none teaches: a client that is not this page gets a reason or
# loses its own connection, never anyone else's (docs/hardening.md, flask-socketio-guard/).
app.config.update(
    SOCKETIO_GUARD_EVENTS_PER_SECOND=int(os.environ.get("EVENTS_PER_SECOND", "20")),
    SOCKETIO_GUARD_TRUSTED_HOSTS=os.environ.get("TRUSTED_HOSTS", "127.0.0.1,localhost").split(","),
    SOCKETIO_GUARD_ALLOWED_ORIGINS=[o for o in os.environ.get("ALLOWED_ORIGINS", "").split(",") if o],
)
guard = SocketIOGuard(app, socketio)


# --8<-- [start:login]
@app.post("/login")
def login():
    """Trade a name for a token that the client sends in `auth` each time it connects.

    A real app checks a password here, or takes the user from its own login session, and
    signs the user's database id. Here anyone may be anyone: the point is the socket side.
    """
    try:
        user_id = require(request.get_json(silent=True), name=MAX_NAME)["name"]
    except Refused as bad:
        return jsonify(reason=str(bad)), 400
    return jsonify(token=tokens.dumps(user_id))


# --8<-- [end:login]


# --8<-- [start:connect]
# Each user's own room: every connection of that user, in every tab, is in it. The prefix
# keeps it apart from the rooms clients name (chapter 01 files those under "room:").
USER_ROOM_PREFIX = "user:"


def user_room(user_id):
    return USER_ROOM_PREFIX + user_id


def user_from(auth):
    """The user id signed into auth["token"], or ConnectionRefusedError saying what is wrong."""
    token = auth.get("token") if isinstance(auth, dict) else None
    if not token:
        raise ConnectionRefusedError("log in first: no token")
    if not isinstance(token, str):
        raise ConnectionRefusedError("invalid token")
    try:
        return tokens.loads(token, max_age=TOKEN_MAX_AGE)
    except SignatureExpired:
        raise ConnectionRefusedError("token expired: log in again") from None
    except BadData:  # a bad signature, or not a token at all
        raise ConnectionRefusedError("invalid token") from None


@socketio.on("connect")
def on_connect(auth=None):
    """Let a connection in only with a valid token; it joins its user's room before any event.

    ConnectionRefusedError here is Flask-SocketIO's (python-socketio's, imported above): its
    argument reaches the client in the CONNECT_ERROR packet as {"message": reason}. Flask-SocketIO
    docs, "Connection Events": the handler can raise ConnectionRefusedError, and "any arguments
    passed to the exception are returned to the client in the error packet".
    https://flask-socketio.readthedocs.io/en/latest/getting_started.html#connection-events
    Python's built-in exception of the same name is not that one: it fails the handler like
    any other exception, and the client is refused without a reason.
    """
    try:
        user_id = user_from(auth)
    except ConnectionRefusedError as refused:
        app.logger.warning("refused a connection from %s: %s", request.remote_addr, refused)
        raise
    # Flask-SocketIO's session: kept on the server for this connection only, never a cookie.
    session["user"] = user_id
    join_room(user_room(user_id))


# --8<-- [end:connect]


# --8<-- [start:user_room]
@socketio.on("whoami")
def on_whoami(data=None):
    return {"ok": True, "user": session["user"], "instance": INSTANCE_NAME}


@socketio.on("notify_me")
def on_notify_me(data=None):
    text = require(data, text=MAX_TEXT)["text"]  # a bad payload: Refused, told to the sender
    user_id = session["user"]
    # to=user_room(user_id): every tab of this user, nobody else. The user comes from the
    # session, set at connect time from the token; a payload never says who the sender is.
    emit("notice", {"user": user_id, "text": text}, to=user_room(user_id))
    return {"ok": True}


# --8<-- [end:user_room]


# What follows is chapter 01's, unchanged: the page and the health check.


@app.get("/")
def index():
    return render_template("index.html", instance=INSTANCE_NAME)


@app.get("/vendor/socket.io.min.js")
def socketio_client_js():
    return send_from_directory(JS_CLIENT_DIR, "socket.io.min.js")


@app.get("/healthz")
def healthz():
    return jsonify(status="ok", instance=INSTANCE_NAME, async_mode=ASYNC_MODE)


# --8<-- [start:run]
if __name__ == "__main__":
    # allow_unsafe_werkzeug: the threading mode runs on Werkzeug's development
    # server, which refuses to start outside a terminal (under a test or nox)
    # without it. Chapter 02 shows the production command.
    socketio.run(app, host=HOST, port=PORT, allow_unsafe_werkzeug=True)
# --8<-- [end:run]
