"""The delivery drills: each fault on chapter 06 and on chapter 04, the baseline, with counts.

Per receiver: messages lost (acknowledged to the sender, never shown), shown twice, and shown
out of order, against the order the sender's messages were acknowledged in; and, across the
room's receivers, one fingerprint of the order shown. Chapter 06's figure is zero in each, and
every receiver shows one order; chapter 04 loses what the fault hides from it, without a word.
The sums go to pytest's record (`record_property`), which `python -m bench 06` keeps for the page.
"""

from __future__ import annotations

import threading

import redis

from lab.processes import wait_until

RECONNECT_DEADLINE = 10.0  # from a fault until every client it cut off is back
DURING = 5  # messages sent while the receivers are provably away (a bound, and the baseline's loss)


def judge(drill, record_property, **extra: int) -> None:
    """The chapter loses, doubles and misorders nothing, with one order; the baseline loses."""
    tallies = drill.record(record_property, **extra)
    if drill.side.with_ids:
        assert [t for t in tallies if not t.clean()] == []
        assert len({t.fingerprint for t in tallies}) == 1
    else:
        assert sum(t.lost for t in tallies) > 0


class Background:
    """The sender keeps talking, a message every few milliseconds, until told to stop (bounded)."""

    def __init__(self, drill, label: str, limit: int = 400):
        self.drill, self.label, self.limit = drill, label, limit
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self.stop.is_set() and n < self.limit:
            self.drill.sender.send(f"{self.label} {n}")
            n += 1
            self.stop.wait(0.005)  # a pace, not a synchronisation: the stop event ends it

    def __enter__(self) -> Background:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=35)
        assert not self.thread.is_alive(), "the background sender is stuck"


def back(client) -> bool:
    return len(client.received("welcome")) >= 2 and client.sio.connected


def test_a_client_whose_connection_drops_misses_nothing(drill, record_property):
    """Dropped connections: chapter 06's clients show every message once, in order; chapter 04's lose some."""
    drill = drill()
    drill.send(10, "before")
    victims = drill.receivers[::2]
    with Background(drill, "around"):
        for victim in victims:
            victim.drop()
        # Sent while they are away: their reconnect waits at least half a second (python-socketio's
        # backoff), and these take a few milliseconds.
        drill.send(DURING, "during")
        assert not any(v.sio.connected for v in victims)
        wait_until(lambda: all(map(back, victims)), timeout=RECONNECT_DEADLINE, what="every victim back")
    drill.barrier()
    judge(drill, record_property)


def test_the_clients_of_a_killed_instance_miss_nothing(drill, record_property):
    """A SIGKILLed instance behind nginx: chapter 06's clients miss nothing; chapter 04's lose some."""
    drill = drill()
    sender_on = drill.on(drill.sender.client)
    victim = next(s for s in drill.instances if s.name != sender_on)
    orphans = [r for r in drill.receivers if drill.on(r) == victim.name]
    drill.send(10, "before")
    with Background(drill, "around"):
        victim.kill()
        wait_until(
            lambda: all(o.received("disconnect") for o in orphans), timeout=5, what="every orphan cut off"
        )
        drill.send(DURING, "during")
        assert not any(o.sio.connected for o in orphans)  # these were sent while they were away
        wait_until(lambda: all(map(back, orphans)), timeout=RECONNECT_DEADLINE, what="every orphan back")
    assert {drill.on(o) for o in orphans} == {sender_on}
    drill.barrier()
    judge(drill, record_property, orphans=len(orphans))


def test_a_redis_restart_loses_no_acknowledged_message(drill, record_property):
    """Redis SIGKILLed and restarted from its AOF: chapter 06 loses no acknowledged message; chapter 04 does.

    The chapter acknowledges a message once it is in the log (appendfsync always: on disk);
    while Redis is down it answers "retry", and the sender sends it again, under the same id.
    Chapter 04 acknowledges a message once it has been handed to the queue; while Redis is
    down, python-socketio logs "Cannot publish to redis... giving up", and the other instance's
    clients never hear of it.
    """
    drill = drill()
    drill.send(10, "before")
    with Background(drill, "around"):
        drill.redis.kill()
        # While it is down, the sender tries DURING times: the chapter's retries of one message,
        # chapter 04's acknowledged sends of as many.
        tried = drill.sender.attempts
        tries = f"{DURING} sends while Redis is down"
        wait_until(lambda: drill.sender.attempts >= tried + DURING, timeout=5, what=tries)
        drill.redis = drill.bench.restart(drill.redis)
    wait_until(drill.subscribed, timeout=RECONNECT_DEADLINE, what="every instance subscribed again")
    drill.barrier()
    judge(drill, record_property, sender_retries=drill.sender.retries)


def test_a_client_away_longer_than_the_window_is_told_to_resync(drill, record_property):
    """Away past the window: chapter 06 says how many messages are gone, each time; chapter 04 is silent."""
    window = 1.0
    drill = drill(LOG_WINDOW_SECONDS=str(window))
    store = redis.Redis.from_url(drill.redis.url)
    away = drill.receivers[::2]
    rounds = 3
    for n in range(rounds):
        for client in away:
            go_away(client)
        drill.send(DURING, f"round {n}")
        # Away longer than the window, by Redis's own clock (which stamps the log's ids).
        passed = redis_ms(store) + window * 1000
        wait_until(lambda p=passed: redis_ms(store) > p, timeout=window + 5, what="the window to pass")
        for client in away:
            come_back(client, drill.url)
    drill.barrier()
    if drill.side.with_ids:
        for client in away:
            # Each round: one resync, naming the messages gone; nothing else is missing.
            assert client.view("drill").resyncs == [DURING] * rounds, client.label
        told = sum(sum(c.view("drill").resyncs) for c in away)
        tallies = drill.record(record_property, told=told)
        assert sum(t.lost for t in tallies) == told  # every lost message is one the client was told of
        assert sum(t.shown_twice + t.out_of_order for t in tallies) == 0
    else:
        tallies = drill.record(record_property, told=0)
        assert sum(t.lost for t in tallies) == DURING * rounds * len(away)


def redis_ms(store: redis.Redis) -> int:
    seconds, micros = store.time()
    return seconds * 1000 + micros // 1000


def go_away(client) -> None:
    """Lose the connection and stay away: no reconnect until come_back."""
    client.sio.reconnection = False
    client.drop()


def come_back(client, url: str) -> None:
    before = len(client.received("welcome"))
    client.sio.reconnection = True
    client.connect(url, "websocket", auth=client.auth)
    client.wait_for("its welcome", lambda c: len(c.received("welcome")) > before)
