"""Both balancers strike a browser's offer of per-message deflate before it reaches an instance.

Behind them is an instance that would agree to it: chapter 02's gevent app with the guard's
SOCKETIO_GUARD_WEBSOCKET_COMPRESSION on (bench/knob_server.py, KNOB_COMPRESSION=on), as an
app with no guard would. Reached directly, it answers a browser's handshake with
per-message deflate; reached through the chapter's nginx.conf or haproxy.cfg, with nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import websocket

from bench.knobs import KNOB_SERVER
from bench.loadclient import DEFLATE_OFFER
from lab.apps import start_app
from lab.haproxy import start_haproxy
from lab.nginx import start_nginx

BALANCERS = {
    "nginx": (start_nginx, "chapters/04_nginx_lb/nginx.conf"),
    "haproxy": (start_haproxy, "chapters/04_nginx_lb/haproxy.cfg"),
}


@contextmanager
def browsers_handshake(url: str) -> Iterator[websocket.WebSocket]:
    """A WebSocket to the Socket.IO endpoint, offering per-message deflate as a browser does."""
    ws_url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    ws = websocket.create_connection(ws_url, timeout=5, header=[f"Sec-WebSocket-Extensions: {DEFLATE_OFFER}"])
    try:
        yield ws
    finally:
        ws.close(timeout=1)


def agreed(ws: websocket.WebSocket) -> str:
    """The extensions the server's handshake answer agreed to."""
    return ws.getheaders().get("sec-websocket-extensions", "")


def test_a_browsers_websocket_through_either_balancer_comes_up_without_per_message_deflate(bench):
    """A browser's WebSocket comes up uncompressed through either balancer, compressed straight to the app."""
    # An instance that agrees to compress when the offer reaches it. (websocket-client
    # reads no compressed frame, so this connection stops at the handshake.)
    instance = start_app(bench, KNOB_SERVER, name="chat-1", env={"KNOB_COMPRESSION": "on"})
    with browsers_handshake(instance.url) as ws:
        assert agreed(ws).startswith("permessage-deflate"), agreed(ws)

    # The same handshake through each balancer: the offer is struck on the way, so none is
    # agreed, and the connection is up: Engine.IO's open packet arrives, uncompressed.
    for name, (start, config) in BALANCERS.items():
        proxy = start(bench, config, [instance], name=name)
        with browsers_handshake(proxy.url) as ws:
            assert agreed(ws) == "", (name, agreed(ws))
            assert ws.recv().startswith("0{"), name
