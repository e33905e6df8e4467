"""A user's page, as bench/celery_tasks.py drives chapter 05 and its reference: python-socketio's
client, starting no-op reports and stamping each one's ack, first `progress` and `result`."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import requests
import socketio

from lab.clients import in_parallel
from lab.processes import Service

NO_OP = {"steps": 1}  # with STEP_SECONDS=0: one progress event, then the result, no sleep


@dataclass
class Timing:
    """One task as its page saw it, in perf_counter seconds."""

    sent: float
    instance: str
    acked: float | None = None
    task: str | None = None
    progress: float | None = None  # the first `progress` event
    result: float | None = None
    worker: str | None = None  # which worker process ran it: "<hostname>/<pid>"
    refused: str | None = None
    repeats: int = 0  # results after the first: the chapter promises there are none


class Page:
    """One user's page: starts no-op reports and stamps their acks and results as they arrive.

    python-socketio's client runs each handler and ack callback in a thread of its own,
    so the stamps are taken first thing in each, and the rest happens under a lock.
    `on_result(page)` runs after a result is recorded: the tasks-per-second scenario starts
    the page's next task from it.
    """

    def __init__(self, url: str, token: str | None, instance: str):
        self.instance = instance
        self.on_result = Page.ignore
        self._by_task: dict[str, Timing] = {}
        self._early: dict[str, list[tuple[float, str]]] = {}  # results that beat their task's ack
        self._early_progress: dict[str, float] = {}
        self._changed = threading.Condition()
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("progress", self._progress)
        self.sio.on("result", self._result)
        self.sio.connect(url, transports=["websocket"], auth={"token": token}, wait_timeout=10)

    @staticmethod
    def ignore(page: Page) -> None:
        """What a page does after a result when nobody is counting."""

    def start(self) -> Timing:
        timing = Timing(sent=time.perf_counter(), instance=self.instance)
        self.sio.emit("start", NO_OP, callback=lambda reply: self._acked(timing, reply))
        return timing

    def _acked(self, timing: Timing, reply: Any) -> None:
        acked = time.perf_counter()
        with self._changed:
            timing.acked = acked
            if not (isinstance(reply, dict) and reply.get("ok")):
                timing.refused = str(reply)[:200]
            else:
                timing.task = reply["task"]
                self._by_task[timing.task] = timing
                timing.progress = self._early_progress.pop(timing.task, None)
                if early := self._early.pop(timing.task, None):
                    (timing.result, timing.worker), timing.repeats = early[0], len(early) - 1
            self._changed.notify_all()

    def _progress(self, data: Any) -> None:
        arrived = time.perf_counter()
        with self._changed:
            timing = self._by_task.get(data.get("task"))
            if timing is None:
                self._early_progress.setdefault(data.get("task"), arrived)
            elif timing.progress is None:
                timing.progress = arrived

    def _result(self, data: Any) -> None:
        arrived = time.perf_counter()
        with self._changed:
            task, worker = data.get("task"), f"{data.get('worker')}/{data.get('pid')}"
            timing = self._by_task.get(task)
            if timing is None:
                self._early.setdefault(task, []).append((arrived, worker))
            elif timing.result is not None:
                timing.repeats += 1
            else:
                timing.result, timing.worker = arrived, worker
            self._changed.notify_all()
        self.on_result(self)

    def wait(self, timing: Timing, timeout: float) -> bool:
        """Until the task's result (or its refusal) has arrived; False at the deadline."""
        with self._changed:
            return self._changed.wait_for(lambda: timing.result is not None or timing.refused, timeout)

    def close(self) -> None:
        if self.sio.connected:
            self.sio.disconnect()


# What a page that cannot log in or connect raises: the scenario says so and goes no further.
PAGE_ERRORS = (requests.RequestException, socketio.exceptions.ConnectionError)


class Site(Protocol):
    """Where pages open: the chapter's web instances, or the reference's one (which has no login)."""

    webs: list[Service]

    def login(self, user: str) -> str | None: ...


def open_pages(lab: Site, users: list[str]) -> list[Page]:
    """One page per user, spread over the web instances in turn; none left open if one fails."""
    pages: list[Page] = []
    try:
        for i, user in enumerate(users):
            web = lab.webs[i % len(lab.webs)]
            pages.append(Page(web.url, lab.login(user), web.name))
    except PAGE_ERRORS:
        close_pages(pages)
        raise
    return pages


def close_pages(pages: list[Page]) -> None:
    # At once: a websocket disconnect from a live python-engineio server takes seconds by itself.
    in_parallel(Page.close, pages)
