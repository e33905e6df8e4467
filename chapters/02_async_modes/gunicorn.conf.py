"""gunicorn settings for chapter 02: `gunicorn -c gunicorn.conf.py wsgi:app` from this folder.

The run contract holds: HOST, PORT and MAX_CLIENTS come from the environment.
Flags on the command line win over this file (`-b 0.0.0.0:8000`).
"""

import gc
import os

# --8<-- [start:gunicorn]
bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '5000')}"
# The gevent worker: one process serves thousands of connections on greenlets, and it
# monkey patches the standard library before it imports wsgi.py. WebSocket works
# without gevent-websocket: python-engineio falls back to simple-websocket, which
# takes the raw socket from gunicorn's WSGI environ ("gunicorn.socket").
worker_class = "gevent"
# ONE worker. gunicorn balances each HTTP request to any free worker, with no sticky
# sessions, and Socket.IO's polling transport needs every request of a session to reach
# the process that holds it (Flask-SocketIO's deployment docs: "it is not possible to use
# more than one worker process"). Scale with more single-worker processes behind a sticky
# balancer and a Redis message queue: chapters 03 and 04 (antipatterns/04_gunicorn_many_workers.conf.py
# is this file with four workers, and its test shows the 400s).
workers = 1
# The gevent worker's cap on simultaneous connections (default 1000). Every websocket
# holds one for its whole life; app.py's MAX_CLIENTS explains the 10000.
worker_connections = int(os.environ.get("MAX_CLIENTS", "10000"))
# No control socket (gunicorn 27's runtime-management socket, one fixed path per user):
# several gunicorn instances on one machine would all claim the same path.
control_socket_disable = True


def post_worker_init(worker):
    """The app is built: fewer, cheaper garbage collections from here on.

    A full collection scans every object the process holds, and stops the one event loop
    while it does: with thousands of connections, long enough to be the broadcasts' slowest
    percentile. Take what start-up allocated out of every scan (gc.freeze), and collect
    far less often than Python's (700, 10, 10).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


# --8<-- [end:gunicorn]
