"""Chapter 02 in production: the WSGI entry point gunicorn loads, under its gevent worker.

What this shows
    `app` for gunicorn, built in gevent mode. There is no patching here:
    gunicorn's gevent worker calls gevent's monkey.patch_all() in each worker
    process before it imports this module (gunicorn/workers/ggevent.py,
    GeventWorker.init_process). gunicorn.conf.py holds the settings, each
    with its reason: one worker, the gevent worker class, MAX_CLIENTS
    connections.

How to run it
    One terminal, from this folder:
        cd chapters/02_async_modes && gunicorn -c gunicorn.conf.py wsgi:app
    The explicit form of the same command:
        gunicorn -k gevent -w 1 --worker-connections 10000 -b 127.0.0.1:5000 wsgi:app

What breaks without it
    More than one worker (-w 2) breaks Socket.IO: gunicorn hands each HTTP
    request to whichever worker is free, so a polling client's next request
    lands on a worker that never heard of its session, which answers 400
    "Invalid session <sid>" (python-engineio's words; tests/chapter04/
    test_nginx_lb.py::test_gunicorn_with_four_workers_on_one_port_breaks_long_polling
    shows it). Scaling out needs sticky sessions and a message queue:
    chapters 03 and 04.

TL;DR
    gunicorn -k gevent -w 1: one worker per process, more processes behind nginx.
"""

from app import create_app, start_cpu_workers

# --8<-- [start:wsgi]
ASYNC_MODE = "gevent"

app, socketio = create_app(ASYNC_MODE)
# socketio.run is not called under gunicorn: start the CPU worker processes here (see app.py).
start_cpu_workers()
# --8<-- [end:wsgi]
