"""Antipattern 04: `gunicorn -w 4`, four app processes behind one port with no stickiness.

What it does
    Serves chapters/04_nginx_lb/app.py, unchanged, with gunicorn's gevent worker
    and four workers on one port: the command most deployment guides give for a
    plain Flask app, `gunicorn -k gevent -w 4 app:app`. Differs from the chapter in
    one setting, `workers = 4`; the chapter runs one process per instance, behind a
    sticky balancer (nginx.conf, haproxy.cfg).

Why is this bad?
    gunicorn's workers share one listening socket, and whichever worker accepts a
    connection serves it: a balancer with no stickiness at all. A long-polling
    session lives in the worker that opened it, and its next request, on another
    connection, may reach another worker, which answers 400 "Invalid session <sid>".
    Browsers start every connection with long-polling, so some upgrades fail too,
    and pages flap between connected and disconnected. WebSocket-only clients work
    (one connection, one worker), which hides the bug in a quick test.

Use instead
    One worker per process (`workers = 1`, chapters/02_async_modes/gunicorn.conf.py),
    more processes on more ports, and nginx's sticky upstream in front (nginx.conf).

How to run it
    With Redis on 6379, from the chapter's folder:
        cd chapters/04_nginx_lb && gunicorn -c ../../antipatterns/04_gunicorn_many_workers.conf.py app:app
    /healthz names the worker that answered ("chat-1/worker-3"): ask a few times.

Differs from chapters/02_async_modes/gunicorn.conf.py
    workers: 4 instead of 1
    post_fork, post_worker_init: name each worker; start the count loop that app.py's
        __main__ starts, which gunicorn never runs (plumbing); post_worker_init keeps
        the chapter's garbage-collection settings
"""

import gc
import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '5000')}"
worker_class = "gevent"
# --8<-- [start:workers]
# expected: every request of a Socket.IO session reaches the process that holds it;
# actual: four processes accept on one port, whichever is free takes each connection,
# and a long-poll that lands on another worker gets 400 "Invalid session <sid>"
workers = 4
# --8<-- [end:workers]
worker_connections = int(os.environ.get("MAX_CLIENTS", "10000"))
# No control socket (gunicorn 27's runtime-management socket, one fixed path per user).
control_socket_disable = True


def post_fork(server, worker):
    """Name each worker after its instance, so /healthz shows which one answered."""
    os.environ["INSTANCE_NAME"] = f"{os.environ.get('INSTANCE_NAME', 'chat-1')}/worker-{worker.age}"


def post_worker_init(worker):
    """The chapter's garbage collection; and what app.py's __main__ does, which gunicorn never
    runs: start the online-count loop."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    from app import online_count_loop, socketio

    socketio.start_background_task(online_count_loop)
