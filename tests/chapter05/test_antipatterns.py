"""Chapter 05 beside its twins: each twin fails exactly as its docstring says; the chapter does not."""

from __future__ import annotations

import pytest

from lab.processes import REPO_ROOT, wait_until

from .conftest import WEB, WORKER

WORKER_WITHOUT_QUEUE = REPO_ROOT / "antipatterns" / "05_worker_without_queue.py"
EMIT_TO_SID = REPO_ROOT / "antipatterns" / "05_emit_to_sid.py"
DUPLICATE_PRODUCERS = REPO_ROOT / "antipatterns" / "05_duplicate_background_tasks.py"


def results_for(client, task):
    return [data for data in client.received("result") if data["task"] == task]


@pytest.mark.parametrize(
    ("worker_app", "delivered"),
    [
        pytest.param(WORKER, True, id="chapter"),
        pytest.param(WORKER_WITHOUT_QUEUE, False, id="worker-without-queue"),
    ],
)
def test_a_worker_reaches_the_browser_only_through_the_queue(start_taskboard, worker_app, delivered):
    """A worker without message_queue runs the task to SUCCESS, and the page receives nothing of it."""
    board = start_taskboard(worker_app=str(worker_app), workers=1, beat=False)
    ann = board.connect("ann")
    task = ann.call("start", {"steps": 3})["task"]

    # Celery's record says SUCCESS either way: the worker's log and the result backend look fine.
    wait_until(lambda: board.state("ann", task) == "SUCCESS", timeout=15, what="the task to succeed")
    board.barrier(ann)  # anything the worker published before it finished has arrived by now
    progress = [data for data in ann.received("progress") if data["task"] == task]
    if delivered:
        assert len(results_for(ann, task)) == 1 and len(progress) == 3
    else:
        # expected: 3 progress events and a result; actual: nothing at all
        assert results_for(ann, task) == [] and progress == []


# --8<-- [start:reconnect]
@pytest.mark.parametrize(
    ("web", "gets_result"),
    [pytest.param(WEB, True, id="chapter"), pytest.param(EMIT_TO_SID, False, id="emit-to-sid")],
)
def test_a_page_that_reconnects_mid_task(start_taskboard, web, gets_result):
    """To the asking sid, events miss the page that reconnects and the user's other tab; to the room, not."""
    board = start_taskboard(web=str(web), workers=1, beat=False)
    first = board.connect("ann", web=0)
    other_tab = board.connect("ann", web=1)  # the same user in another tab, which asked for nothing
    task = first.call("start", {"steps": 10})["task"]
    first.wait_for_event("progress", lambda data: data["task"] == task, timeout=10)
    old_sid = first.sio.get_sid()
    first.drop()  # a wifi blip: the page comes back with a new sid, here on the other instance
    again = board.connect("ann", web=1)
    assert again.sio.get_sid() != old_sid

    wait_until(lambda: board.state("ann", task) == "SUCCESS", timeout=15, what="the task to succeed")
    board.barrier(again, other_tab)
    if gets_result:
        assert len(results_for(again, task)) == 1
        percents = [data["percent"] for data in again.received("progress") if data["task"] == task]
        assert percents and percents[-1] == 100 and percents == sorted(percents)
        assert len(results_for(other_tab, task)) == 1 and len(other_tab.received("progress")) == 10
    else:
        # expected: the rest of the progress and the result; actual: nothing after the reconnect
        assert results_for(again, task) == [] and again.received("progress") == []
        # expected: the other tab follows the task too; actual: nothing was ever addressed to it
        assert results_for(other_tab, task) == [] and other_tab.received("progress") == []


# --8<-- [end:reconnect]


@pytest.mark.parametrize(
    ("web", "beat", "producers"),
    [
        pytest.param(WEB, True, {"celery beat"}, id="chapter"),
        pytest.param(DUPLICATE_PRODUCERS, False, {"web-1", "web-2"}, id="duplicate-background-tasks"),
    ],
)
def test_one_producer_for_the_whole_cluster(start_taskboard, web, beat, producers):
    """Beat produces each figure once, on /dashboard alone; a producer per web instance, once per instance."""
    board = start_taskboard(web=str(web), workers=1, beat=beat)
    pages = [board.connect("ann", web=0, dashboard=True), board.connect("bob", web=1, dashboard=True)]
    tasks_only = board.connect("cyd", web=0)  # on "/" alone, as a client that never asked for it
    for page in pages:  # 3 seconds' worth, from every producer there is
        page.wait_for("six figures", lambda client: len(client.received("figure")) >= 6, timeout=15)
    # The figure goes to the dashboard's namespace: a connection to "/" alone hears none of it.
    board.barrier(tasks_only)
    assert tasks_only.received("figure") == []

    for page in pages:
        figures = page.received("figure")[:6]
        ticks = [figure["tick"] for figure in figures]
        assert ticks == sorted(set(ticks)), ticks  # one count for the cluster: never a repeat
        # expected: {"celery beat"}; actual with the twin: one producer per web instance
        assert {figure["producer"] for figure in figures} == producers
