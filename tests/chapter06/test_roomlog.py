"""The room log's promises, one at a time, on a real redis-server; the last two through one app
instance: a burst past its Redis pool, and a lost live copy healed by the head tick.

roomlog.py is the chapter's recipe: what it returns is what a reconnecting page is told.
"""

from __future__ import annotations

import pytest

from lab.apps import start_app
from lab.clients import in_parallel
from lab.delivery import ReliableClient, room_log, roomlog, seq_of
from lab.redis_server import start_redis

START = "0-0"
CHAPTER = "chapters/06_delivery_guarantees/app.py"


@pytest.fixture
def log(bench):
    """A RoomLog on a fresh redis-server, keeping about 100 messages per room."""

    def make(maxlen: int = 100) -> object:
        return room_log(start_redis(bench).url, maxlen=maxlen)

    return make


def say(log, room: str, n: int) -> list[dict]:
    return [log.append(room, name="ann", text=f"m{i}", cid=f"{room}-{i}")[0] for i in range(n)]


def test_each_room_numbers_its_messages_one_by_one_and_a_retry_keeps_its_number(log):
    """Each room numbers its messages 1, 2, 3...; a retried client id gets its first id back, stored once."""
    log = log()
    lobby, other = say(log, "lobby", 3), say(log, "other", 2)
    assert [e["seq"] for e in lobby] == [1, 2, 3] and [e["seq"] for e in other] == [1, 2]
    ids = [e["id"] for e in lobby]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))

    again, retried = log.append("lobby", name="ann", text="m1", cid="lobby-1")
    assert retried and again["id"] == lobby[1]["id"]
    assert [e["seq"] for e in log.after("lobby", START, 10)] == [1, 2, 3]
    assert log.head("lobby") == ids[-1]


def test_a_cursor_past_the_size_bound_is_told_how_many_messages_are_gone(log):
    """Past LOG_MAXLEN: the reader gets Resync with the count of messages gone, then the rest, whole."""
    log = log(maxlen=100)
    say(log, "lobby", 350)
    gone = log.after("lobby", START, 500)
    assert isinstance(gone, roomlog().Resync)
    # MAXLEN ~ trims whole nodes of 100 entries: about 100 kept, never fewer.
    assert 100 <= 350 - gone.lost <= 200
    rest = log.after("lobby", gone.after, 500)
    assert [e["seq"] for e in rest] == list(range(gone.lost + 1, 351))


def test_a_log_that_redis_lost_is_a_resync_with_no_count(log):
    """Redis lost the log (no AOF, a flush): a cursor beyond the room's head gets Resync(lost=None)."""
    log = log()
    cursor = say(log, "lobby", 5)[-1]["id"]
    log.redis.flushall()
    say(log, "lobby", 2)
    reset = log.after("lobby", cursor, 10)
    assert reset == roomlog().Resync(after=START, lost=None)
    assert [e["seq"] for e in log.after("lobby", reset.after, 10)] == [1, 2]


def test_a_burst_past_the_connection_pool_is_stored_whole_none_told_the_log_is_down(bench, clients):
    """200 messages in flight at once on one instance, past its pool's 100 Redis connections: all stored."""
    store = start_redis(bench)
    instance = start_app(bench, CHAPTER, env={"REDIS_URL": store.url, "EVENTS_PER_SECOND": "1000"})
    page = clients("page", kind=ReliableClient).start(instance.url, ["lobby"])
    # Each `message` is handled in a greenlet of its own: all 200 wait on Redis together.
    burst = [{"room": "lobby", "text": f"m{i}", "id": f"burst-{i}"} for i in range(200)]
    acks = in_parallel(lambda message: page.call("message", message, timeout=20), burst)
    assert [ack for ack in acks if not ack.get("ok")] == []
    assert sorted(seq_of(ack["id"]) for ack in acks) == list(range(1, 201))


def test_a_message_whose_live_copy_was_lost_is_shown_within_a_head_tick(bench, clients):
    """A message stored but never sent live (its publish lost) is shown within HEAD_SECONDS, unasked."""
    store = start_redis(bench)
    env = {"REDIS_URL": store.url, "HEAD_SECONDS": "0.5"}
    instance = start_app(bench, CHAPTER, env=env)
    page = clients("page", kind=ReliableClient).start(instance.url, ["lobby"])
    # A producer that stored its message and died before publishing it: the log has it, no page does.
    producer = room_log(store.url)
    entry, _ = producer.append("lobby", name="worker", text="stored, never published", cid="w-1")
    shown = f"message {entry['id']} shown"
    page.wait_for(shown, lambda p: entry["seq"] in p.shown("lobby"), timeout=3)
    assert page.view("lobby").fetches == 1  # one head tick, one fetch
