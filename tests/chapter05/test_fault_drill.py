"""Chapter 05's fault drill: a worker process killed mid-task, and Redis restarted mid-task."""

from __future__ import annotations

import os
import signal

from lab.processes import wait_until


def test_a_task_whose_worker_dies_runs_again_and_reports_once(start_taskboard):
    """SIGKILL the process running a task: another runs it again (attempt 2) and the user gets one result."""
    board = start_taskboard(workers=2, beat=False)
    ann = board.connect("ann")
    task = ann.call("start", {"steps": 10})["task"]
    first = ann.wait_for_event("progress", lambda data: data["task"] == task, timeout=10)

    # The prefork process running the task dies as in an OOM kill. Its worker notices at once;
    # with task_reject_on_worker_lost the message goes back to the queue (acks_late kept it there).
    os.kill(first["pid"], signal.SIGKILL)
    result = ann.wait_for_event("result", lambda data: data["task"] == task, timeout=20)
    board.barrier(ann)

    assert result["attempt"] == 2 and result["pid"] != first["pid"]
    assert len([data for data in ann.received("result") if data["task"] == task]) == 1
    attempts = [data["attempt"] for data in ann.received("progress") if data["task"] == task]
    # Progress repeats from the start, marked attempt 2: the page says so instead of jumping back.
    assert attempts[0] == 1 and attempts[-10:] == [2] * 10, attempts
    assert "WorkerLostError" in "".join(worker.log_text() for worker in board.workers)


def test_redis_restarted_mid_task(start_taskboard):
    """Redis restarted mid-task: the page misses some progress, the task goes on, and one result arrives."""
    board = start_taskboard(workers=1, beat=False)
    ann = board.connect("ann")
    steps = 16
    task = ann.call("start", {"steps": steps})["task"]
    ann.wait_for_event("progress", lambda data: data["task"] == task, timeout=10)

    # Redis stops and comes back empty (no persistence): broker, results and queue at once. It
    # stays down until a step's cancel check has met it down: the task logs that and goes on.
    board.bench.stop(board.redis)
    worker = board.workers[0]
    wait_until(
        lambda: "cancel check skipped: Redis unreachable" in worker.log_text(), timeout=10, what="a check"
    )
    board.bench.restart(board.redis)
    result = ann.wait_for_event("result", lambda data: data["task"] == task, timeout=30)
    board.barrier(ann)

    percents = [data["percent"] for data in ann.received("progress") if data["task"] == task]
    # Whatever the worker published before the web instances subscribed again reached nobody.
    assert len(percents) < steps and percents == sorted(percents), percents
    assert result["attempt"] == 1
    assert len([data for data in ann.received("result") if data["task"] == task]) == 1
    # The page's web instance lost its subscription and said when it would try again:
    # python-socketio's first retry, a second later (then 2, 4 ... s, while Redis is still down).
    assert "Cannot receive from redis... retrying in 1 secs" in board.webs[0].log_text()
