"""Chapter 03: send a `notice` to every chat client from a separate process.

What this shows
    An external emitter: a script (a cron job, a worker, an admin tool) that
    is not a Socket.IO server and holds no connection to any client, yet
    reaches every client of every instance. It creates a write-only
    `SocketIO(message_queue=...)` and publishes one message on the cluster's
    Redis channel; each instance delivers it to its own clients.

How to run it (each terminal)
    1-3. Redis and two instances of app.py, as in app.py's docstring.
    4.   python chapters/03_redis_scaling/notify.py "the bar closes in 10 minutes"
    Settings: REDIS_URL and SOCKETIO_CHANNEL, the same values as the instances'.
    Exit status: 0 sent, 1 Redis unreachable, 2 bad text.

What breaks without it
    With a different SOCKETIO_CHANNEL than the instances, or against an app
    with no message queue (antipatterns/03_no_message_queue.py), the notice
    is published to nobody: this script prints "0 instance(s) listening".

TL;DR
    SocketIO(message_queue=REDIS_URL, channel=CHANNEL, async_mode=...) with no
    app is write-only: socketio.emit() from anywhere, no server needed.
"""

import os
import sys
from urllib.parse import urlsplit, urlunsplit

import redis
from flask_socketio import SocketIO

# --8<-- [start:config]
# No server runs here, so there is nothing to serve concurrently: plain threading, and no
# monkey patching (RedisManager only checks for it under gevent or eventlet).
ASYNC_MODE = "threading"
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CHANNEL = os.environ.get("SOCKETIO_CHANNEL", "flask-socketio")
MAX_TEXT = 500
# --8<-- [end:config]


def redacted(url: str) -> str:
    """The URL with its password masked: an error message ends up in terminals and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


# --8<-- [start:emit]
def main(words: list[str]) -> int:
    text = " ".join(words).strip()
    if not text or len(text) > MAX_TEXT:
        print(f'usage: notify.py "text of 1 to {MAX_TEXT} characters"', file=sys.stderr)
        return 2
    # socketio.emit() does not raise when Redis is down (python-socketio logs "Cannot
    # publish to redis... giving up" and moves on), so ask Redis first, and say who listens.
    try:
        [(_, listening)] = redis.Redis.from_url(REDIS_URL).pubsub_numsub(CHANNEL)
    except redis.RedisError as error:
        print(f"Redis unreachable at {redacted(REDIS_URL)}: {error}", file=sys.stderr)
        return 1
    # No app: a write-only client of the queue. It publishes and never subscribes.
    socketio = SocketIO(message_queue=REDIS_URL, channel=CHANNEL, async_mode=ASYNC_MODE)
    socketio.emit("notice", {"text": text, "source": "notify.py"})
    print(f"notice published on channel {CHANNEL!r}: {listening} instance(s) listening")
    return 0


# --8<-- [end:emit]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
