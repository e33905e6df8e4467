"""Every place the guard leans on Flask-SocketIO, python-socketio or python-engineio internals.

Nothing else in the package touches a private name or replaces a library's handler. Each
function here is checked against the pinned versions by tests/test_internals.py, so an upgrade
that moves one fails there first, by name, before any behaviour test does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any

from engineio.packet import CLOSE, MESSAGE, PONG
from engineio.payload import Payload
from flask_socketio import SocketIO
from socketio.packet import ACK, BINARY_EVENT, EVENT

# What a client sends over long-polling: a Socket.IO packet, a pong, or a close. Any other
# Engine.IO type makes python-engineio close the session, which then waits for a GET that a
# raw client may never send.
CLIENT_PACKETS = (CLOSE, PONG, MESSAGE)

Handler = Callable[..., Any]
# Event names python-socketio keeps for itself: a client's own event named so would reach the
# app's connect or disconnect handler as if it were the real one.
RESERVED = frozenset(("connect", "connect_error", "disconnect", "__disconnect_final"))


def wrap_event_dispatch(socketio: SocketIO, wrap: Callable[[Handler, str, str, str, tuple], Handler]) -> None:
    """Have every handler, decorated or in a Namespace, called as `wrap(handler, event, ns, sid, args)`.

    Flask-SocketIO sends every event through `SocketIO._handle_event(handler, message,
    namespace, sid, *args)`, which opens the request context and calls the handler in it, so
    what `wrap` returns runs where `request`, `session` and `emit` work.
    """
    dispatch = socketio._handle_event

    def guarded_dispatch(handler, message, namespace, sid, *args):
        return dispatch(wrap(handler, message, namespace, sid, args), message, namespace, sid, *args)

    socketio._handle_event = guarded_dispatch


def wrap_enter_room(socketio: SocketIO, check: Callable[[str, str, str], None]) -> None:
    """Call `check(sid, room, namespace)` before a connection enters a room (join_room lands here)."""
    enter_room = socketio.server.enter_room

    def checked_enter_room(sid, room, namespace=None):
        check(sid, room, namespace or "/")
        return enter_room(sid, room, namespace=namespace)

    socketio.server.enter_room = checked_enter_room


def set_engineio_limits(socketio: SocketIO, accepted_origin: Callable, max_bytes: int) -> None:
    """The origin rule, unless the app chose its own, and the largest packet python-engineio takes."""
    eio = socketio.server.eio
    if eio.cors_allowed_origins is None:  # python-engineio's default: the page's own origin only
        eio.cors_allowed_origins = accepted_origin
    eio.max_http_buffer_size = max_bytes


def decode_socketio_packet(socketio: SocketIO, data: str):
    """Decode a text packet as python-socketio will, raising for one it would fail on later.

    Most failures (bad JSON, a packet type that does not exist) raise while decoding. An
    event named by a list (`42[["join"],{}]`) would raise later, in the thread that runs the
    event, where nothing could catch it.
    """
    packet = socketio.server.packet_class(encoded_packet=data)
    named = isinstance(packet.data, list) and packet.data and isinstance(packet.data[0], str)
    if packet.packet_type in (EVENT, BINARY_EVENT) and not named:
        raise ValueError("an event's name must be a string")
    if packet.packet_type == BINARY_EVENT and packet.data[0] in RESERVED:
        raise ValueError(f"a binary event named {packet.data[0]!r}")  # its attachments would follow
    return packet


def reserved_event(packet) -> str | None:
    """The name of a client's EVENT packet that takes a reserved name, else None.

    A real connect or disconnect is a CONNECT or DISCONNECT packet, never an EVENT: this tells
    them apart whatever `always_connect` says and whether or not the app has such a handler.
    """
    if packet.packet_type == EVENT and packet.data[0] in RESERVED:
        return packet.data[0]
    return None


def wrap_engineio_messages(
    socketio: SocketIO,
    on_malformed: Callable[[str, Exception], None],
    on_reserved: Callable[[str, str, str, int | None], None],
) -> None:
    """Check every Socket.IO packet, over either transport, before python-socketio handles it.

    python-engineio logs a full traceback for each packet its message handler cannot
    decode, and keeps the connection open; here `on_malformed(eio_sid, error)` is called
    instead. An event with a reserved name goes to `on_reserved(eio_sid, name, namespace, ack_id)`.
    """
    eio = socketio.server.eio
    handle = eio.handlers["message"]

    def checked_message(eio_sid, data):
        try:
            if isinstance(data, str):  # bytes are the attachments of a binary event
                packet = decode_socketio_packet(socketio, data)
                if name := reserved_event(packet):
                    return on_reserved(eio_sid, name, packet.namespace or "/", packet.id)
            handle(eio_sid, data)
        except Exception as error:
            on_malformed(eio_sid, error)

    eio.on("message", checked_message)


def sid_of(socketio: SocketIO, eio_sid: str, namespace: str) -> str | None:
    """The Socket.IO sid of a connection in `namespace`, None if it is not connected there."""
    sid = socketio.server.manager.sid_from_eio_sid(eio_sid, namespace)
    return sid if sid and socketio.server.manager.is_connected(sid, namespace) else None


def send_event(socketio: SocketIO, eio_sid: str, namespace: str, event: str, data: Any) -> None:
    """Send one connection an event from outside any handler (no request context for emit)."""
    packet = socketio.server.packet_class(EVENT, namespace=namespace, data=[event, data])
    socketio.server._send_packet(eio_sid, packet)


def send_ack(socketio: SocketIO, eio_sid: str, namespace: str, ack_id: int, data: Any) -> None:
    """Answer a client's event that asked for an ack, from outside any handler."""
    packet = socketio.server.packet_class(ACK, namespace=namespace, id=ack_id, data=[data])
    socketio.server._send_packet(eio_sid, packet)


def polling_packet_types(body: bytes) -> list[str]:
    """The Engine.IO packet types of a long-polling POST body; raises if it is not one."""
    return [packet.packet_type for packet in Payload(encoded_payload=body.decode()).packets]


def connection_session(socketio: SocketIO, sid: str, namespace: str) -> dict:
    """The Engine.IO session behind a Socket.IO sid: one per connection, whatever namespaces it joined.

    python-socketio keeps a session per namespace inside it, under the namespace's name; a key
    that is not a namespace is the connection's own. python-engineio drops it with the connection.
    """
    return socketio.server.eio.get_session(socketio.server.manager.eio_sid_from_sid(sid, namespace))


def namespace_sids(socketio: SocketIO, eio_sid: str) -> list[tuple[str, str]]:
    """(namespace, Socket.IO sid) for each namespace the connection joined, one still connecting too."""
    manager = socketio.server.manager
    sids = []
    for namespace in list(manager.get_namespaces()):  # a disconnect may drop a namespace
        if sid := manager.sid_from_eio_sid(eio_sid, namespace):
            sids.append((namespace, sid))
    return sids


def connection_rooms(socketio: SocketIO, sid: str, namespace: str) -> set[tuple[str, str]]:
    """The rooms of the connection behind a Socket.IO sid, as (namespace, room), in every namespace it joined.

    Each namespace's sid room, the one python-socketio reaches that sid by, is left out.
    """
    eio_sid = socketio.server.manager.eio_sid_from_sid(sid, namespace)
    return {
        (each_namespace, room)
        for each_namespace, each_sid in namespace_sids(socketio, eio_sid)
        for room in socketio.server.rooms(each_sid, each_namespace)
        if room != each_sid
    }


def mark_once(socketio: SocketIO, eio_sid: str, mark: str) -> bool:
    """Set `mark` in the Engine.IO session; False if it was set already or the session is gone."""
    try:
        eio_session = socketio.server.eio.get_session(eio_sid)
    except KeyError:
        return False
    if eio_session.get(mark):
        return False
    eio_session[mark] = True
    return True


def close_connection(socketio: SocketIO, eio_sid: str) -> None:
    """Close a connection now, so that it leaves its rooms now, not a ping timeout later.

    A polling session is ended at the Socket.IO level only, in every namespace it joined:
    closing its Engine.IO session would wait for a GET that a raw client may never send;
    that session times out on its own, with no rooms and no user.
    """
    server = socketio.server
    if server.eio.transport(eio_sid) == "websocket":
        server.eio.disconnect(eio_sid)
        return
    for namespace, sid in namespace_sids(socketio, eio_sid):
        server.disconnect(sid, namespace)


def sessions_opened_by(socketio: SocketIO, key: str, marker: object) -> Iterable[str]:
    """The Engine.IO sessions whose WSGI environ carries `marker` under `key`.

    Flask-SocketIO hands python-engineio a copy of the request's environ, so a request finds
    the session it opened by a marker object it put in the environ, not by identity.
    """
    return (eio_sid for eio_sid, env in socketio.server.environ.items() if env.get(key) is marker)


def close_websockets_quietly(socketio: SocketIO) -> None:
    """Threading mode: a WebSocket the client ends as the server closes it costs no traceback.

    python-engineio's writer thread closes the WebSocket when the session ends, after checking
    it is still open; simple-websocket's reader thread, seeing the client leave at that moment,
    may close the socket in between. The writer then dies on it (`OSError: [Errno 9] Bad file
    descriptor`, or simple-websocket's ConnectionClosed), for a connection that is gone either
    way. simple-websocket already takes a BrokenPipeError there quietly.
    """
    import simple_websocket

    eio = socketio.server.eio
    opened = eio._async["websocket"]

    class ClosedQuietly(opened):
        def close(self):
            with contextlib.suppress(OSError, simple_websocket.ConnectionClosed):
                super().close()

    eio._async = {**eio._async, "websocket": ClosedQuietly}  # this server's own: the module's is shared
