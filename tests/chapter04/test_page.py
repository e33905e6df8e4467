"""Chapter 04's page in a real headless Chromium, offline, through a balancer in front of three instances."""

from __future__ import annotations

import re

import pytest

from lab.browser import log_line
from lab.processes import wait_until

pytestmark = pytest.mark.browser

NGINX = "chapters/04_nginx_lb/nginx.conf"
HAPROXY = "chapters/04_nginx_lb/haproxy.cfg"
DEADLINE_MS = 10_000


def test_page_through_nginx_names_its_instance_and_survives_its_death(deploy, open_page):
    """Through nginx, the page names its instance; when that instance dies, the page moves and chats on."""
    deployment = deploy(NGINX)
    alice, bob = open_page(deployment.url + "/"), open_page(deployment.url + "/")

    # Both pages come from 127.0.0.1, so the hash gives them the same instance.
    first = alice.get_by_test_id("instance").text_content()
    assert first in {s.name for s in deployment.instances}
    for page in (alice, bob):
        page.get_by_test_id("instance").filter(has_text=re.compile(f"^{first}$")).wait_for(
            timeout=DEADLINE_MS
        )
        page.get_by_test_id("transport").filter(has_text="websocket").wait_for(timeout=DEADLINE_MS)
        page.get_by_test_id("online").filter(has_text=re.compile("^2$")).wait_for(timeout=DEADLINE_MS)
    for page, name in ((alice, "alice"), (bob, "bob")):
        page.locator("#join-form input[name=username]").fill(name)
        page.get_by_role("button", name="Join").click()
        page.get_by_test_id("room").filter(has_text="lobby").wait_for(timeout=DEADLINE_MS)

    # Their instance crashes. Both pages reconnect through the same address to another one.
    deployment.instance(first).kill()
    for page in (alice, bob):
        history = page.get_by_test_id("history").filter(has_text=re.compile(rf"^{first} → chat-\d$"))
        history.wait_for(timeout=DEADLINE_MS)
        assert page.get_by_test_id("instance").text_content() != first
        page.get_by_test_id("status").filter(has_text=re.compile("^connected$")).wait_for(timeout=DEADLINE_MS)

    # Each page is back in its room as it connects (its `auth` names the room); the page that
    # comes back second is announced to the first. Then they chat on.
    wait_until(
        lambda: log_line(alice, "bob is back").count() + log_line(bob, "alice is back").count(),
        timeout=DEADLINE_MS / 1000,
        what="one page announced to the other",
    )
    alice.locator("#message-form input[name=text]").fill("still here")
    alice.get_by_role("button", name="Send").click()
    log_line(bob, "alice: still here").wait_for(timeout=DEADLINE_MS)


def test_two_browsers_on_one_address_through_haproxy_each_keep_their_own_instance_by_cookie(
    deploy, open_page
):
    """Through HAProxy, two browsers from one address get two instances, each kept by its SERVERID cookie."""
    deployment = deploy(HAPROXY, balancer="haproxy")
    # Each page is a browser of its own (its own cookie jar); both come from 127.0.0.1.
    pages = [open_page(deployment.url + "/"), open_page(deployment.url + "/")]

    instances = []
    for page in pages:
        # Its polls and its upgrade reached the instance that opened its session: it is on websocket.
        page.get_by_test_id("transport").filter(has_text="websocket").wait_for(timeout=DEADLINE_MS)
        instance = page.get_by_test_id("instance").text_content()
        assert {c["name"]: c["value"] for c in page.context.cookies()}["SERVERID"] == instance
        instances.append(instance)
    assert len(set(instances)) == 2, instances
