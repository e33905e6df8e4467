"""A guarded app served for real: Werkzeug's threaded server on an OS-assigned port, in this process.

Every test talks to it over the network, with python-socketio's client, raw WebSocket frames
(websocket-client) and raw long-polling requests (requests): what a hostile client would do.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
import socketio
import websocket
from flask import Flask, request, session
from flask_socketio import SocketIO, emit, join_room, leave_room
from flask_socketio_guard import Refused, SocketIOGuard, require
from werkzeug.serving import make_server

DEADLINE = 5.0  # seconds; a healthy server answers in milliseconds


def wait_until(condition: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def make_app(**options: Any) -> tuple[Flask, SocketIO]:
    """A small chat with every kind of handler the guard wraps, and a second namespace.

    `options` go to SocketIO(...).
    """
    app = Flask(__name__)
    app.config.update(SECRET_KEY="test", SOCKETIO_GUARD_EVENTS_PER_SECOND=5, SOCKETIO_GUARD_MAX_ROOMS=3)
    # A ping a second: python-engineio's polling client can lose its CLOSE (see Client.disconnect),
    # and then waits for the server's next ping, which by default comes 25 s on.
    socketio = SocketIO(app, async_mode="threading", **{"ping_interval": 1, **options})
    SocketIOGuard(app, socketio)
    app.disconnects = []

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/")
    def index():
        return "page"

    @socketio.on("connect")
    def on_connect(auth=None):
        if auth and auth.get("boom"):
            raise RuntimeError("the connect handler failed")
        if auth:
            session["name"] = require(auth, name=8)["name"]
            for room in auth.get("rooms", []):
                join_room(room)

    @socketio.on("join")
    def on_join(data=None):
        join_room(require(data, room=16)["room"])
        return {"ok": True}

    @socketio.on("leave")
    def on_leave(data=None):
        leave_room(require(data, room=16)["room"])
        return {"ok": True}

    @socketio.on("echo")
    def on_echo(data=None):
        if data == "refuse":
            raise Refused("not that")
        if data == "boom":
            raise KeyError("boom")
        emit("echo", data)
        return {"ok": True, "name": session.get("name")}

    @socketio.on("disconnect")
    def on_disconnect(reason=None):
        app.disconnects.append((request.namespace, reason))

    # A second namespace: the guard's promises are per connection, whatever namespaces it joined.
    @socketio.on("echo", namespace="/extra")
    def on_extra_echo(data=None):
        return {"ok": True}

    socketio.on("join", namespace="/extra")(on_join)
    socketio.on("disconnect", namespace="/extra")(on_disconnect)

    return app, socketio


class Served:
    def __init__(self, app: Flask, socketio: SocketIO, **server: Any):
        self.app, self.socketio = app, socketio
        self.server = make_server("127.0.0.1", 0, app, threaded=True, **server)
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(DEADLINE)


class Client:
    """python-socketio's client, recording every event it receives.

    Over long-polling: the guard sees events the same way over either transport, and a
    WebSocket client takes about 3 s to close (it waits out the close handshake).
    """

    def __init__(self, url: str, **connect: Any):
        self.sio = socketio.Client(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        self.sio.on("*", lambda event, data=None: self.events.append((event, data)))
        self.sio.connect(url, transports=["polling"], wait_timeout=DEADLINE, **connect)

    def call(self, event: str, *args: Any, namespace: str = "/") -> Any:
        data = args[0] if len(args) == 1 else args
        return self.sio.call(event, data, namespace=namespace, timeout=DEADLINE)

    def call_raw(self, event: str, *args: Any) -> Any:
        """Send `args` as separate arguments, as a hostile client may."""
        done = threading.Event()
        answer: list[Any] = []
        self.sio.emit(event, args, callback=lambda *a: (answer.append(a[0] if a else None), done.set()))
        assert done.wait(DEADLINE), f"no ack for {event}"
        return answer[0]

    def received(self, event: str) -> list[Any]:
        return [data for name, data in self.events if name == event]

    def disconnect(self) -> None:
        """Disconnect, after what was sent before has gone out.

        python-engineio's polling client loses its CLOSE when its write loop is still busy
        with a POST as disconnect() runs (the loop checks the state before it sends): the
        server then hears of it only at the next ping, 25 s on.
        """
        self.sio.eio.queue.join()
        self.sio.disconnect()

    def close(self) -> None:
        if self.sio.connected:
            self.disconnect()
        self.sio.shutdown()


class RawWebSocket:
    """An Engine.IO session over a WebSocket, past the Socket.IO connect, driven frame by frame."""

    def __init__(self, url: str):
        ws_url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        self.ws = websocket.create_connection(ws_url, timeout=DEADLINE)
        self.eio_sid = json.loads(self.ws.recv()[1:])["sid"]
        self.ws.send("40")
        assert self.ws.recv().startswith("40")

    def closed(self) -> bool:
        """True once the server closes the session (Engine.IO `1`, a close frame, or a dropped socket)."""
        try:
            while self.ws.recv() not in ("", "1"):
                pass
        except (websocket.WebSocketException, OSError):
            pass
        return True

    def close(self) -> None:
        self.ws.close(timeout=1)


def polling_session(url: str, namespaces: tuple[str, ...] = ("/",)) -> tuple[str, str]:
    """Open a long-polling Engine.IO session and connect Socket.IO over it; (its URL, its sid)."""
    opened = requests.get(f"{url}/socket.io/?EIO=4&transport=polling", timeout=DEADLINE)
    eio_sid = json.loads(opened.text[1:])["sid"]
    session_url = f"{url}/socket.io/?EIO=4&transport=polling&sid={eio_sid}"
    connects = ["40" if namespace == "/" else f"40{namespace}," for namespace in namespaces]
    assert requests.post(session_url, data="\x1e".join(connects), timeout=DEADLINE).text == "OK"
    # Each connect is answered within the POST: the GET reads every answer at once.
    answers = requests.get(session_url, timeout=DEADLINE).text.split("\x1e")
    assert all(answer.startswith(connect) for answer, connect in zip(answers, connects, strict=True))
    return session_url, eio_sid


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.exc_info]
