"""The defaults of the pinned libraries that the pages rely on, read from those libraries.

A page that says "gunicorn caps the gevent worker at 1,000 connections" cites gunicorn's
documentation; this holds the claim to the version requirements/ pins, so an upgrade that
changes a default fails here rather than leaving the page wrong.
"""

from __future__ import annotations

import inspect
import warnings

import engineio
import gunicorn.config
import socketio


def defaults(function) -> dict:
    return {name: p.default for name, p in inspect.signature(function).parameters.items()}


def test_gunicorn_caps_a_gevent_worker_at_1000_connections():
    """gunicorn's `worker_connections` defaults to 1,000 (chapter 02's gunicorn command raises it)."""
    assert gunicorn.config.WorkerConnections.default == 1000


def test_eventlet_serves_at_most_1024_connections_unless_told():
    """eventlet.wsgi.server's `max_size` defaults to 1,024 simultaneous connections."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eventlet's own deprecation notice, on import
        import eventlet.wsgi

    assert eventlet.wsgi.DEFAULT_MAX_SIMULTANEOUS_REQUESTS == 1024
    assert defaults(eventlet.wsgi.server)["max_size"] in (None, 1024)


def test_the_python_client_reconnects_after_about_a_second():
    """python-socketio's client waits 1 s ± 50 % before its first reconnect, 5 s at most later."""
    options = defaults(socketio.Client.__init__)
    assert options["reconnection"] is True
    assert (options["reconnection_delay"], options["randomization_factor"]) == (1, 0.5)
    assert options["reconnection_delay_max"] == 5


def test_the_server_pings_every_25_seconds_well_inside_nginx_60_second_read_timeout():
    """python-engineio pings every 25 s and waits 20 s for the pong: a live connection is never quiet 60 s."""
    options = defaults(engineio.Server.__init__)
    assert (options["ping_interval"], options["ping_timeout"]) == (25, 20)
    assert options["ping_interval"] + options["ping_timeout"] < 60
