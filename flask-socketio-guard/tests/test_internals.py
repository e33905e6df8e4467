"""Each library internal the guard leans on exists and behaves as _internals.py expects.

When an upgrade of Flask-SocketIO, python-socketio or python-engineio moves one, the test
named after it fails here, before any behaviour test does.
"""

from __future__ import annotations

import inspect

import engineio
import engineio.socket
import flask_socketio
import pytest
import socketio
from engineio.packet import CLOSE, MESSAGE, PING, PONG
from engineio.payload import Payload
from flask import Flask
from flask_socketio import SocketIO
from flask_socketio_guard import _internals


@pytest.fixture
def socketio_() -> SocketIO:
    return SocketIO(Flask(__name__), async_mode="threading")


def test_flask_socketio_dispatches_every_event_through_handle_event(socketio_):
    """SocketIO._handle_event(handler, message, namespace, sid, *args): decorated handlers and Namespaces."""
    parameters = list(inspect.signature(socketio_._handle_event).parameters)
    assert parameters == ["handler", "message", "namespace", "sid", "args"]
    assert "self.socketio._handle_event(" in inspect.getsource(flask_socketio.Namespace.trigger_event)
    assert "self._handle_event(handler, message, real_ns, sid" in inspect.getsource(SocketIO.on)


def test_a_real_connect_or_disconnect_is_its_own_packet_type_never_an_event(socketio_):
    """python-socketio dispatches CONNECT and DISCONNECT packets apart from EVENTs, and keeps the names."""
    source = inspect.getsource(socketio.Server._handle_eio_message)
    assert "pkt.packet_type == packet.CONNECT" in source and "pkt.packet_type == packet.EVENT" in source
    assert set(socketio.base_server.BaseServer.reserved_events) <= _internals.RESERVED
    packet = socketio_.server.packet_class(encoded_packet='21["disconnect"]')
    assert (_internals.reserved_event(packet), packet.id) == ("disconnect", 1)


def test_python_socketio_sends_a_packet_to_one_connection_with_send_packet(socketio_):
    assert list(inspect.signature(socketio_.server._send_packet).parameters) == ["eio_sid", "pkt"]
    assert callable(socketio.base_manager.BaseManager.is_connected)


def test_join_room_lands_in_server_enter_room(socketio_):
    assert "socketio.server.enter_room(sid, room, namespace=namespace)" in inspect.getsource(
        flask_socketio.join_room
    )
    assert list(inspect.signature(socketio_.server.enter_room).parameters) == ["sid", "room", "namespace"]


def test_engineio_reads_its_origin_rule_and_size_limit_per_request(socketio_):
    eio = socketio_.server.eio
    assert eio.cors_allowed_origins is None  # the default _internals.set_engineio_limits looks for
    assert eio.max_http_buffer_size == 1_000_000
    assert "self.cors_allowed_origins" in inspect.getsource(
        engineio.base_server.BaseServer._cors_allowed_origins
    )
    assert "self.server.max_http_buffer_size" in inspect.getsource(engineio.socket.Socket)


def test_engineio_keeps_python_socketios_message_handler_where_it_can_be_replaced(socketio_):
    eio = socketio_.server.eio
    assert eio.handlers["message"] == socketio_.server._handle_eio_message
    assert not eio.async_handlers  # so the replacement runs in the reader, one packet at a time


def test_packet_class_decodes_and_raises_on_what_python_socketio_cannot_handle(socketio_):
    decode = socketio_.server.packet_class
    assert decode(encoded_packet='2["echo",1]').data == ["echo", 1]  # what follows Engine.IO's `4`
    for bad in ('2["echo"', "z"):
        with pytest.raises(ValueError):
            decode(encoded_packet=bad)
    with pytest.raises(ValueError, match="an event's name must be a string"):
        _internals.decode_socketio_packet(socketio_, '2[["echo"],{}]')
    with pytest.raises(ValueError, match="a binary event named 'connect'"):
        _internals.decode_socketio_packet(socketio_, '51-["connect",{"_placeholder":true,"num":0}]')


def test_payload_decodes_a_polling_body_into_typed_packets():
    assert _internals.polling_packet_types(b"40\x1e3\x1e1") == [MESSAGE, PONG, CLOSE]
    assert _internals.polling_packet_types(b"2") == [PING]
    with pytest.raises(ValueError):
        Payload(encoded_payload="zz")


def test_engineio_sessions_transports_and_sids_are_reachable(socketio_):
    server, eio = socketio_.server, socketio_.server.eio
    for name in ("get_session", "transport", "disconnect"):
        assert callable(getattr(eio, name))
    assert callable(server.manager.sid_from_eio_sid) and callable(server.disconnect)
    assert server.environ == {}  # eio sid -> the WSGI environ python-socketio keeps
    assert list(_internals.sessions_opened_by(socketio_, "key", object())) == []
    assert _internals.mark_once(socketio_, "no-such-session", "mark") is False


def open_connection(socketio_: SocketIO, *namespaces: str) -> tuple[str, list[str]]:
    """An Engine.IO session, as a handshake opens it, connected to `namespaces`: (eio sid, their sids)."""
    server = socketio_.server
    eio_sid = server.eio.generate_id()
    server.eio.sockets[eio_sid] = engineio.socket.Socket(server.eio, eio_sid)
    return eio_sid, [server.manager.connect(eio_sid, namespace) for namespace in namespaces]


def test_one_engineio_session_serves_every_namespace_of_a_connection(socketio_):
    """A connection's sids, one per namespace, share its Engine.IO session, which holds each one's own.

    So the budget kept there is the connection's, and a polling close reaches every namespace.
    """
    server, manager = socketio_.server, socketio_.server.manager
    eio_sid, (root, extra) = open_connection(socketio_, "/", "/extra")
    session = _internals.connection_session(socketio_, extra, "/extra")
    assert session is _internals.connection_session(socketio_, root, "/")
    assert server.get_session(extra, "/extra") is session["/extra"]  # keyed by namespace: BUCKET is apart
    _internals.close_connection(socketio_, eio_sid)  # polling: each namespace, at the Socket.IO level
    assert manager.sid_from_eio_sid(eio_sid, "/") is manager.sid_from_eio_sid(eio_sid, "/extra") is None
    assert [packet.encode() for packet in server.eio.sockets[eio_sid].queue.queue] == ["41", "41/extra,"]


def test_a_connections_rooms_are_found_through_its_sid_in_each_namespace(socketio_):
    """python-socketio keeps rooms per namespace, each with the sid of that namespace in it.

    So the room limit finds a connection's rooms through its sid in each namespace it joined,
    and leaves out each one's own sid room.
    """
    server, manager = socketio_.server, socketio_.server.manager
    eio_sid, (root, extra) = open_connection(socketio_, "/", "/extra")
    assert _internals.namespace_sids(socketio_, eio_sid) == [("/", root), ("/extra", extra)]
    assert manager.eio_sid_from_sid(extra, "/extra") == eio_sid
    assert server.rooms(extra, "/extra") == [extra]  # its own sid room, nothing else yet
    server.enter_room(root, "lobby", namespace="/")
    server.enter_room(extra, "lobby", namespace="/extra")  # the same name in another namespace: another room
    rooms = {("/", "lobby"), ("/extra", "lobby")}
    assert _internals.connection_rooms(socketio_, root, "/") == rooms
    assert _internals.connection_rooms(socketio_, extra, "/extra") == rooms
    _, (stranger,) = open_connection(socketio_, "/")
    assert _internals.connection_rooms(socketio_, stranger, "/") == set()


def test_engineio_builds_each_websocket_from_its_own_async_table_and_the_writer_closes_it(socketio_):
    """Each server looks up its WebSocket class in its own `_async`; the writer closes what it built."""
    eio = socketio_.server.eio
    shared = eio._async
    assert "self.server._async['websocket']" in inspect.getsource(engineio.socket.Socket)
    assert "ws.close()" in inspect.getsource(engineio.socket.Socket._websocket_handler)
    _internals.close_websockets_quietly(socketio_)
    assert eio._async["websocket"].__mro__[1] is shared["websocket"]
    assert shared["websocket"] is not eio._async["websocket"]  # the module's table is untouched
