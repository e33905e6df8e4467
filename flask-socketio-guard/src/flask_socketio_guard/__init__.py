"""Flask-SocketIO-Guard: a Flask-SocketIO app that a hostile client cannot crash, flood or fill the log of.

    socketio = SocketIO(app, async_mode="threading")
    SocketIOGuard(app, socketio)

Once installed, every client that is not your page gets a reason or loses its own
connection, and nobody else notices:

- any exception in a handler: an `error` event and a failed ack to the sender, one log line;
  `raise Refused("why")` in a handler says why in your own words;
- an event named `connect` or `disconnect` sent by a client: refused, never run as the real one;
- more than EVENTS_PER_SECOND events a second from one connection (bursts of twice that pass);
- more than MAX_ROOMS rooms for one connection;
- a packet python-engineio or python-socketio cannot decode, a long-polling POST over
  MAX_EVENT_BYTES or with a packet type no client sends: one log line, the connection closed
  at once, its rooms left at once (no ghost until the ping timeout);
- a request under a Host name not in TRUSTED_HOSTS (DNS rebinding): 400;
- a page of another origin than the app's own or ALLOWED_ORIGINS: refused by python-engineio;
- a browser's offer of per-message deflate: struck, unless WEBSOCKET_COMPRESSION is True;
- a WebSocket that has ended: its TCP connection ends too, on gevent's server and on Werkzeug's
  (threading mode's socketio.run), which would read the client's close frame as a request.

Settings live in `app.config`, under the prefix SOCKETIO_GUARD_ (see DEFAULTS). The manual,
with the words each side sees and the test behind each, is the cookbook's hardening page.
"""

from __future__ import annotations

import errno
import io
import os
import time
from typing import Any
from urllib.parse import parse_qs

from flask import Flask, request
from flask_socketio import ConnectionRefusedError, SocketIO, emit
from werkzeug.sansio.utils import host_is_trusted
from werkzeug.serving import WSGIRequestHandler

from . import _internals

__version__ = "0.1.0"
__all__ = ["DEFAULTS", "Refused", "SocketIOGuard", "require", "secret"]

# --8<-- [start:defaults]
DEFAULTS: dict[str, Any] = {
    # Events one connection may send a second, on average; bursts of twice as many pass.
    "SOCKETIO_GUARD_EVENTS_PER_SECOND": 20,
    # Rooms one connection may be in at once, in all its namespaces, besides those named after its sids.
    "SOCKETIO_GUARD_MAX_ROOMS": 10,
    # The largest packet taken, over either transport (python-engineio's default is 1 MB).
    "SOCKETIO_GUARD_MAX_EVENT_BYTES": 16 * 1024,
    # The Host names the app answers to; any other gets 400 (a DNS-rebinding page).
    "SOCKETIO_GUARD_TRUSTED_HOSTS": ["127.0.0.1", "localhost"],
    # Paths that answer any Host: balancers and orchestrators check health by address.
    "SOCKETIO_GUARD_OPEN_PATHS": ["/healthz"],
    # Origins besides the app's own whose pages may connect (scheme://host:port).
    "SOCKETIO_GUARD_ALLOWED_ORIGINS": [],
    # Per-message deflate (RFC 7692) on WebSockets. Every browser offers it, and simple-websocket
    # accepts any offer: a compressor per connection, for chat-sized messages. False strikes the
    # offer from the request, and the WebSocket comes up uncompressed.
    "SOCKETIO_GUARD_WEBSOCKET_COMPRESSION": False,
}
# --8<-- [end:defaults]

# --8<-- [start:words]
# The words each side sees. The hardening page quotes them; tests assert them.
FORGED = {
    "connect": "a client cannot send 'connect'; it is connected already",
    "disconnect": "a client cannot send 'disconnect'; close the connection instead",
}
BAD_REQUEST = "malformed or oversized packet: connection closed"
UNTRUSTED_HOST = "untrusted host: add it to TRUSTED_HOSTS"
# --8<-- [end:words]
# Marks an Engine.IO session whose malformed packet was logged: the rest are dropped unread.
MALFORMED_MARK = "socketio_guard.malformed"
REQUEST_MARK = "socketio_guard.request"
BUCKET = "socketio_guard.bucket"


# --8<-- [start:refused]
class Refused(ValueError):
    """Raise it in a handler: the sender gets an `error` event and a failed ack with this reason.

    Raised in a connect handler, it refuses the connection with "auth: <reason>".
    """


def require(data: Any, **limits: int) -> dict[str, str]:
    """Return the payload's fields, stripped, or raise Refused with the reason.

    `limits` maps each required key to its maximum length: require(data, room=32).
    """
    if not isinstance(data, dict):
        raise Refused("payload must be an object")
    fields = {}
    for key, max_length in limits.items():
        if key not in data:
            raise Refused(f"missing key '{key}'")
        value = data[key]
        if not isinstance(value, str):
            raise Refused(f"'{key}' must be a string")
        value = value.strip()
        if not value:
            raise Refused(f"'{key}' must not be empty")
        if len(value) > max_length:
            raise Refused(f"'{key}' is longer than {max_length} characters")
        fields[key] = value
    return fields


def secret(name: str, *, production: bool) -> str:
    """The environment variable `name`, or a throwaway value for a demo; in production, required."""
    if os.environ.get(name):
        return os.environ[name]
    if production:
        raise SystemExit(f"{name} must be set when PRODUCTION=1")
    return os.urandom(16).hex()


def refuse(event: str, reason: str) -> dict[str, Any]:
    """Tell the sender, and only the sender, why its event was refused; the failed ack."""
    emit("error", {"event": event, "reason": reason})
    return {"ok": False, "reason": reason}


# --8<-- [end:refused]


class SocketIOGuard:
    """Guards a Flask-SocketIO app: `SocketIOGuard(app, socketio)`, or `init_app(app, socketio)` later.

    Install it after `SocketIO(app, ...)` (or `socketio.init_app(app)`), before serving.
    """

    def __init__(self, app: Flask | None = None, socketio: SocketIO | None = None) -> None:
        if app is not None and socketio is not None:
            self.init_app(app, socketio)

    # --8<-- [start:init_app]
    def init_app(self, app: Flask, socketio: SocketIO) -> None:
        for key, value in DEFAULTS.items():
            app.config.setdefault(key, value)
        self.app, self.socketio = app, socketio
        self.config = {key.removeprefix("SOCKETIO_GUARD_"): app.config[key] for key in DEFAULTS}
        if not self.config["TRUSTED_HOSTS"]:
            # Werkzeug's host_is_trusted(host, []) is True for every host: an empty list would
            # switch the check off without a word.
            raise ValueError("SOCKETIO_GUARD_TRUSTED_HOSTS is empty: name the hosts this app answers to")
        app.extensions["socketio_guard"] = self
        _internals.set_engineio_limits(socketio, self.accepted_origin, self.config["MAX_EVENT_BYTES"])
        _internals.wrap_event_dispatch(socketio, self._guarded)
        _internals.wrap_enter_room(socketio, self._check_room_count)
        _internals.wrap_engineio_messages(socketio, self.close_malformed, self._refuse_reserved)
        app.wsgi_app = self._edge(app.wsgi_app)
        if socketio.async_mode == "threading":
            _internals.close_websockets_quietly(socketio)
            _werkzeug_ends_websocket_connections(socketio)

    # --8<-- [end:init_app]

    # -- the origin rule --------------------------------------------------------------------

    # --8<-- [start:origin]
    def accepted_origin(self, origin: str, environ: dict) -> bool:
        """The page's own origin (scheme://Host, python-engineio's default rule) and ALLOWED_ORIGINS.

        A list passed as cors_allowed_origins would replace the default rule, not extend it:
        the app's own page could no longer connect.
        """
        forwarded = environ.get("HTTP_X_FORWARDED_PROTO", environ["wsgi.url_scheme"])
        scheme = forwarded.split(",")[0].strip()
        own = f"{scheme}://{environ.get('HTTP_HOST')}"
        return origin == own or origin in self.config["ALLOWED_ORIGINS"]

    # --8<-- [end:origin]

    # -- every event, in its handler's request context --------------------------------------

    # --8<-- [start:events]
    def _guarded(self, handler, event: str, namespace: str, sid: str, args: tuple):
        """The handler as python-socketio will call it, with the guards around it."""
        # A client's own events named connect or disconnect never get here: see _refuse_reserved.
        if event == "connect":
            return self._connect(handler)

        def guarded(*handler_args):
            if event != "disconnect" and not self._within_budget(sid, namespace):
                rate = self.config["EVENTS_PER_SECOND"]
                return refuse(event, f"too many events: at most {rate} a second")
            try:
                return handler(*handler_args)
            except Refused as refused:
                return refuse(event, str(refused))
            except Exception as error:
                self._log_refused(event, error)
                if len(handler_args) > 1:
                    return refuse(event, f"send one object, not {len(handler_args)} arguments")
                return refuse(event, "the server could not handle this event")

        return guarded

    def _connect(self, handler):
        """A real connect: Refused refuses the connection with its reason, any other error quietly."""

        def guarded(*handler_args):
            try:
                return handler(*handler_args)
            except Refused as refused:
                raise ConnectionRefusedError(f"auth: {refused}") from None
            except ConnectionRefusedError:
                raise
            except TypeError:
                raise  # Flask-SocketIO calls a connect handler that takes no `auth` again, without it
            except Exception as error:
                self._log_refused("connect", error)
                return False  # refused, never half let in

        return guarded

    def _log_refused(self, event: str, error: Exception) -> None:
        # One line: a traceback for each bad event would let one client fill the disk.
        self.app.logger.warning("refused %r from %s: %s: %s", event, request.sid, type(error).__name__, error)

    # --8<-- [end:events]

    # --8<-- [start:budget]
    def _within_budget(self, sid: str, namespace: str) -> bool:
        """A token bucket per connection, kept in its Engine.IO session: one for all its namespaces."""
        rate = self.config["EVENTS_PER_SECOND"]
        bucket = _internals.connection_session(self.socketio, sid, namespace).setdefault(BUCKET, {})
        now = time.monotonic()
        refilled = (now - bucket.get("counted_at", now)) * rate
        tokens = min(2 * rate, bucket.get("tokens", 2 * rate) + refilled)
        bucket["counted_at"] = now
        if tokens < 1:  # a refused event costs nothing: the budget refills at the same pace
            bucket["tokens"] = tokens
            return False
        bucket["tokens"] = tokens - 1
        return True

    # --8<-- [end:budget]

    # --8<-- [start:rooms]
    def _check_room_count(self, sid: str, room: str, namespace: str) -> None:
        limit = self.config["MAX_ROOMS"]
        # Every namespace of the connection counts: a second one must not double the limit.
        joined = _internals.connection_rooms(self.socketio, sid, namespace)
        if (namespace, room) not in joined and room != sid and len(joined) >= limit:
            raise Refused(f"you are in {limit} rooms already: leave one first")

    # --8<-- [end:rooms]

    # -- packets and requests no client of ours sends -----------------------------------------

    # --8<-- [start:reserved]
    def _refuse_reserved(self, eio_sid: str, event: str, namespace: str, ack_id: int | None) -> None:
        """A client's own event named `connect` or `disconnect`: refused before python-socketio sees it.

        python-socketio would hand it to the app's connect or disconnect handler as if it were
        the real one: the room would hear the client leave while it stays.
        """
        if _internals.sid_of(self.socketio, eio_sid, namespace) is None:
            return  # not connected to that namespace: python-socketio would drop it too
        reason = FORGED.get(event, f"a client cannot send {event!r}")
        # What refuse() says from inside a handler: the error event, then the failed ack.
        _internals.send_event(self.socketio, eio_sid, namespace, "error", {"event": event, "reason": reason})
        if ack_id is not None:
            _internals.send_ack(self.socketio, eio_sid, namespace, ack_id, {"ok": False, "reason": reason})

    # --8<-- [end:reserved]

    # --8<-- [start:malformed]
    def close_malformed(self, eio_sid: str, error: Exception) -> None:
        """Log once and close the connection that sent a packet no Socket.IO client sends."""
        if not _internals.mark_once(self.socketio, eio_sid, MALFORMED_MARK):
            return  # closed already, or said once: the rest are dropped unread
        self.app.logger.warning(
            "closed %s: malformed packet (%s: %.80s)", eio_sid, type(error).__name__, error
        )
        _internals.close_connection(self.socketio, eio_sid)

    # --8<-- [end:malformed]

    # --8<-- [start:edge]
    def _edge(self, wsgi_app):
        """Every HTTP request, the page's and Socket.IO's, passes here before the app sees it.

        Flask's own TRUSTED_HOSTS would not cover /socket.io/: Flask-SocketIO answers those
        requests before Flask does.
        """
        config = self.config

        def bad_request(start_response, reason: str):
            start_response("400 BAD REQUEST", [("Content-Type", "text/plain")])
            return [reason.encode()]

        def edge(environ, start_response):
            path = environ.get("PATH_INFO", "")
            if path not in config["OPEN_PATHS"] and not host_is_trusted(
                environ.get("HTTP_HOST", ""), config["TRUSTED_HOSTS"]
            ):
                return bad_request(start_response, UNTRUSTED_HOST)
            query = parse_qs(environ.get("QUERY_STRING", ""))
            if "EIO" not in query:  # not Engine.IO: every Engine.IO request names its protocol
                return wsgi_app(environ, start_response)
            eio_sid = query.get("sid", [None])[0]
            if environ["REQUEST_METHOD"] == "POST" and eio_sid:
                try:
                    environ["wsgi.input"] = io.BytesIO(self._checked_post_body(environ))
                except Exception as error:
                    self.close_malformed(eio_sid, error)
                    return bad_request(start_response, BAD_REQUEST)
            environ[REQUEST_MARK] = this_request = object()
            websocket = environ.get("HTTP_UPGRADE", "").lower() == "websocket"
            if websocket and not config["WEBSOCKET_COMPRESSION"]:
                # Read from here by simple-websocket and eventlet alike (gevent-websocket never agrees).
                environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)
            answered = []  # the status of the HTTP answer, if the request got one
            own_copy = None
            if websocket and "werkzeug.socket" in environ:
                # simple-websocket gets a socket of its own, as it takes under gevent: Werkzeug
                # closes its socket as the request ends, which can be under python-engineio's
                # writer thread, still sending its close frame (EBADF, with a traceback).
                own_copy = environ["werkzeug.socket"] = environ["werkzeug.socket"].dup()

            def start(status, headers, exc_info=None):
                answered.append(status)
                return start_response(status, headers, exc_info)

            try:
                result = wsgi_app(environ, start)
            except ConnectionError:
                raise  # a WebSocket ran under Werkzeug; its thread closes its own socket
            except (KeyError, ValueError, RecursionError) as error:
                # What python-engineio lets escape: a WebSocket frame it cannot decode (the
                # socket is gone, but its session would live on until the ping timeout: a
                # ghost), or a request on a session it has just closed.
                opened = _internals.sessions_opened_by(self.socketio, REQUEST_MARK, this_request)
                eio_sid = eio_sid or next(iter(opened), None)
                if eio_sid:
                    self.close_malformed(eio_sid, error)  # silent if that session is closed already
                if not websocket:
                    return bad_request(start_response, BAD_REQUEST)
                # The WebSocket is gone: this is how every WSGI server is told, quietly.
                raise ConnectionResetError(errno.ECONNRESET, "malformed packet") from None
            except BaseException:
                if own_copy is not None:  # the handshake failed: no WebSocket thread owns it
                    own_copy.close()
                raise
            if own_copy is not None:  # answered over HTTP: python-engineio refused the upgrade
                own_copy.close()
            if websocket and ended_on_pywsgi(environ, answered):
                # gevent's pywsgi would read on, and take the browser's close frame, which comes
                # after the server's, for its next HTTP request (flask-sock #104).
                raise ConnectionResetError(errno.ECONNRESET, "the WebSocket has ended")
            return result

        return edge

    def _checked_post_body(self, environ: dict) -> bytes:
        """A long-polling POST body, read and checked: python-engineio would log tracebacks and answer 200."""
        length = int(environ.get("CONTENT_LENGTH") or 0)
        limit = self.config["MAX_EVENT_BYTES"]
        if length > limit:
            raise ValueError(f"{length} bytes is more than {limit}")
        body = environ["wsgi.input"].read(length)
        if any(kind not in _internals.CLIENT_PACKETS for kind in _internals.polling_packet_types(body)):
            raise ValueError("a packet type no client sends over polling")
        return body

    # --8<-- [end:edge]


def ended_on_pywsgi(environ: dict, answered: list[str]) -> bool:
    """A WebSocket that gevent's pywsgi served has ended; pywsgi cannot tell it from an HTTP answer.

    A refused upgrade gets a 4xx, which must be sent. A WebSocket that ran got no answer, or
    python-engineio's empty 200 for a session upgraded from long-polling: written after the
    WebSocket's close frame, it would only be garbage on the wire.
    """
    pywsgi = environ.get("SERVER_SOFTWARE", "").startswith("gevent/")
    return pywsgi and (not answered or answered[-1].startswith("2"))


class _WebSocketEndsItsConnection(WSGIRequestHandler):
    """Werkzeug's request handler, except that a connection ends with the WebSocket it carried.

    Werkzeug keeps an HTTP/1.1 connection open after a WebSocket, and reads the client's close
    frame, which comes after the server's, as its next request: a stray "code 400, message Bad
    request syntax ('\\x88…')" line, a 400 written after the close frame, and a connection the
    server never ends (RFC 6455 §7.1.1).
    """

    carried_websocket = False

    def handle_one_request(self) -> None:
        super().handle_one_request()
        headers = getattr(self, "headers", None)  # none if the request line was bad
        if headers is not None and headers.get("Upgrade", "").lower() == "websocket":
            self.close_connection = self.carried_websocket = True

    def finish(self) -> None:
        super().finish()
        if self.carried_websocket:
            # Let go of Werkzeug's own socket. Next, the server would shut the connection down
            # for simple-websocket's copy too (the edge's), maybe before python-engineio's writer
            # has sent its close frame; simple-websocket ends it after the close handshake.
            self.connection.close()


def _werkzeug_ends_websocket_connections(socketio: SocketIO) -> None:
    """socketio.run (threading mode: Werkzeug's server) with the request handler above."""
    run = socketio.run

    def run_with_handler(app, *args, **kwargs):
        kwargs.setdefault("request_handler", _WebSocketEndsItsConnection)
        return run(app, *args, **kwargs)

    socketio.run = run_with_handler
