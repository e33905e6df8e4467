"""Chapter 05: "skip the sender" from a worker. A task has no request, so it has no sender."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from flask_socketio import SocketIO

from lab.processes import wait_until

# The chapter's worker with `include_self=False` in its emits.
SKIPS_SENDER = Path(__file__).with_name("worker_skips_sender.py")


def about(client, task):
    """Every event `client` received about `task`."""
    return [name for name, data in client.events if isinstance(data, dict) and data.get("task") == task]


def test_include_self_false_in_a_worker_fails_the_task_and_nobody_hears(start_taskboard):
    """`include_self=False` in a task: "Working outside of request context", FAILURE, and no page hears."""
    board = start_taskboard(worker_app=str(SKIPS_SENDER), workers=1, beat=False)
    asking, other_tab = board.connect("ann", web=0), board.connect("ann", web=1)
    task = asking.call("start", {"steps": 2})["task"]

    wait_until(lambda: board.state("ann", task) == "FAILURE", timeout=15, what="the task to fail")
    board.barrier(asking, other_tab)
    # expected: the other tab gets the progress and the result; actual: no page gets anything,
    # not even `failed`: the emit that would say so raises too
    assert about(asking, task) == [] and about(other_tab, task) == []
    assert "RuntimeError: Working outside of request context" in board.workers[0].log_text()


def test_skip_sid_from_a_worker_skips_one_connection_not_its_user(start_taskboard):
    """`skip_sid` outside a handler skips the one connection it names; the same page, reconnected, is not."""
    board = start_taskboard(workers=0, beat=False)
    asking, other_tab = board.connect("ann", web=0), board.connect("ann", web=1)
    # What a task has: an app context, the queue, and the sid its handler handed it, if any.
    worker = SocketIO(message_queue=board.redis.url, async_mode="threading")
    sender = asking.sio.get_sid()
    with Flask(__name__).app_context():
        worker.emit("probe", {"n": 1}, to="user:ann", skip_sid=sender)
        board.barrier(asking, other_tab)
        assert [data["n"] for data in asking.received("probe")] == []
        assert [data["n"] for data in other_tab.received("probe")] == [1]

        asking.drop()  # a wifi blip: the page that asked comes back with a new sid
        again = board.connect("ann", web=0)
        worker.emit("probe", {"n": 2}, to="user:ann", skip_sid=sender)
        board.barrier(other_tab, again)
    # expected: the page that asked is skipped; actual: once it reconnects, it is another sid
    assert [data["n"] for data in again.received("probe")] == [2]
    assert [data["n"] for data in other_tab.received("probe")] == [1, 2]
