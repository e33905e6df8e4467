"""Chapter 05: tasks report to the user who asked, on any instance, across reconnects, once."""

from __future__ import annotations

import itertools
import json
import queue

import requests

from lab.processes import wait_until

TERMINAL = ("result", "failed")


def start(client, **settings):
    """Start a report from a page; the ack carries the task id at once."""
    ack = client.call("start", settings)
    assert ack["ok"], ack
    return ack["task"]


def refusal(url, auth):
    """What a client refused at connect is told: the CONNECT_ERROR packet's data.

    Raw long-polling (open, POST the CONNECT with `auth`, GET the answer): a python-socketio
    client refused over polling waits out gevent's long-poll (25 s) before it returns.
    """
    base = f"{url}/socket.io/?EIO=4&transport=polling"
    sid = json.loads(requests.get(base, timeout=5).text[1:])["sid"]
    connect = "40" + (json.dumps(auth) if auth is not None else "")
    assert requests.post(f"{base}&sid={sid}", data=connect, timeout=5).ok
    answer = requests.get(f"{base}&sid={sid}", timeout=5).text
    assert answer.startswith("44"), answer  # CONNECT_ERROR
    return json.loads(answer[2:])


def events_of(client, task, *names):
    return [(name, data) for name, data in client.events if name in names and data["task"] == task]


def test_progress_then_one_result_for_the_requester_only(start_taskboard):
    """A task's progress arrives in order, then one result, at every page of its user and nobody else's."""
    board = start_taskboard(beat=False)
    ann = board.connect("ann", web=0)
    ann_other_tab = board.connect("ann", web=1)  # the same user on the other instance
    bob = board.connect("bob", web=1)

    task = start(ann, steps=5)
    for page in (ann, ann_other_tab):
        page.wait_for_event("result", lambda data: data["task"] == task, timeout=15)
    board.barrier(ann, ann_other_tab, bob)

    for page in (ann, ann_other_tab):
        progress = [data for name, data in events_of(page, task, "progress")]
        assert [p["percent"] for p in progress] == [20, 40, 60, 80, 100]
        assert [p["stage"] for p in progress] == [
            "fetching",
            "fetching",
            "crunching",
            "crunching",
            "rendering",
        ]
        assert [name for name, _ in events_of(page, task, *TERMINAL)] == ["result"]
    # bob is connected to an instance where ann's events are delivered too, and gets none of them.
    assert not [name for name, data in bob.events if isinstance(data, dict) and data.get("task") == task]
    # Celery stores the task's record once it returns, after the `result` it emitted: wait for it.
    wait_until(lambda: board.state("ann", task) == "SUCCESS", timeout=5, what="SUCCESS in the result backend")


def test_http_start_reaches_the_user_and_refuses_others(start_taskboard):
    """POST /tasks answers 202 with a task id; its events reach the user's pages; others get 404 and 401."""
    board = start_taskboard(workers=1, beat=False)
    ann = board.connect("ann", web=1)

    response = board.http("POST", "/tasks", "ann", json={"steps": 2})
    assert response.status_code == 202, response.text
    task = response.json()["task"]
    ann.wait_for_event("result", lambda data: data["task"] == task, timeout=15)
    wait_until(lambda: board.state("ann", task) == "SUCCESS", timeout=5, what="SUCCESS in the result backend")

    refused = board.http("GET", f"/tasks/{task}", "bob")
    assert (refused.status_code, refused.json()) == (404, {"reason": "no such task of yours"})
    assert board.http("POST", f"/tasks/{task}/cancel", "bob").status_code == 404
    no_token = board.http("POST", "/tasks", None, json={"steps": 2})
    assert (no_token.status_code, no_token.json()) == (401, {"reason": "log in first: no token"})


def test_cancel_stops_the_task_and_says_so(start_taskboard):
    """Cancel stops a task at its next step, queued or running: `failed: cancelled`, no result; owner only."""
    board = start_taskboard(workers=1, beat=False)
    ann, bob = board.connect("ann"), board.connect("bob")
    task = start(ann, steps=20)
    ann.wait_for_event("progress", lambda data: data["task"] == task, timeout=10)
    # The worker's one process is busy with `task`: the next waits in the queue. Its owner was
    # on record before it was queued, so a cancel sent as soon as the ack is back finds it.
    queued = start(ann, steps=5)
    assert ann.call("cancel", {"task": queued}) == {"ok": True, "task": queued}

    assert bob.call("cancel", {"task": task}) == {"ok": False, "reason": "no such task of yours"}
    assert ann.call("cancel", {"task": task}) == {"ok": True, "task": task}
    failed = ann.wait_for_event("failed", lambda data: data["task"] == task, timeout=10)
    assert failed["reason"] == "cancelled"
    failed = ann.wait_for_event("failed", lambda data: data["task"] == queued, timeout=10)
    assert failed["reason"] == "cancelled"
    wait_until(
        lambda: board.state("ann", task) == board.state("ann", queued) == "SUCCESS",
        timeout=5,
        what="both tasks to end",
    )
    board.barrier(ann)
    assert [name for name, _ in events_of(ann, task, *TERMINAL)] == ["failed"]
    assert len(events_of(ann, task, "progress")) < 20
    assert [name for name, _ in events_of(ann, queued, *TERMINAL)] == ["failed"]
    assert events_of(ann, queued, "progress") == []  # stopped at its first check, before any step


def test_a_failing_task_tells_its_user_why(start_taskboard):
    """A task that raises sends `failed` with its reason, once, and Celery records FAILURE."""
    board = start_taskboard(workers=1, beat=False)
    ann = board.connect("ann")
    task = start(ann, steps=3, fail_at=2)
    failed = ann.wait_for_event("failed", lambda data: data["task"] == task, timeout=10)
    assert failed["reason"] == "step 2 of 3 failed"
    wait_until(lambda: board.state("ann", task) == "FAILURE", timeout=5, what="FAILURE in the result backend")
    board.barrier(ann)
    assert [name for name, _ in events_of(ann, task, *TERMINAL)] == ["failed"]


def test_bad_requests_get_a_reason(start_taskboard):
    """No token, a bad token, bad settings, too many tasks on any instance: each is refused, and told why."""
    board = start_taskboard(workers=1, beat=False)
    assert refusal(board.webs[0].url, auth=None) == {"message": "log in first: no token"}
    assert refusal(board.webs[0].url, auth={"token": "ann"}) == {"message": "invalid token"}

    ann = board.connect("ann")
    reason = "'steps' must be a whole number from 1 to 20"
    assert ann.call("start", {"steps": 99}) == {"ok": False, "reason": reason}
    assert ann.wait_for_event("error") == {"event": "start", "reason": reason}
    for _ in range(3):
        start(ann, steps=20)
    # The count is a Redis set, not the instance's memory: ann's page on the other instance is refused.
    ann_on_web_1 = board.connect("ann", web=1)
    refused = ann_on_web_1.call("start", {"steps": 1})
    assert refused == {"ok": False, "reason": "you have 3 tasks running already: wait for one"}


def test_a_page_told_its_task_ended_can_start_the_next_at_once(start_taskboard):
    """A task leaves its user's quota before its `result` goes out: a page at 3 tasks starts one more then."""
    board = start_taskboard(workers=1, beat=False)
    ann = board.connect("ann")
    answers: queue.Queue = queue.Queue()
    started = itertools.count()

    def start_the_next(data):  # the page's move, made as soon as the event is read
        if next(started) < 3:
            ann.sio.emit("start", {"steps": 1}, callback=answers.put)

    ann.sio.on("result", start_the_next)
    for _ in range(3):
        start(ann, steps=1)  # the quota, full
    got = [answers.get(timeout=15) for _ in range(3)]
    assert all(answer["ok"] for answer in got), got


def test_without_a_shared_secret_key_a_token_from_one_instance_is_invalid_on_the_other(start_taskboard):
    """SECRET_KEY unset: each instance makes up its own, and one's token is `invalid token` on the other."""
    board = start_taskboard(workers=0, beat=False, secret_key="")
    board.connect("ann", web=0)  # the token board.token() got from web 0 lets ann in there
    assert refusal(board.webs[1].url, auth={"token": board.token("ann")}) == {"message": "invalid token"}
