"""Each room's log in Redis: a stream written before the live fan-out, read back on a reconnect.

An entry's id is `<ms>-<seq>`: `seq` counts the room's messages 1, 2, 3... with no gaps, so a
client that holds 7 and then sees 9 knows it misses 8; `ms` is Redis's clock, never going back,
so `XTRIM MINID` can drop what is older than the window. Stream ids must only grow (XADD refuses
anything else), and both parts do. The client keeps the last id it applied per room (its cursor)
and sends it back on a reconnect; the server replays what follows it.

Retention: the newest MAXLEN entries (approximately: Redis trims whole nodes) and none older than
WINDOW. Whoever asks for what is gone is told how many messages it will never see (`Resync`),
never left with a silent gap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import redis

# --8<-- [start:append]
# One script, so the three steps happen as one: nothing else runs in Redis in between.
# A message already stored under this client id (the sender retried after a lost ack) is
# not stored again; its first id is returned.
APPEND = """
local stored = redis.call('GET', KEYS[3])
if stored then return {stored, 1} end
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
ms = math.max(ms, tonumber(redis.call('HGET', KEYS[2], 'ms') or '0'))
local seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
redis.call('HSET', KEYS[2], 'ms', ms)
local id = ms .. '-' .. seq
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], id, 'name', ARGV[4], 'text', ARGV[5], 'cid', ARGV[6])
redis.call('XTRIM', KEYS[1], 'MINID', ms - tonumber(ARGV[2]))
redis.call('SET', KEYS[3], id, 'EX', ARGV[3])
return {id, 0}
"""
# --8<-- [end:append]

# --8<-- [start:read]
# What follows a cursor: first drop what is older than the window (so a client away longer
# than it is told so, however quiet the room has been since), then the room's head and the
# next entries. Returns {head seq, entries}.
READ = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('XTRIM', KEYS[1], 'MINID', ms - tonumber(ARGV[3]))
local head = tonumber(redis.call('HGET', KEYS[2], 'seq') or '0')
return {head, redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])}
"""
# --8<-- [end:read]

CURSOR = re.compile(r"^\d{1,15}-\d{1,15}$")
START = "0-0"  # the cursor of a client that has seen nothing of a room


def seq_of(entry_id: str) -> int:
    return int(entry_id.split("-")[1])


@dataclass(frozen=True)
class Resync:
    """The log cannot make this client whole: `lost` messages are gone (None: Redis lost the log).

    The client applies what follows `after` and tells its user what it cannot show.
    """

    after: str
    lost: int | None


class RoomLog:
    def __init__(self, url: str, *, prefix: str, maxlen: int, window_seconds: float, dedupe_seconds: int):
        # A blocking pool: past its connections, a command waits for one to be free. redis-py's
        # default pool refuses the 101st command in flight (MaxConnectionsError), and a burst of
        # messages would be told "the log is unavailable" when it is only busy.
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=100, timeout=5, decode_responses=True
        )
        self.redis = redis.Redis(connection_pool=pool)
        self.prefix = prefix
        self.maxlen = maxlen
        self.window_ms = int(window_seconds * 1000)
        self.dedupe_seconds = dedupe_seconds
        self._append = self.redis.register_script(APPEND)
        self._read = self.redis.register_script(READ)

    def keys(self, room: str) -> tuple[str, str]:
        # {room} is a hash tag: on a Redis Cluster a room's keys would share one slot.
        return f"{self.prefix}:log:{{{room}}}", f"{self.prefix}:log:{{{room}}}:meta"

    def append(self, room: str, *, name: str, text: str, cid: str) -> tuple[dict, bool]:
        """Store one message; return its entry and whether it was stored already (a retry).

        Raises redis.RedisError when Redis does not answer: then nothing was acknowledged,
        and the sender keeps the message to send again.
        """
        stream, meta = self.keys(room)
        sent = f"{self.prefix}:sent:{{{room}}}:{cid}"
        args = [self.maxlen, self.window_ms, self.dedupe_seconds, name, text, cid]
        entry_id, retried = self._append(keys=[stream, meta, sent], args=args)
        return self.entry(room, entry_id, {"name": name, "text": text, "cid": cid}), bool(retried)

    def entry(self, room: str, entry_id: str, fields: dict) -> dict:
        return {"room": room, "id": entry_id, "seq": seq_of(entry_id), **fields}

    def head(self, room: str) -> str:
        """The id of the room's last message: where a client that joins now starts."""
        ms, seq = self.redis.hmget(self.keys(room)[1], "ms", "seq")
        return f"{ms}-{seq}" if seq else START

    # --8<-- [start:after]
    def after(self, room: str, cursor: str, count: int) -> list[dict] | Resync:
        """Up to `count` entries after `cursor`, or a Resync when some of them are gone."""
        stream, meta = self.keys(room)
        head, rows = self._read(keys=[stream, meta], args=[cursor, count, self.window_ms])
        # A script gets each entry's fields as one flat list: name, value, name, value...
        entries = [self.entry(room, i, dict(zip(f[::2], f[1::2], strict=True))) for i, f in rows]
        last = seq_of(cursor)
        if head < last:  # the log restarted below this cursor: Redis lost it (no AOF?)
            return Resync(after=START, lost=None)
        first = entries[0]["seq"] if entries else head + 1
        if first > last + 1:  # trimmed: by size or by age
            ms = entries[0]["id"].split("-")[0] if entries else "0"
            return Resync(after=f"{ms}-{first - 1}", lost=first - last - 1)
        return entries

    # --8<-- [end:after]
