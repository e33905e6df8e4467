"""Antipattern 06: a retried message stored again, with no check of the client's id for it.

What it does
    Chapter 06's server, run as it is, with one definition of its roomlog.py
    changed: `APPEND`, the script that stores a room message, no longer looks
    up the id the client gave the message before storing it. The id is still
    stored with the entry (`cid`); nothing reads it.

Why is this bad?
    A client whose message got no acknowledgement cannot tell whether the
    message was lost on its way in or the ack on its way out: a dropped
    connection, an instance killed after its write, a timeout on a slow
    network. So it sends the message again, with the same id, until one is
    acknowledged; that is how nothing typed offline is lost. Without the
    check, each retry of a message that was stored the first time is stored
    again, under a number of its own. Every client of the room, the sender's
    own page included, shows it twice, and every replay to come does too. No
    client can drop the copy: two numbers are two messages.

    Expected: stored once, the retry answered with the first try's id.
    Actual: stored once per try, each under a new number.

Use instead
    chapters/06_delivery_guarantees/roomlog.py `APPEND`: the client's id is a
    key in Redis (`<channel>:sent:{room}:<id>`, kept DEDUPE_SECONDS), read and
    written in the same script as the XADD, so a retry gets the first id back
    and is stored once.

How to run it
    In place of the chapter's app.py, with its Redis and nginx (the chapter's app.py says how):
    PORT=5001 INSTANCE_NAME=chat-1 python antipatterns/06_no_dedupe_on_retry.py
    PORT=5002 INSTANCE_NAME=chat-2 python antipatterns/06_no_dedupe_on_retry.py
    PORT=5003 INSTANCE_NAME=chat-3 python antipatterns/06_no_dedupe_on_retry.py

Differs from chapters/06_delivery_guarantees/roomlog.py
    APPEND: stores every message it is sent, retries included
"""

import runpy
import sys
from pathlib import Path

# The chapter's folder: its modules, and its app.py, which this file runs unchanged.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "chapters" / "06_delivery_guarantees"))
import gevent_patch  # noqa: F401  (first, as in the chapter's app.py)
import roomlog

# --8<-- [start:append]
APPEND = """
-- expected: GET KEYS[3] first, and a client id stored already returns its first id;
-- actual: no look-up, so a retry is stored again, under the next number
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
ms = math.max(ms, tonumber(redis.call('HGET', KEYS[2], 'ms') or '0'))
local seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
redis.call('HSET', KEYS[2], 'ms', ms)
local id = ms .. '-' .. seq
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], id, 'name', ARGV[4], 'text', ARGV[5], 'cid', ARGV[6])
redis.call('XTRIM', KEYS[1], 'MINID', ms - tonumber(ARGV[2]))
return {id, 0}
"""
# --8<-- [end:append]

roomlog.APPEND = APPEND  # in place of the chapter's, before its app.py builds its RoomLog

if __name__ == "__main__":
    app = Path(__file__).resolve().parents[1] / "chapters" / "06_delivery_guarantees" / "app.py"
    runpy.run_path(str(app), run_name="__main__")
