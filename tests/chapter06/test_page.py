"""Chapter 06's page in headless Chromium, offline, behind chapter 04's nginx.conf: what it shows
when its connection drops, when it comes back later than the log keeps messages, and when a
message's live fan-out is lost; its twin antipatterns/06_apply_on_arrival.py beside it."""

from __future__ import annotations

import re

import pytest

from lab.browser import log_line
from lab.clients import RecordingClient
from lab.delivery import Sender, room_log, roomlog
from lab.processes import wait_until

pytestmark = pytest.mark.browser

CHAPTER = "chapters/06_delivery_guarantees/app.py"
TWIN = "antipatterns/06_apply_on_arrival.py"
ROOM = "lobby"
DEADLINE_MS = 10_000
# The page reconnects by itself, with Socket.IO's backoff (up to 5 s between tries).
BACK_MS = 20_000


def join(page, name: str) -> None:
    page.locator("#join-form input[name=username]").fill(name)
    page.locator("#join-form input[name=room]").fill(ROOM)
    page.get_by_role("button", name="Join").click()
    page.get_by_test_id(f"cursor-{ROOM}").wait_for(timeout=DEADLINE_MS)


def type_message(page, text: str) -> None:
    page.locator("#message-form input[name=text]").fill(text)
    page.get_by_role("button", name="Send").click()


def shown(page) -> list[str]:
    """The room's messages, as the page shows them, top to bottom."""
    return page.get_by_test_id("log").locator("li.message").all_text_contents()


def cursor(page) -> str:
    return page.get_by_test_id(f"cursor-{ROOM}").text_content()


def sender(clients, url: str) -> Sender:
    """Bob, a Python client in the room, sending numbered texts, each until acknowledged."""
    bob: RecordingClient = clients("bob").connect(url)
    assert bob.call("join", {"room": ROOM, "name": "bob"})["ok"]
    return Sender(bob, ROOM, with_ids=True)


def go_offline(page) -> None:
    """The browser goes offline: Socket.IO's client closes its connection on the `offline` event
    and tries again with its backoff, each try failing at once until the network is back."""
    # Loaded, the page needs no guard against the internet: it talks to loopback alone. Lifted,
    # because Playwright's routing holds a request made offline instead of failing it (a try
    # could then hang for the client's 20 s connect timeout); Chromium alone fails it at once.
    page.context.unroute("**/*")
    page.context.set_offline(True)
    page.get_by_test_id("status").filter(has_text=re.compile("^disconnected$")).wait_for(timeout=DEADLINE_MS)


def test_a_page_back_from_offline_shows_what_it_missed_once_in_order_and_sends_what_was_typed(
    deploy, open_page, clients
):
    """Back online, the page replays what it missed, shows each message once, in order, and sends its own.

    Behind nginx, two instances: the page goes offline (the browser's offline event), Bob sends
    ten messages, the page's user types one; back online, the page shows the replay, then all
    twelve messages once each in the order of the room's log, and its last id is the room's head.
    """
    deployed = deploy()
    url, redis_url = deployed.url, deployed.redis.url
    page = open_page(url + "/")
    join(page, "alice")
    bob = sender(clients, url)
    bob.send("before")
    log_line(page, "bob: before").wait_for(timeout=DEADLINE_MS)

    go_offline(page)
    type_message(page, "typed while away")
    page.get_by_test_id("outbox").filter(has_text="sending… lobby: typed while away").wait_for(
        timeout=DEADLINE_MS
    )
    away = [f"while away {n}" for n in range(10)]
    for text in away:
        bob.send(text)

    page.context.set_offline(False)
    # What the replay brought (ten, or eleven if the page's own message was stored first),
    # then its own message, stored once and shown in its place.
    log_line(page, "alice: typed while away").wait_for(timeout=BACK_MS)
    replayed = log_line(page, "lobby: replayed").text_content()
    assert re.fullmatch(r"lobby: replayed 1[01] messages", replayed)
    expected = ["bob: before", *(f"bob: {t}" for t in away), "alice: typed while away"]
    assert shown(page) == expected
    assert page.get_by_test_id("log").locator("li.message").evaluate_all(
        "lines => lines.map(l => Number(l.dataset.seq))"
    ) == list(range(1, len(expected) + 1))
    assert cursor(page) == room_log(redis_url).head(ROOM)
    assert page.get_by_test_id("outbox").locator("li").count() == 0


def test_a_page_away_longer_than_the_window_is_told_how_many_messages_it_lost(deploy, open_page, clients):
    """A page away longer than the log keeps messages is told how many it will never see, then chats on.

    LOG_WINDOW_SECONDS=2: Bob sends three messages while the page is offline; once the log has
    dropped them, the page comes back and says "3 messages are no longer available".
    """
    deployed = deploy(LOG_WINDOW_SECONDS="2")
    url, redis_url = deployed.url, deployed.redis.url
    page = open_page(url + "/")
    join(page, "alice")
    bob = sender(clients, url)
    bob.send("first")
    log_line(page, "bob: first").wait_for(timeout=DEADLINE_MS)
    held = cursor(page)

    go_offline(page)
    for n in range(3):
        bob.send(f"gone {n}")
    # The window passes: the log no longer has what follows the page's last id.
    log = room_log(redis_url, window_seconds=2)
    wait_until(
        lambda: isinstance(log.after(ROOM, held, 1), roomlog().Resync),
        timeout=10,
        what="the log to drop the messages the page missed",
    )

    page.context.set_offline(False)
    page.get_by_test_id("log").locator("li.resync").filter(
        has_text="lobby: 3 messages are no longer available"
    ).wait_for(timeout=BACK_MS)
    page.get_by_test_id(f"state-{ROOM}").filter(has_text="· 3 lost").wait_for(timeout=DEADLINE_MS)
    bob.send("after")
    log_line(page, "bob: after").wait_for(timeout=DEADLINE_MS)
    assert shown(page) == ["bob: first", "bob: after"]
    assert cursor(page) == log.head(ROOM)


@pytest.mark.parametrize("script", [CHAPTER, TWIN], ids=["chapter", "twin"])
def test_a_message_whose_live_copy_was_lost_is_shown_once_in_order_only_by_the_chapters_page(
    deploy, open_page, script
):
    """A message never sent live is fetched: the chapter shows it once, in order; the twin, the next twice.

    As a producer whose publish failed leaves it: one message in the room's log, none live.
    The page's next message arrives live beyond the gap; the page fetches the gap. No head
    in between (HEAD_SECONDS is an hour): the gap is found by the live message alone.
    """
    deployed = deploy(script, instances=1, HEAD_SECONDS="3600")
    url, redis_url = deployed.url, deployed.redis.url
    page = open_page(url + "/")
    join(page, "alice")
    log = room_log(redis_url)
    log.append(ROOM, name="carol", text="stored, never sent live", cid="carol-1")

    type_message(page, "sent after it")
    wait_until(lambda: roomlog().seq_of(log.head(ROOM)) == 2, timeout=DEADLINE_MS / 1000, what="it stored")
    head = log.head(ROOM)
    # Once its cursor is the room's head, the page has handled the fetch's replay too.
    cursor_line = page.get_by_test_id(f"cursor-{ROOM}")
    cursor_line.filter(has_text=re.compile(f"^{head}$")).wait_for(timeout=DEADLINE_MS)
    lost, after = "carol: stored, never sent live", "alice: sent after it"
    if script == CHAPTER:
        assert shown(page) == [lost, after]
    else:
        # expected: the two once each, in order; actual: live first, then the replay of both
        assert shown(page) == [after, lost, after]
