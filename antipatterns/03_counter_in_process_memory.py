"""Antipattern 03: users online counted in process memory, on several instances.

What it does
    Chapter 03's app, run as it is, with its Redis message queue, but with
    one definition of its online.py changed: `OnlineCount.count` reads the
    number of users online from process memory (`local_sids`, the session
    ids this process holds) instead of summing every instance's set in Redis.

Why is this bad?
    Each process counts only its own connections. With three instances of
    ten users each, every instance says "10 online" while 30 are; /healthz
    disagrees from one instance to the next, and each page shows the share
    of the instance it happens to reach, never the total. Nothing logs an
    error: every number is right about one process. The same goes for any state
    kept in process memory: a dict of who is in which room, a rate-limit
    counter, a "last message" cache.

Use instead
    chapters/03_redis_scaling/online.py: one Redis set of session ids per
    instance, summed across instances, with a TTL so that a crashed
    instance's users drop out.

How to run it
    With the chapter's Redis on 6379, a database and a channel of its own, so it
    never joins the chapter's cluster (docs/chapters/03-redis-scaling.md):
    REDIS_URL=redis://127.0.0.1:6379/2 SOCKETIO_CHANNEL=counter-twin, then
    PORT=5201 INSTANCE_NAME=chat-1 python antipatterns/03_counter_in_process_memory.py
    PORT=5202 INSTANCE_NAME=chat-2 python antipatterns/03_counter_in_process_memory.py

Differs from chapters/03_redis_scaling/online.py
    count: counts this process's connections, not every instance's
"""

import runpy
import sys
import time
from pathlib import Path

# The chapter's folder: its modules, and its app.py, which this file runs unchanged.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "chapters" / "03_redis_scaling"))
import gevent_patch  # noqa: F401  (first, as in the chapter's app.py)
from online import OnlineCount


# --8<-- [start:counter]
def count(self):
    """Return (version, users online per instance).

    The version is this process's clock, and the only instance it knows is itself.
    """
    # expected: every instance's users, summed from the sets each one writes to Redis;
    # actual: this process's own connections, held in its memory (local_sids), the only
    # ones it can see; each instance reports its own share as the total
    return time.time_ns() // 1000, ({self.instance: len(self.local_sids)} if self.local_sids else {})


# --8<-- [end:counter]

OnlineCount.count = count  # in place of the chapter's, before its app.py runs

if __name__ == "__main__":
    app = Path(__file__).resolve().parents[1] / "chapters" / "03_redis_scaling" / "app.py"
    runpy.run_path(str(app), run_name="__main__")
