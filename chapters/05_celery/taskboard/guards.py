"""What every chapter guards against, as in chapters 01-04: the Hardening page explains each part.

Repeated here so the chapter stands alone; nothing in it is about Celery.
"""

import errno
import functools
import io
import time
from urllib.parse import parse_qs

from engineio.packet import CLOSE, MESSAGE, PONG
from engineio.payload import Payload
from flask import current_app, request, session
from flask_socketio import emit
from socketio.packet import BINARY_EVENT, EVENT
from werkzeug.sansio.utils import host_is_trusted

from . import ALLOWED_ORIGINS, EVENTS_PER_SECOND, MAX_EVENT_BYTES, TRUSTED_HOSTS, socketio


def accepted_origin(origin, environ):
    """The page's own origin (scheme://Host, python-engineio's default rule) and ALLOWED_ORIGINS."""
    scheme = environ.get("HTTP_X_FORWARDED_PROTO", environ["wsgi.url_scheme"]).split(",")[0].strip()
    return origin == f"{scheme}://{environ.get('HTTP_HOST')}" or origin in ALLOWED_ORIGINS


def refuse(event, reason):
    """Tell the sender, and only the sender, why its event was refused."""
    emit("error", {"event": event, "reason": reason})
    return {"ok": False, "reason": reason}


@socketio.on_error_default
def on_handler_error(error):
    """Whatever a handler raises: the sender gets a reason and a failed ack; the log, one line."""
    event, args = request.event["message"], request.event["args"]
    current_app.logger.warning("refused %r from %s: %s: %s", event, request.sid, type(error).__name__, error)
    if event == "connect" and not sent_by_the_client():
        return False  # a real connect whose handler failed: refused, never half let in
    if len(args) > 1:
        return refuse(event, f"send one object, not {len(args)} arguments")
    return refuse(event, "the server could not handle this event")


def sent_by_the_client():
    """True when a `connect` or `disconnect` handler runs for an event a client sent itself."""
    return socketio.server.manager.is_connected(request.sid, request.namespace)


def rate_limited(handler):
    """Refuse an event once its connection has spent its budget: a token bucket per connection."""

    @functools.wraps(handler)
    def limited(*args):
        now = time.monotonic()
        refilled = (now - session.get("counted_at", now)) * EVENTS_PER_SECOND
        tokens = min(2 * EVENTS_PER_SECOND, session.get("tokens", 2 * EVENTS_PER_SECOND) + refilled)
        session["counted_at"] = now
        if tokens < 1:
            session["tokens"] = tokens
            return refuse(request.event["message"], f"too many events: at most {EVENTS_PER_SECOND} a second")
        session["tokens"] = tokens - 1
        return handler(*args)

    return limited


def close_malformed(eio_sid, error):
    """Log once and close the connection that sent a packet no Socket.IO client sends."""
    eio = socketio.server.eio
    try:
        eio_session = eio.get_session(eio_sid)
    except KeyError:
        return
    if eio_session.get("malformed"):
        return
    eio_session["malformed"] = True
    current_app.logger.warning(
        "closed %s: malformed packet (%s: %.80s)", eio_sid, type(error).__name__, error
    )
    if eio.transport(eio_sid) == "websocket":
        eio.disconnect(eio_sid)
    elif sid := socketio.server.manager.sid_from_eio_sid(eio_sid, "/"):
        socketio.server.disconnect(sid)


def check_packet(data):
    """Raise for a text packet that would fail inside python-socketio, before it is handled."""
    packet = socketio.server.packet_class(encoded_packet=data)
    named = isinstance(packet.data, list) and packet.data and isinstance(packet.data[0], str)
    if packet.packet_type in (EVENT, BINARY_EVENT) and not named:
        raise ValueError("an event's name must be a string")


CLIENT_PACKETS = (CLOSE, PONG, MESSAGE)  # what a client sends over long-polling


def guard(app, socketio):
    """Check every Socket.IO packet and every HTTP request before the app handles it."""
    handle_socketio_packet = socketio.server.eio.handlers["message"]

    @socketio.server.eio.on("message")
    def on_engineio_message(eio_sid, data):
        try:
            if isinstance(data, str):
                check_packet(data)
            handle_socketio_packet(eio_sid, data)
        except Exception as error:
            with app.app_context():
                close_malformed(eio_sid, error)

    app.wsgi_app = guard_the_edge(app, app.wsgi_app)


def guard_the_edge(app, wsgi_app):
    """Every HTTP request, the page's and Socket.IO's, passes here before the app sees it."""

    def edge(environ, start_response):
        def bad_request(reason):
            start_response("400 BAD REQUEST", [("Content-Type", "text/plain")])
            return [reason.encode()]

        healthz = environ.get("PATH_INFO") == "/healthz"
        if not healthz and not host_is_trusted(environ.get("HTTP_HOST", ""), TRUSTED_HOSTS):
            return bad_request("untrusted host: add it to TRUSTED_HOSTS")
        if not environ.get("PATH_INFO", "").startswith("/socket.io"):
            return wsgi_app(environ, start_response)
        eio_sid = parse_qs(environ.get("QUERY_STRING", "")).get("sid", [None])[0]
        if environ["REQUEST_METHOD"] == "POST" and eio_sid:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            try:
                if length > MAX_EVENT_BYTES:
                    raise ValueError(f"{length} bytes is more than {MAX_EVENT_BYTES}")
                body = environ["wsgi.input"].read(length)
                packets = Payload(encoded_payload=body.decode()).packets
                if any(packet.packet_type not in CLIENT_PACKETS for packet in packets):
                    raise ValueError("a packet type no client sends over polling")
            except Exception as error:
                with app.app_context():
                    close_malformed(eio_sid, error)
                return bad_request("malformed or oversized packet: connection closed")
            environ["wsgi.input"] = io.BytesIO(body)
        environ["edge.request"] = this_request = object()
        try:
            return wsgi_app(environ, start_response)
        except (KeyError, ValueError, RecursionError) as error:
            sessions = socketio.server.environ.items()
            opened = (sid for sid, env in sessions if env.get("edge.request") is this_request)
            eio_sid = eio_sid or next(opened, None)
            if eio_sid:
                with app.app_context():
                    close_malformed(eio_sid, error)
            if environ.get("HTTP_UPGRADE", "").lower() != "websocket":
                return bad_request("malformed or oversized packet: connection closed")
            raise ConnectionResetError(errno.ECONNRESET, "malformed packet") from None

    edge.__wrapped__ = wsgi_app
    return edge
