"""Chapter 06 beside its server twins: each twin fails exactly as its docstring says; the chapter does not.

Each test runs one deployment as the chapter runs: two instances and Redis behind chapter 04's
nginx, reached through nginx by lab/delivery.py's ReliableClient, the page's protocol in Python.
"""

from __future__ import annotations

import uuid

import pytest

from lab.clients import address_of_user, emit_through_queue
from lab.delivery import ReliableClient, Sender, tally

CHAPTER = "chapters/06_delivery_guarantees/app.py"
REPLAY_BEFORE_JOIN = "antipatterns/06_replay_before_join.py"
NO_DEDUPE_ON_RETRY = "antipatterns/06_no_dedupe_on_retry.py"
ROOM = "lobby"


def pushed(client: ReliableClient) -> list[dict]:
    """Every room entry the server sent the client, live or in a replay, in the order it arrived."""
    entries = []
    for event, data in list(client.events):
        if event == "message":
            entries.append(data)
        elif event == "replay":
            entries.extend(data["entries"])
    return entries


def shown_texts(client: ReliableClient) -> list[str]:
    """What the client shows of the room, as texts, in its order."""
    text_of = {entry["seq"]: entry["text"] for entry in pushed(client) if entry["room"] == ROOM}
    return [text_of[seq] for seq in client.shown(ROOM)]


def barrier(redis_url: str, client: ReliableClient) -> None:
    """Wait until the client has everything published on the queue before now."""
    marker = uuid.uuid4().hex
    emit_through_queue(redis_url, "barrier", marker)
    client.wait_for_event("barrier", lambda data: data == marker)


@pytest.mark.parametrize(
    ("script", "sent"),
    [pytest.param(CHAPTER, 1, id="chapter"), pytest.param(REPLAY_BEFORE_JOIN, 0, id="replay-before-join")],
)
def test_a_message_stored_between_the_replay_and_the_join(deploy, clients, script, sent):
    """Joined at its connect, a page is sent what is stored after its replay; joining after it, never.

    Both replay what the page missed while away. The twin leaves the rooms to the page's `join`
    after `replay_done`; a message stored in that round trip is in neither the replay nor the
    live fan-out: the server sends it 0 times, where the chapter sends it once. No `head` comes
    in the meantime (HEAD_SECONDS is long), so what the page has is what the server pushed.
    """
    deployed = deploy(script, HEAD_SECONDS="3600")
    url, redis_url = deployed.url, deployed.redis.url
    ann = clients("ann", kind=ReliableClient, source=address_of_user(0)).start(url, [ROOM])
    bob = clients("bob", kind=ReliableClient, source=address_of_user(1)).start(url, [ROOM])
    said = Sender(bob, ROOM, with_ids=True)

    # Ann's connection drops, and Bob says something while she is away.
    ann.sio.reconnection = False  # she comes back when the test says, not after python-socketio's delay
    ann.drop()
    said.send("while away")
    # She comes back with her cursor in `auth`: the connect replays what she missed, then says so.
    ann.connect(url, auth=ann.auth)
    ann.wait_for("her replay to be done", lambda client: client.view(ROOM).replays_done == 1)

    # Bob speaks before her `join`, the twin page's next step, is through.
    said.send("between")
    assert ann.call("join", {"room": ROOM, "name": ann.label})["ok"]
    barrier(redis_url, ann)

    texts = [entry["text"] for entry in pushed(ann)]
    assert texts.count("while away") == 1  # the replay works on both sides
    # expected: "between" sent once, live; actual with the twin: never sent to her
    assert texts.count("between") == sent
    assert tally(shown_texts(ann), said.texts).lost == 1 - sent


@pytest.mark.parametrize(
    ("script", "copies"),
    [pytest.param(CHAPTER, 1, id="chapter"), pytest.param(NO_DEDUPE_ON_RETRY, 2, id="no-dedupe-on-retry")],
)
def test_a_message_sent_again_after_its_ack_was_lost(deploy, clients, script, copies):
    """A message sent again after its ack was lost shows once on every page; with no id check, twice.

    The chapter answers the retry with the first try's id and sends it again under that number,
    which each page drops. The twin stores it again: two numbers, two messages on every page,
    in one order on all of them, and the sender's retry acknowledged under an id of its own.
    """
    url = deploy(script).url
    room = [
        clients(name, kind=ReliableClient, source=address_of_user(i)).start(url, [ROOM])
        for i, name in enumerate(("ann", "bob", "cyd"))
    ]
    ann = room[0]
    said = Sender(ann, ROOM, with_ids=True)
    said.send("before")

    # Ann sends a message and no ack comes back (here she asks for none): it was stored all the same.
    message = {"room": ROOM, "text": "retried", "id": uuid.uuid4().hex}
    ann.emit("message", message)
    for client in room:
        client.wait_for("the message shown", lambda client: "retried" in shown_texts(client))
    first = next(entry["id"] for entry in pushed(ann) if entry["text"] == "retried")
    # Her page sends it again, under the same id, as it does until one try is acknowledged.
    ack = ann.call("message", message)
    said.send("after")

    for client in room:
        client.wait_for("the last message shown", lambda client: "after" in shown_texts(client))
        shown = shown_texts(client)
        # expected: once; actual with the twin: twice, under two numbers
        assert shown.count("retried") == copies, (client.label, shown)
        counts = tally(shown, ["before", "retried", "after"])
        assert (counts.lost, counts.shown_twice, counts.out_of_order) == (0, copies - 1, 0), client.label
        # The chapter sent the retry again under its first number, and the page dropped it.
        assert client.view(ROOM).dropped == 2 - copies, client.label
    assert len({tuple(client.shown(ROOM)) for client in room}) == 1  # one order of numbers on every page
    # The retry's ack: the first try's id (stored once), or an id of its own (stored again).
    assert ack["ok"] and (ack["id"] == first) == (copies == 1)
