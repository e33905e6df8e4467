"""gevent's monkey patch, in a module of its own: app.py imports it before anything else.

gevent replaces the blocking parts of the standard library (socket, ssl, time, threading)
with cooperative ones. A module imported before the patch can keep the blocking originals
(chapter 02 shows what that breaks), so this runs first, and app.py's other imports follow.

With a Redis queue the patch is not optional. python-socketio checks it when the first
client connects (socketio.RedisManager.initialize); without it the server logs
    RuntimeError: Redis requires a monkey patched socket library to work with gevent
and refuses that client (401), and every client after it times out. eventlet without
eventlet.monkey_patch() does the same.
"""

from gevent import monkey

monkey.patch_all()
