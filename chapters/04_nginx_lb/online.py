"""The users online across every instance of the chat, counted in Redis (app.py pushes it).

"How many people are online?" is a question about all instances, so no process can answer
it from its own memory (antipatterns/03_counter_in_process_memory.py tries). Each instance
owns one Redis set of the session ids connected to it, "<channel>:online:<instance>", and is
the only one to write it; the total is the sum of the sets. A set lives `ttl` seconds unless
its instance rewrites it (every `heartbeat_seconds`), so a crashed instance's users drop out
of the count on their own; and after Redis loses its data (a restart), the next rewrite puts
every live user back.
"""

import logging
import threading
import time

import redis
import redis.sentinel
from socketio.redis_manager import parse_redis_sentinel_url

log = logging.getLogger(__name__)


def connect(redis_url, **options):
    """A Redis client for redis:// and rediss://, or for the master that Sentinels name in a
    redis+sentinel://host:port,host:port/db/master URL, the form python-socketio's queue reads."""
    if not redis_url.startswith("redis+sentinel://"):
        return redis.Redis.from_url(redis_url, **options)
    sentinels, master, url_options = parse_redis_sentinel_url(redis_url)
    return redis.sentinel.Sentinel(sentinels, **options, **url_options).master_for(master)


class OnlineCount:
    """This instance's users in Redis, and everyone's count read back from it."""

    def __init__(self, redis_url, *, channel, instance, heartbeat_seconds, push_seconds):
        self.store = connect(redis_url, socket_timeout=2, socket_connect_timeout=2, decode_responses=True)
        self.prefix = f"{channel}:online"  # two clusters on one Redis count apart
        self.instances_key = f"{self.prefix}:instances"  # every instance that ever counted
        self.instance = instance
        self.my_key = f"{self.prefix}:{instance}"  # the set this instance, and only it, writes
        self.heartbeat_seconds = heartbeat_seconds
        # Three missed rewrites, and a crashed instance's users are no longer counted.
        self.ttl = max(1, round(3 * (heartbeat_seconds + push_seconds)))
        # The truth about this instance's own clients; Redis holds everyone's copy of it.
        self.local_sids: set[str] = set()
        # One writer at a time (a greenlet lock, under gevent's patch): writes reach Redis in
        # the order they were decided, so an older snapshot never overwrites a newer one.
        self.write_lock = threading.Lock()
        # Set on every connect and disconnect here: the next update pushes even if the total
        # did not move (a newcomer needs it).
        self.users_changed = threading.Event()
        self.last_total, self.last_rewrite, self.redis_down = None, float("-inf"), False

    def connected(self, sid):
        self.local_sids.add(sid)
        self._record(sid, online=True)

    def disconnected(self, sid):
        self.local_sids.discard(sid)
        self._record(sid, online=False)

    def _record(self, sid, online):
        try:
            self.save(sid, online)
        except redis.RedisError as error:
            # The client is served all the same; the next rewrite fixes the count once Redis is back.
            log.warning("online count: Redis unreachable (%s)", error)
        self.users_changed.set()

    def save(self, sid=None, online=True):
        """Record one connect or disconnect in Redis; with no sid, rewrite the whole set."""
        with self.write_lock:
            pipe = self.store.pipeline()  # MULTI ... EXEC: applied at once, in this order
            if sid is None:
                pipe.delete(self.my_key)
                if self.local_sids:
                    pipe.sadd(self.my_key, *self.local_sids)
            elif online:
                pipe.sadd(self.my_key, sid)
            else:
                pipe.srem(self.my_key, sid)
            pipe.expire(self.my_key, self.ttl)
            pipe.sadd(self.instances_key, self.instance)
            pipe.execute()

    def count(self):
        """Return (version, users online per instance), read from Redis in one snapshot.

        The version is Redis's clock, read in the same transaction: of two counts, the one with
        the later version saw every write the other saw, so the page keeps the latest version.
        """
        names = sorted(self.store.smembers(self.instances_key))
        pipe = self.store.pipeline()
        pipe.time()
        for name in names:
            pipe.scard(f"{self.prefix}:{name}")
        (seconds, microseconds), *counts = pipe.execute()
        version = seconds * 1_000_000 + microseconds
        return version, {name: count for name, count in zip(names, counts, strict=True) if count}

    def update(self):
        """One turn of app.py's push loop: the count to push to this instance's clients, or None.

        Rewrites this instance's set every `heartbeat_seconds` (the first rewrite also forgets
        what a previous run of this instance left in Redis), then reads the count. None when
        nothing moved and nobody came or left here, and while Redis is down.
        """
        changed = self.users_changed.is_set()
        self.users_changed.clear()
        try:
            if time.monotonic() - self.last_rewrite >= self.heartbeat_seconds:
                self.save()
                self.last_rewrite = time.monotonic()
            version, per_instance = self.count()
        except redis.RedisError as error:
            if not self.redis_down:  # one line per outage, not one per turn of the loop
                log.warning("online count: Redis unreachable (%s); retrying", error)
                self.redis_down = True
            self.last_total, self.last_rewrite = None, float("-inf")
            return None
        if self.redis_down:
            log.warning("online count: Redis is back; users rewritten")
            self.redis_down = False
        total = sum(per_instance.values())
        moved, self.last_total = total != self.last_total, total
        if not (changed or moved):
            return None
        return {"count": total, "instances": per_instance, "version": version}
