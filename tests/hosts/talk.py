"""A talker who broadcasts numbered, timestamped messages, and listeners who note when each
arrives: how the drills beyond one machine measure how long a user heard nothing; and what
an instance's /healthz answers meanwhile."""

from __future__ import annotations

import threading
import time
import urllib.error
from dataclasses import dataclass, field

from lab.apps import healthz
from lab.clients import RecordingClient

TALK_EVERY = 0.1


@dataclass
class Listener:
    """A user through the balancer, with when each broadcast reached it."""

    client: RecordingClient
    instance: str
    heard: list[tuple[float, float, int]] = field(default_factory=list)  # (arrived, sent, n)

    def on_broadcast(self, data: dict) -> None:
        sent, n = data["text"].split("#")
        self.heard.append((time.monotonic(), float(sent), int(n)))

    def deaf_for(self, cut_at: float, until: float) -> float:
        """Seconds from the cut until a message sent after the cut reached it (`until` if none)."""
        after = [arrived for arrived, sent, _ in self.heard if sent > cut_at]
        return (min(after) if after else until) - cut_at


class Talker(threading.Thread):
    """A user who broadcasts `<sent at>#<n>` every TALK_EVERY seconds until stopped."""

    def __init__(self, client: RecordingClient):
        super().__init__(daemon=True)
        self.client = client
        self.stopped = threading.Event()
        self.sent = 0

    def run(self) -> None:
        while not self.stopped.wait(TALK_EVERY):
            self.client.emit("broadcast", {"text": f"{time.monotonic()}#{self.sent}"})
            self.sent += 1


def health(url: str) -> int:
    """The HTTP status of <url>/healthz."""
    try:
        healthz(url, timeout=5)  # it may wait on Redis for its online count (2 s at most)
        return 200
    except urllib.error.HTTPError as error:
        return error.code
