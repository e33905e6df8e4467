"""The control room on hosts: `nox -s serve -- 04 --hosts`, where an instructor cuts an instance
from Redis live, and its /healthz says so or, for the twin, does not."""

from __future__ import annotations

import os

import requests

from lab import netns
from lab.deps import MissingDependency
from lab.processes import wait_until
from tests.hosts.talk import health


def gateway_links() -> set[str]:
    return {name for name in os.listdir("/sys/class/net") if name.startswith("labgw")}


def test_an_instructor_cuts_an_instance_from_redis_and_heals_it(serving):
    """`serve 04 --hosts`: "cut from Redis" turns the chapter's /healthz 503, not the twin's; "heal" ends it.

    Each process runs on a host of its own, and Ctrl-C leaves no link behind.
    """
    reason = netns.unavailable()
    if reason:
        raise MissingDependency(f"serve --hosts runs on network namespaces: {reason}")
    before = gateway_links()
    serve = serving("04", "--hosts")
    room = serve.control_room()
    state = requests.get(f"{room}/api/state", timeout=5).json()
    services = {s["name"]: s for side in state["sides"] for s in side["services"]}
    chapter, twin = services["chapter-1"], services["healthz-deaf-1"]
    assert chapter["cut"] is False and twin["cut"] is False
    assert not chapter["url"].startswith("http://127.")  # on a host of its own
    assert services["chapter-redis"]["cut"] is None  # only an instance is cut from its Redis

    for name in ("chapter-1", "healthz-deaf-1"):
        assert requests.post(f"{room}/api/services/{name}/cut", json={}, timeout=5).status_code == 200
    wait_until(
        lambda: health(chapter["url"]) == 503, timeout=15, what="the chapter's instance to say it is deaf"
    )
    assert health(twin["url"]) == 200  # as deaf, and green
    cut = {
        s["name"]: s["cut"]
        for side in requests.get(f"{room}/api/state", timeout=5).json()["sides"]
        for s in side["services"]
    }
    assert cut["chapter-1"] is True and cut["healthz-deaf-1"] is True

    requests.post(f"{room}/api/services/chapter-1/heal", json={}, timeout=5)
    wait_until(lambda: health(chapter["url"]) == 200, timeout=15, what="the chapter's instance to hear again")
    serve.stop()
    wait_until(lambda: gateway_links() <= before, timeout=10, what="serve's network to go")
