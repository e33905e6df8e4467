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

    def probes() -> dict[str, dict]:
        state = requests.get(f"{room}/api/state", timeout=5).json()
        return {side["label"]: side["probe"] for side in state["sides"]}

    wait_until(lambda: probes()["broadcast"]["leaked"] >= 3, timeout=30, what="the twin to leak")
    chapter = probes()["chapter"]
    assert chapter["delivered"] >= 3 and chapter["leaked"] == 0 and chapter["lost"] == 0, chapter
    serve.stop()
