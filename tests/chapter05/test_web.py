"""Chapter 05's web instance serves with Nagle's algorithm off (taskboard/web.py)."""

from __future__ import annotations

import json
import subprocess
import sys

from lab.celery_workers import CHAPTER05

# A connection accepted on a real TCP socket, handed to a handler as gevent's server hands it one
# (pywsgi's own, the chapter's), and one accepted on gunicorn's listening socket. In a process of
# its own, in the chapter's folder: the chapter's modules stay out of this one.
NAGLE_OFF = """
import json, socket
import gunicorn.config, gunicorn.sock
from gevent import pywsgi
from taskboard.web import NoDelayHandler

def nodelay_of_a_connection_to(listener, handler_class=None):
    with socket.create_connection(listener.getsockname()):
        accepted, address = listener.accept()
        with accepted:
            if handler_class:
                handler_class(accepted, address, None)
            return accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)

nodelay = {}
for handler_class in (pywsgi.WSGIHandler, NoDelayHandler):
    with socket.create_server(("127.0.0.1", 0)) as listener:
        nodelay[handler_class.__name__] = nodelay_of_a_connection_to(listener, handler_class)
gunicorn_listener = gunicorn.sock.TCPSocket(("127.0.0.1", 0), gunicorn.config.Config(), None)
gunicorn_listener.setblocking(True)
nodelay["gunicorn"] = nodelay_of_a_connection_to(gunicorn_listener)
print(json.dumps(nodelay))
"""


def test_the_web_handler_turns_nagle_off_where_pywsgi_leaves_it_on():
    """The chapter's handler sets TCP_NODELAY on each connection, as gunicorn does; pywsgi's own does not."""
    ran = subprocess.run(
        [sys.executable, "-c", NAGLE_OFF],
        cwd=CHAPTER05,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    nodelay = json.loads(ran.stdout.strip().splitlines()[-1])
    assert nodelay == {"WSGIHandler": 0, "NoDelayHandler": 1, "gunicorn": 1}
