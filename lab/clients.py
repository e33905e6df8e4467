"""Real python-socketio clients that record what they receive, for tests to wait on."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import socketio
from engineio.payload import Payload

# python-engineio's client drops a long-polling connection when one poll brings more than
# 16 packets ("Unexpected packet from server, aborting"; python-engineio#142). A busy test
# server easily queues more than that for a client between two polls.
Payload.max_decode_packets = 1000

TRANSPORTS = ("websocket", "polling")


class RecordingClient:
    """A python-socketio client over one transport that records every event it receives.

    Tests wait on what it has received with a deadline (`wait_for`), never with
    a bare sleep.
    """

    def __init__(self, label: str = "client"):
        self.label = label
        self.sio = socketio.Client(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        self._changed = threading.Condition()
        self.sio.on("*", self._record)

    def _record(self, event: str, data: Any = None) -> None:
        with self._changed:
            self.events.append((event, data))
            self._changed.notify_all()

    def connect(self, url: str, transport: str = "websocket", timeout: float = 10) -> RecordingClient:
        self.sio.connect(url, transports=[transport], wait_timeout=timeout)
        if self.sio.transport() != transport:
            raise AssertionError(f"{self.label} asked for {transport}, got {self.sio.transport()}")
        return self

    def disconnect(self) -> None:
        if self.sio.connected:
            self.sio.disconnect()

    def call(self, event: str, data: Any = None, timeout: float = 5) -> Any:
        """Emit and wait for the server's acknowledgement."""
        return self.sio.call(event, data, timeout=timeout)

    def emit(self, event: str, data: Any = None) -> None:
        self.sio.emit(event, data)

    def received(self, event: str) -> list[Any]:
        with self._changed:
            return [data for name, data in self.events if name == event]

    def wait_for(self, what: str, condition: Callable[[RecordingClient], bool], timeout: float = 5) -> None:
        """Block until `condition(self)` holds, or fail naming `what` and what did arrive."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"{self.label}: timed out after {timeout}s waiting for {what}; "
                        f"received {self.events!r}"
                    )
                self._changed.wait(remaining)

    def wait_for_event(
        self, event: str, predicate: Callable[[Any], bool] = lambda data: True, timeout: float = 5
    ) -> Any:
        """Wait for one `event` whose payload satisfies `predicate`, and return that payload."""
        found: list[Any] = []

        def arrived(client: RecordingClient) -> bool:
            found[:] = [data for data in client.received(event) if predicate(data)]
            return bool(found)

        self.wait_for(f"a {event!r} event", arrived, timeout)
        return found[0]


def disconnect_all(clients: Sequence[RecordingClient]) -> None:
    """Disconnect every client at once: from a live python-engineio server, one websocket
    disconnect takes about 3 s by itself, so doing them in turn adds up."""
    with ThreadPoolExecutor(max_workers=max(1, len(clients))) as pool:
        list(pool.map(RecordingClient.disconnect, clients))
