"""How a web instance serves: socketio.run on gevent's pywsgi, with Nagle's algorithm off.

Only app.py (and the twins that run a web instance) import this: a Celery worker has no
server, and no business importing gevent.
"""

import socket

from gevent import pywsgi

from . import HOST, INSTANCE_NAME, PORT, socketio


# --8<-- [start:serve]
class NoDelayHandler(pywsgi.WSGIHandler):
    """pywsgi's handler, on a socket with TCP_NODELAY set.

    With Nagle's algorithm on, as a new socket has it and pywsgi leaves it, a small write that
    follows another to the same client waits until the client acknowledges the first; and the
    client's TCP delays that acknowledgement, by at least 40 ms on Linux. The ack of a `start`, then the
    task's first `progress` a few milliseconds later, is just such a pair. gunicorn sets
    TCP_NODELAY on every socket it listens on (gunicorn/sock.py); pywsgi, eventlet.wsgi and
    Werkzeug do not, so neither does socketio.run.
    """

    def __init__(self, sock, address, server, rfile=None):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().__init__(sock, address, server, rfile)


def serve(app):
    """socketio.run, which hands `handler_class` on to gevent's WSGIServer."""
    print(f"{INSTANCE_NAME} starting on http://{HOST}:{PORT}/", flush=True)  # gevent's server says nothing
    socketio.run(app, host=HOST, port=PORT, log_output=False, handler_class=NoDelayHandler)


# --8<-- [end:serve]
