"""The control room of `nox -s serve -- NN`, in headless Chromium: it draws the real topology,
its buttons act on the real processes, and its counters show a twin losing what the chapter delivers."""

from __future__ import annotations

import re

import psutil
import requests

from lab.processes import wait_until
from lab.redis_server import ping

DEADLINE_MS = 20_000


def figure(page, testid: str) -> int:
    text = page.get_by_test_id(testid).inner_text()
    return int(text) if text.isdigit() else 0


def service(state: dict, name: str) -> dict:
    return next(s for side in state["sides"] for s in side["services"] if s["name"] == name)


def probes(room: str) -> dict[str, dict]:
    """Each side's probe figures, by side label, as the page reads them."""
    state = requests.get(f"{room}/api/state", timeout=5).json()
    return {side["label"]: side["probe"] for side in state["sides"]}


def test_the_redis_button_stops_and_restarts_the_real_redis_while_the_twin_loses_messages(serving, browser):
    """serve 03: every side drawn live; the Redis button stops and restarts the real redis-server."""
    serve = serving("03")
    room = serve.control_room()
    page = browser.new_page()
    try:
        page.goto(room)
        # The topology, drawn from the real processes: both instances of every side, and their Redis.
        for name in ["chapter-redis", "chapter-1", "chapter-2", "no-queue-1", "counter-in-memory-2"]:
            page.get_by_test_id(f"state-{name}").filter(has_text=re.compile("^up$")).wait_for(
                timeout=DEADLINE_MS
            )
        # Each side's pages are embedded, one per instance: six frames.
        assert page.locator("iframe").count() == 6

        # The probes' counters move: the chapter delivers everything, the no-queue twin loses some.
        wait_until(
            lambda: figure(page, "chapter-delivered") >= 6 and figure(page, "no-queue-lost") >= 2,
            timeout=30,
            what="the counters to move",
        )
        assert figure(page, "chapter-lost") == 0
        assert figure(page, "no-queue-lost") > 0

        # Stop Redis from the page: the real process goes, and the page says so.
        redis = service(requests.get(f"{room}/api/state", timeout=5).json(), "chapter-redis")
        page.get_by_test_id("service-chapter-redis").get_by_role("button", name="stop").click()
        page.get_by_test_id("state-chapter-redis").filter(has_text="stopped").wait_for(timeout=DEADLINE_MS)
        assert not psutil.pid_exists(redis["pid"]) or psutil.Process(redis["pid"]).status() == "zombie"
        assert not ping_or_false(redis["port"])
        # With the queue down, the chapter loses messages too (python-socketio gives up publishing).
        wait_until(lambda: figure(page, "chapter-lost") > 0, timeout=30, what="the chapter to lose messages")

        # Start it again: the same port answers PING, and the page shows it up.
        page.get_by_test_id("service-chapter-redis").get_by_role("button", name="start").click()
        page.get_by_test_id("state-chapter-redis").filter(has_text=re.compile("^up$")).wait_for(
            timeout=DEADLINE_MS
        )
        assert ping(redis["port"])
    finally:
        page.close()
    serve.stop()


def ping_or_false(port: int) -> bool:
    try:
        return ping(port)
    except OSError:
        return False


def test_the_buttons_act_only_on_what_the_bench_started_and_only_for_the_page(serving):
    """A fault button refuses a foreign Origin, a non-JSON body and a name the bench did not start."""
    serve = serving("01", "--twin", "broadcast")
    room = serve.control_room()
    chapter = service(requests.get(f"{room}/api/state", timeout=5).json(), "chapter-1")

    # Another web page open in the instructor's browser cannot press a button.
    foreign = requests.post(
        f"{room}/api/services/chapter-1/kill", json={}, headers={"Origin": "http://example.com"}, timeout=5
    )
    assert foreign.status_code == 403 and "foreign Origin" in foreign.json()["error"]
    # A plain form post (no CORS preflight) is refused too.
    form = requests.post(f"{room}/api/services/chapter-1/kill", data={"a": "b"}, timeout=5)
    assert form.status_code == 403
    # Only names the bench started: no pids, no other processes.
    unknown = requests.post(f"{room}/api/services/{chapter['pid']}/kill", json={}, timeout=5)
    assert unknown.status_code == 404
    assert psutil.pid_exists(chapter["pid"])

    # The page's own request kills it, and start brings it back on the same port.
    killed = requests.post(f"{room}/api/services/chapter-1/kill", json={}, timeout=5).json()
    assert killed["state"] == "stopped"
    started = requests.post(f"{room}/api/services/chapter-1/start", json={}, timeout=30).json()
    assert started["state"] == "up" and started["port"] == chapter["port"]
    serve.stop()


def test_a_twin_that_never_listens_is_shown_hanging_with_its_warning(serving):
    """serve 02: the late-monkey-patch twin is shown as "not listening", its log holding gevent's warning."""
    serve = serving("02", "--twin", "late-patch")
    room = serve.control_room()
    wait_until(
        lambda: "MonkeyPatchWarning" in requests.get(f"{room}/api/services/late-patch-1/log", timeout=5).text,
        timeout=30,
        what="gevent's warning in the twin's log",
    )
    state = requests.get(f"{room}/api/state", timeout=5).json()
    assert service(state, "late-patch-1")["state"] == "not listening"
    assert service(state, "chapter-1")["state"] == "up"
    serve.stop()


def test_a_hundred_clients_join_a_side_and_leave_it(serving):
    """The "add 100 clients" button connects 100 real clients to a side; the topology counts them."""
    serve = serving("01", "--twin", "broadcast")
    room = serve.control_room()
    crowd = requests.post(f"{room}/api/sides/chapter/crowd", json={"add": 100}, timeout=60).json()
    assert crowd == {"asked": 100, "connected": 100}
    state = requests.get(f"{room}/api/state", timeout=5).json()
    assert service(state, "chapter-1")["connections"] >= 100
    assert requests.post(f"{room}/api/sides/chapter/crowd", json={"add": 0}, timeout=60).json()["asked"] == 0
    serve.stop()


def test_the_broadcast_twins_messages_leak_to_the_probe_outside_the_room(serving):
    """serve 01: the probe in another room hears the broadcast twin's messages, never the chapter's."""
    serve = serving("01", "--twin", "broadcast")
    room = serve.control_room()
    wait_until(lambda: probes(room)["broadcast"]["leaked"] >= 3, timeout=30, what="the twin to leak")
    chapter = probes(room)["chapter"]
    assert chapter["delivered"] >= 3 and chapter["leaked"] == 0 and chapter["lost"] == 0, chapter
    serve.stop()


def test_behind_round_robin_nginx_no_probe_connects_while_sticky_nginx_delivers(serving):
    """serve 04: through sticky nginx every polling probe is in the room; through round-robin nginx none."""
    serve = serving("04", "--twin", "round-robin")
    room = serve.control_room()
    wait_until(lambda: probes(room)["chapter"]["in_room"] == "2/2", timeout=45, what="both chapter probes in")
    before = probes(room)["chapter"]
    wait_until(
        lambda: probes(room)["chapter"]["sent"] >= before["sent"] + 10,
        timeout=45,
        what="ten more probe messages on the chapter",
    )
    chapter, round_robin = probes(room)["chapter"], probes(room)["round-robin"]
    assert chapter["in_room"] == "2/2" and chapter["lost"] == 0, chapter
    # Each of the ten reached both probes (the last one may still be on its way).
    assert chapter["delivered"] >= before["delivered"] + 2 * 9, chapter
    # Each long-polling request lands on another instance, which does not know the session
    # (400 Invalid session): every connect fails, and no probe gets into the room.
    assert round_robin["sent"] == 0 and round_robin["in_room"] == "0/2", round_robin
    assert round_robin["failed_connects"] >= 2 and round_robin["connects"] == 0, round_robin
    serve.stop()


def test_serve_05_counts_results_and_figures_and_each_twin_fails_its_own_way(serving):
    """serve 05: each user's pages get every result, one figure a second; each twin fails its own way."""
    serve = serving("05")
    assert set(serve.urls()) == {
        "chapter-1",
        "chapter-2",
        "no-queue-1",
        "emit-to-sid-1",
        "emit-to-sid-2",
        "duplicates-1",
        "duplicates-2",
    }, serve.output
    room = serve.control_room()

    def moved(figures: dict[str, dict]) -> bool:
        return (
            figures["chapter"]["delivered"] >= 6
            and figures["no-queue"]["lost"] >= 2
            and figures["emit-to-sid"]["lost"] >= 2
            and figures["duplicates"]["delivered"] >= 2
        )

    wait_until(lambda: moved(probes(room)), timeout=60, what="every side's counters to move")
    figures = probes(room)
    chapter, no_queue, emit_to_sid, duplicates = (
        figures[side] for side in ("chapter", "no-queue", "emit-to-sid", "duplicates")
    )
    # The chapter: each result reaches both pages of the user, never the other user; beat alone
    # produces the dashboard figure, about once a second.
    assert chapter["lost"] == 0 and chapter["leaked"] == 0, chapter
    assert chapter["producers"] == 1 and 0.6 <= chapter["figures_per_s"] <= 1.4, chapter
    # no-queue: the worker emits into its own process; no result, no figure reaches a page.
    assert no_queue["delivered"] == 0 and no_queue["figures_per_s"] == 0, no_queue
    # emit-to-sid: only the page that started a task hears its result, not the user's other page.
    assert emit_to_sid["delivered"] > 0 and emit_to_sid["lost"] > 0, emit_to_sid
    # duplicates: results are fine, but each instance produces its own figure: two a second.
    assert duplicates["lost"] == 0 and duplicates["producers"] == 2, duplicates
    assert duplicates["figures_per_s"] >= 1.6, duplicates

    # Kill a worker from the page: the real process goes, and the other worker carries on.
    worker = service(requests.get(f"{room}/api/state", timeout=5).json(), "chapter-worker-1")
    killed = requests.post(f"{room}/api/services/chapter-worker-1/kill", json={}, timeout=10).json()
    assert killed["state"] == "stopped" and not psutil.pid_exists(worker["pid"])
    delivered = probes(room)["chapter"]["delivered"]
    wait_until(
        lambda: probes(room)["chapter"]["delivered"] >= delivered + 4,
        timeout=30,
        what="the other worker to carry on",
    )
    serve.stop()
