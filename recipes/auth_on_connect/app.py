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
    token survives a restart: every client must log in again.

What breaks without it
    A connect handler that accepts everyone leaves each event handler to find
    out who is talking, and a user id sent in each event's payload is whatever
    the client claims. Raising Python's built-in ConnectionRefusedError instead
    of Flask-SocketIO's sends it to the `on_error_default` handler, whose answer
    (an ack for the client) accepts the connection: the client is in, with no
    user. This app's handler fails closed for `connect`, so the client is
    refused, but reads only "Connection rejected by server", not why.

TL;DR
    Check a signed token in `on_connect(auth)`; refuse with
    flask_socketio.ConnectionRefusedError(reason); keep the user id in
    `session`; address a user through the room "user:<id>", never a sid.
"""

import os
from pathlib import Path

from flask import Flask, jsonify, render_template, request, send_from_directory, session
from flask_socketio import ConnectionRefusedError, SocketIO, emit, join_room
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
def secret(name):
    """A secret from the environment, or a throwaway one for a demo; never in production.

    The throwaway key is new at every start, so the tokens signed with it die with the
    process: after a restart every client is refused with "invalid token" and logs in again.
    """
    if os.environ.get(name):
        return os.environ[name]
    if PRODUCTION:
        raise SystemExit(f"{name} must be set when PRODUCTION=1")
    return os.urandom(16).hex()


app = Flask(__name__)
app.config["SECRET_KEY"] = secret("SECRET_KEY")
socketio = SocketIO(app, async_mode=ASYNC_MODE)
# The salt keeps these tokens apart from everything else signed with the same key (Flask's
# session cookie): no other signed value of this app is ever accepted as a socket token.
tokens = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt="socket-auth")
# --8<-- [end:secret]


# --8<-- [start:login]
@app.post("/login")
def login():
    """Trade a name for a token that the client sends in `auth` each time it connects.

    A real app checks a password here, or takes the user from its own login session, and
    signs the user's database id. Here anyone may be anyone: the point is the socket side.
    """
    try:
        user_id = require(request.get_json(silent=True), name=MAX_NAME)["name"]
    except BadPayload as bad:
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
    Python's built-in exception of the same name is not that one: Flask-SocketIO hands it to the
    error handler below, like any other exception.
    """
    if sent_by_the_client():
        return refuse("connect", "a client cannot send 'connect'")
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
    return {"user": session["user"], "instance": INSTANCE_NAME}


@socketio.on("notify_me")
def on_notify_me(data=None):
    try:
        text = require(data, text=MAX_TEXT)["text"]
    except BadPayload as bad:
        return refuse("notify_me", str(bad))
    user_id = session["user"]
    # to=user_room(user_id): every tab of this user, nobody else. The user comes from the
    # session, set at connect time from the token; a payload never says who the sender is.
    emit("notice", {"user": user_id, "text": text}, to=user_room(user_id))
    return {"ok": True}


# --8<-- [end:user_room]


# What follows is chapter 01's, unchanged: the page, the health check, payload checks.


@app.get("/")
def index():
    return render_template("index.html", instance=INSTANCE_NAME)


@app.get("/vendor/socket.io.min.js")
def socketio_client_js():
    return send_from_directory(JS_CLIENT_DIR, "socket.io.min.js")


@app.get("/healthz")
def healthz():
    return jsonify(status="ok", instance=INSTANCE_NAME, async_mode=ASYNC_MODE)


class BadPayload(ValueError):
    """The reason a payload was refused; it is sent back to the sender as is."""


def require(data, **limits):
    """Return the payload's fields, stripped, or raise BadPayload with the reason.

    `limits` maps each required key to its maximum length: require(data, room=32).
    """
    if not isinstance(data, dict):
        raise BadPayload("payload must be an object")
    fields = {}
    for key, max_length in limits.items():
        if key not in data:
            raise BadPayload(f"missing key '{key}'")
        value = data[key]
        if not isinstance(value, str):
            raise BadPayload(f"'{key}' must be a string")
        value = value.strip()
        if not value:
            raise BadPayload(f"'{key}' must not be empty")
        if len(value) > max_length:
            raise BadPayload(f"'{key}' is longer than {max_length} characters")
        fields[key] = value
    return fields


def refuse(event, reason):
    """Tell the sender, and only the sender, why its event was refused."""
    emit("error", {"event": event, "reason": reason})
    return {"ok": False, "reason": reason}


# --8<-- [start:errors]
@socketio.on_error_default
def on_handler_error(error):
    """Whatever a handler raises: the sender gets a reason and a failed ack; the log, one line.

    A client that is not this page can send anything. `42["whoami",{...},{...}]` (two
    arguments) makes the call itself raise TypeError before the handler runs. A
    traceback for each such event would let one client fill the disk. A real connect
    whose handler raised is refused instead.
    """
    event, args = request.event["message"], request.event["args"]
    app.logger.warning("refused %r from %s: %s: %s", event, request.sid, type(error).__name__, error)
    if event == "connect" and not sent_by_the_client():
        # Fail closed. Any other answer from here accepts the connection, unchecked: that is
        # what Python's built-in ConnectionRefusedError would do, as it lands here too.
        return False
    if len(args) > 1:
        return refuse(event, f"send one object, not {len(args)} arguments")
    return refuse(event, "the server could not handle this event")


def sent_by_the_client():
    """True when the `connect` handler runs for an event a client sent itself.

    Any client can emit an event named "connect", and python-socketio hands it to the
    connect handler, auth and all. The real connect runs while the connection is still
    pending (python-socketio's pre_connect); a client's own, once it is connected.
    """
    return socketio.server.manager.is_connected(request.sid, request.namespace)


# --8<-- [end:errors]


# --8<-- [start:run]
if __name__ == "__main__":
    # allow_unsafe_werkzeug: the threading mode runs on Werkzeug's development
    # server, which refuses to start outside a terminal (under a test or nox)
    # without it. Chapter 02 shows the production command.
    socketio.run(app, host=HOST, port=PORT, allow_unsafe_werkzeug=True)
# --8<-- [end:run]
