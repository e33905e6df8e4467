"""Chapter 01 against its antipattern: real server processes, real clients over the network."""

from __future__ import annotations

from collections import Counter

import pytest

from lab.apps import start_app
from lab.clients import TRANSPORTS

CHAPTER = "chapters/01_basic_chat/app.py"
ANTIPATTERN = "antipatterns/01_broadcast_to_everyone.py"
ROOMS = ("red", "green", "blue")

both_sides = pytest.mark.parametrize(
    ("script", "leaks"), [(CHAPTER, False), (ANTIPATTERN, True)], ids=["chapter", "antipattern"]
)


def join_pairs(url, clients, transport):
    """Two clients in each room, every join acknowledged."""
    members = []
    for room in ROOMS:
        for seat in (1, 2):
            client = clients(f"{room}-{seat}").connect(url, transport)
            assert client.call("join", {"room": room, "name": f"{room}-{seat}"})["ok"]
            members.append((room, client))
    return members


def settle(members):
    """Each client sends a marker to its room and waits for its room's markers.

    Everything sent before is already queued for every client, in order, so once the
    markers are in, nothing earlier is still on its way.
    """
    for room, client in members:
        client.call("message", {"room": room, "text": f"marker from {client.label}"})
    for room, client in members:
        peers = {c.label for r, c in members if r == room}
        client.wait_for(
            f"the markers of {sorted(peers)}",
            lambda c, peers=peers: (
                {f"marker from {p}" for p in peers} <= {m["text"] for m in c.received("message")}
            ),
        )


# --8<-- [start:key]
@both_sides
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_room_messages_reach_exactly_the_room(bench, clients, script, leaks, transport):
    """Room messages reach exactly their room's members, once each; the antipattern leaks them everywhere."""
    app = start_app(bench, script)
    members = join_pairs(app.url, clients, transport)

    # Every client says one line to its own room.
    for room, client in members:
        assert client.call("message", {"room": room, "text": f"{client.label} says hi"}) == {"ok": True}
    settle(members)

    everything = Counter(f"{c.label} says hi" for _, c in members)
    for room, client in members:
        got = Counter(m["text"] for m in client.received("message") if "says hi" in m["text"])
        own_room = Counter(f"{c.label} says hi" for r, c in members if r == room)
        # expected: exactly the two lines of its own room; the antipattern: all six.
        assert got == (everything if leaks else own_room), client.label
    # --8<-- [end:key]


@both_sides
def test_join_and_leave_are_announced(bench, clients, script, leaks):
    """Joining and leaving a room is announced to that room only, and so is a disconnect."""
    app = start_app(bench, script)
    alice = clients("alice").connect(app.url)
    outsider = clients("outsider").connect(app.url)
    alice.call("join", {"room": "tea", "name": "alice"})
    outsider.call("join", {"room": "coffee", "name": "outsider"})

    bob = clients("bob").connect(app.url)
    bob.call("join", {"room": "tea", "name": "bob"})
    alice.wait_for_event("system", lambda m: m["text"] == "bob joined tea")
    assert bob.call("leave", {"room": "tea"}) == {"ok": True, "room": "tea"}
    alice.wait_for_event("system", lambda m: m["text"] == "bob left tea")

    bob.call("join", {"room": "tea", "name": "bob"})
    bob.disconnect()
    if not leaks:
        alice.wait_for(
            "bob to leave twice",
            lambda c: c.received("system").count({"room": "tea", "text": "bob left tea"}) == 2,
        )
    settle([("tea", alice), ("coffee", outsider)])
    announcements = [m["text"] for m in outsider.received("system") if "bob" in m["text"]]
    # expected: the coffee room hears nothing of tea; the antipattern broadcasts it all.
    assert bool(announcements) is leaks, announcements


BAD_PAYLOADS = [
    # One line per class of bad input: (event, payload, the reason the sender is given).
    pytest.param("message", "hello", "payload must be an object", id="string"),
    pytest.param("message", ["tea", "hi"], "payload must be an object", id="list"),
    pytest.param("message", None, "payload must be an object", id="no-payload"),
    pytest.param("message", {"text": "hi"}, "missing key 'room'", id="missing-key"),
    pytest.param("message", {"room": "tea", "text": 42}, "'text' must be a string", id="wrong-type"),
    pytest.param("message", {"room": "tea", "text": "   "}, "'text' must not be empty", id="empty"),
    pytest.param(
        "message", {"room": "tea", "text": "x" * 501}, "'text' is longer than 500 characters", id="too-long"
    ),
    pytest.param(
        "message",
        {"room": "elsewhere", "text": "hi"},
        "join room 'elsewhere' before writing to it",
        id="room-not-joined",
    ),
    pytest.param("join", {"room": "tea"}, "missing key 'name'", id="join-missing-name"),
    pytest.param(
        "join", {"room": "t" * 33, "name": "eve"}, "'room' is longer than 32 characters", id="join-long-room"
    ),
    pytest.param("leave", {"room": "nowhere"}, "you are not in room 'nowhere'", id="leave-unknown-room"),
]


@pytest.mark.parametrize(("event", "payload", "reason"), BAD_PAYLOADS)
def test_bad_payload_gets_an_error_and_harms_no_one(bench, clients, event, payload, reason):
    """A bad payload earns its sender an error event with the reason, and everyone else keeps chatting."""
    app = start_app(bench, CHAPTER)
    alice, bob, eve = (clients(n).connect(app.url) for n in ("alice", "bob", "eve"))
    for client in (alice, bob, eve):
        client.call("join", {"room": "tea", "name": client.label})

    # Eve sends the bad payload: she alone hears why it was refused.
    assert eve.call(event, payload) == {"ok": False, "reason": reason}
    assert eve.wait_for_event("error") == {"event": event, "reason": reason}

    # The room goes on, Eve included.
    alice.call("message", {"room": "tea", "text": "still here"})
    eve.call("message", {"room": "tea", "text": "me too"})
    settle([("tea", alice), ("tea", bob), ("tea", eve)])
    for client in (alice, bob, eve):
        assert {"still here", "me too"} <= {m["text"] for m in client.received("message")}
    assert alice.received("error") == bob.received("error") == []
    assert app.alive()
