"""Chapter 02's error strings, verbatim, as the pinned libraries print them (docs/troubleshooting.md).

Each test makes a real process say the string a learner pastes into a search box, and
asserts it word for word, so the troubleshooting page cannot drift from the libraries.
"""

from __future__ import annotations

import socket
import sys
from contextlib import ExitStack

import pytest
import requests

from lab.apps import healthz, start_app
from lab.processes import REPO_ROOT, wait_until

CHAPTER_DIR = "chapters/02_async_modes"
RUN_THREADING = f"{CHAPTER_DIR}/run_threading.py"

# -- which async mode SocketIO(app) picks ---------------------------------------------------------

# What a learner writes before reading chapter 02: no async_mode. It prints the mode chosen.
NO_ASYNC_MODE = """
import sys
for hidden in sys.argv[1:]:
    sys.modules[hidden] = None  # as if not installed: importing it raises ImportError
from flask import Flask
from flask_socketio import SocketIO
print("async_mode:", SocketIO(Flask(__name__)).async_mode)
"""

# python-engineio tries eventlet, gevent_uwsgi, gevent, threading, in that order, and takes the
# first it can import (engineio/base_server.py, `async_modes`; Flask-SocketIO's docs: "the first
# one available is used").
EVENTLET_DEPRECATED = (
    "EventletDeprecationWarning: \n"
    "Eventlet is deprecated. It is currently being maintained in bugfix mode, and"
)


@pytest.mark.parametrize(
    ("hidden", "picked"),
    [
        pytest.param((), "eventlet", id="all-installed"),
        pytest.param(("eventlet",), "gevent", id="no-eventlet"),
        pytest.param(("eventlet", "gevent"), "threading", id="neither"),
    ],
)
def test_socketio_without_async_mode_picks_eventlet_when_it_is_installed(bench, hidden, picked):
    """SocketIO(app) with no async_mode picks eventlet if installed: why each chapter names its mode."""
    ran = bench.run("no-async-mode", [sys.executable, "-c", NO_ASYNC_MODE, *hidden])
    assert ran.returncode == 0, ran.stdout
    assert f"async_mode: {picked}" in ran.stdout, ran.stdout
    # Picking eventlet imports it, and eventlet 0.41 says on import that it is deprecated.
    assert (EVENTLET_DEPRECATED in ran.stdout) is (picked == "eventlet"), ran.stdout


# -- gunicorn's eventlet worker, gone --------------------------------------------------------------

# What gunicorn says when its worker class cannot be loaded: since 26.0 there is no eventlet worker.
NO_EVENTLET_WORKER = "Error: class uri 'eventlet' invalid or not found"


def test_gunicorn_has_no_eventlet_worker(bench):
    """`gunicorn -k eventlet`, still in Flask-SocketIO's deployment docs, stops at once: no such worker."""
    argv = [sys.executable, "-m", "gunicorn", "-k", "eventlet", "-w", "1", "-b", "127.0.0.1:0"]
    ran = bench.run("gunicorn-eventlet", [*argv, "--chdir", CHAPTER_DIR, "wsgi:app"])
    assert ran.returncode == 1, ran.stdout
    assert NO_EVENTLET_WORKER in ran.stdout, ran.stdout


# -- Werkzeug outside a terminal ------------------------------------------------------------------

# The chapter's app under threading mode, run as run_threading.py does but without
# allow_unsafe_werkzeug=True: the mistake and nothing else.
WITHOUT_ALLOW_UNSAFE = f"""
import sys
sys.path.insert(0, {str(REPO_ROOT / CHAPTER_DIR)!r})
from app import HOST, PORT, create_app
app, socketio = create_app("threading")
socketio.run(app, host=HOST, port=PORT)
"""
WERKZEUG_REFUSES = (
    "RuntimeError: The Werkzeug web server is not designed to run in production. "
    "Pass allow_unsafe_werkzeug=True to the run() method to disable this error."
)


def test_werkzeug_refuses_to_serve_outside_a_terminal_unless_allowed(bench):
    """Threading mode with no terminal: socketio.run exits with a RuntimeError; allowed, it only warns."""
    # stdin is not a tty (the bench gives every process /dev/null): Flask-SocketIO refuses to start.
    ran = bench.run("no-allow-unsafe", [sys.executable, "-c", WITHOUT_ALLOW_UNSAFE], env={"PORT": "0"})
    assert ran.returncode == 1, ran.stdout
    assert WERKZEUG_REFUSES in ran.stdout, ran.stdout

    # With allow_unsafe_werkzeug=True (the chapter's serve()): it serves, and says twice what it is.
    app = start_app(bench, RUN_THREADING)
    assert healthz(app.url)["async_mode"] == "threading"
    log = app.log_text()
    assert (
        "Werkzeug appears to be used in a production deployment. "
        "Consider switching to a production web server instead."
    ) in log
    assert "WARNING: This is a development server. Do not use it in a production deployment." in log


# -- Too many open files --------------------------------------------------------------------------

# Open files the chapter's server may have: it starts with about 15 (its listening socket,
# the CPU pool's pipes, ...); each client connection costs one more.
FD_LIMIT = 64
# Connections the test opens at most: enough to run out, bounded.
MAX_CONNECTIONS = FD_LIMIT + 20
TOO_MANY_OPEN_FILES = "OSError: [Errno 24] Too many open files"


def with_fd_limit(script: str):
    """The command that runs `script` with RLIMIT_NOFILE at FD_LIMIT, as `ulimit -n 64` would."""
    path = str(REPO_ROOT / script)
    limited = (
        "import os, resource, sys; "
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({FD_LIMIT}, {FD_LIMIT})); "
        f"os.execv(sys.executable, [sys.executable, {path!r}])"
    )
    return lambda port: [sys.executable, "-c", limited]


def answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=1).ok
    except requests.RequestException:
        return False


@pytest.mark.parametrize(
    ("mode", "recovers"), [("gevent", True), ("eventlet", False)], ids=["gevent", "eventlet"]
)
def test_too_many_open_files_stalls_gevent_and_kills_eventlets_server(bench, mode, recovers):
    """Out of file descriptors, the server logs "Too many open files"; gevent recovers, eventlet stops."""
    script = f"{CHAPTER_DIR}/run_{mode}.py"
    app = start_app(bench, script, command=with_fd_limit(script))

    with ExitStack() as held:
        # Clients arrive until the server has no descriptor left for the next one.
        for _ in range(MAX_CONNECTIONS):
            try:
                held.enter_context(socket.create_connection(("127.0.0.1", app.port), timeout=2))
            except OSError:
                break  # eventlet's server has died of it already: its port refuses connections
            if TOO_MANY_OPEN_FILES in app.log_text():
                break
        wait_until(
            lambda: TOO_MANY_OPEN_FILES in app.log_text(), timeout=10, what="'Too many open files' in the log"
        )
        # While they hold every descriptor, nobody new is served.
        assert not answers(app.url)

    # The connections close. gevent's server retries accept() and serves again; eventlet's
    # server loop died of the error: the process lives on, but nothing listens any more.
    if recovers:
        wait_until(lambda: answers(app.url), timeout=10, what="gevent to serve again")
        assert "failed with OSError" in app.log_text()  # gevent's own line, after each traceback
    else:
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{app.url}/healthz", timeout=2)
        assert app.alive()
