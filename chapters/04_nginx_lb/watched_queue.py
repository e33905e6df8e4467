"""The message queue, watched: an instance that stops hearing it knows, and /healthz says so.

When the path between an instance and Redis goes dark without a word (a partition, a NAT or
a cloud balancer that forgets an idle connection), nobody tells python-socketio's listener: it
waits on its socket, and the instance's users miss every message from the other instances
while the instance looks healthy. Two things bound that:

- TCP keepalive on the queue's connections (`keepalive_options`): the kernel probes a
  connection that has been idle, and gives up on one that does not answer; the listener then
  subscribes again.
- A heartbeat: every `heartbeat_seconds` the instance publishes a message that every instance
  skips, itself included, but that its listener hears. Nothing heard for a while means this
  instance is cut off: app.py's /healthz answers 503, a balancer that checks it (haproxy.cfg)
  takes the instance out and closes its connections, and its users reconnect to the others.
"""

import socket
import time

import socketio


# --8<-- [start:watched]
def keepalive_options(idle, interval, count):
    """redis-py's `socket_keepalive_options`: probe after `idle` s, every `interval` s, `count` times.

    Linux and Windows name the first TCP_KEEPIDLE, macOS TCP_KEEPALIVE.
    """
    names = {"TCP_KEEPIDLE": idle, "TCP_KEEPALIVE": idle, "TCP_KEEPINTVL": interval, "TCP_KEEPCNT": count}
    options = {}
    for name, value in names.items():
        option = getattr(socket, name, None)
        if option is not None and option not in options:
            options[option] = value
    return options


class WatchedRedisManager(socketio.RedisManager):
    """python-socketio's Redis queue, which also knows when it last heard its channel.

    RedisManager's own docstring calls it an example of a custom backend, whose two methods
    are `_publish` and `_listen`: this one wraps `_listen` and calls `_publish`, nothing else.
    """

    def __init__(self, url, *, channel, redis_options, heartbeat_seconds):
        super().__init__(url, channel=channel, redis_options=redis_options)
        self.heartbeat_seconds = heartbeat_seconds
        self.last_heard = None  # python-socketio subscribes on the first client's connect

    def heard_ago(self):
        """Seconds since the channel last said anything here, or None before it listens."""
        return None if self.last_heard is None else time.monotonic() - self.last_heard

    def initialize(self):
        super().initialize()
        self.last_heard = time.monotonic()
        self.server.start_background_task(self._heartbeat)

    def _listen(self):
        for message in super()._listen():
            self.last_heard = time.monotonic()
            yield message

    def _heartbeat(self):
        while True:
            # python-socketio's listener acts on emits, callbacks, disconnects and room
            # changes, and skips any other method: no client ever sees a heartbeat. One that
            # cannot be published makes python-socketio connect again, listener included.
            self._publish({"method": "heartbeat", "host_id": self.host_id})
            self.server.sleep(self.heartbeat_seconds)


# --8<-- [end:watched]
