"""Error strings every chapter shares, verbatim, as python-engineio prints them (docs/troubleshooting.md)."""

from __future__ import annotations

import pytest
import requests

from lab.apps import start_app

UNSUPPORTED = "The client is using an unsupported version of the Socket.IO or Engine.IO protocols"
# python-engineio logs an error the first time, then the same text at INFO (base_server.py,
# `_log_error_once`): the first line a log shows ends with this.
FIRST_TIME = " (further occurrences of this error will be logged with level INFO)"


@pytest.mark.parametrize(
    "script",
    [
        pytest.param("chapters/01_basic_chat/app.py", id="01-threading"),
        pytest.param("chapters/02_async_modes/run_gevent.py", id="02-gevent"),
    ],
)
def test_an_old_protocol_client_gets_a_400_naming_the_version_mismatch(bench, script):
    """A Socket.IO 2.x client (`EIO=3`) gets 400 "...unsupported version..." and the server logs it."""
    app = start_app(bench, script)

    # The first request of a Socket.IO 2.x client (the JS client 2.x, python-socketio 4.x).
    old = requests.get(f"{app.url}/socket.io/?EIO=3&transport=polling&t=N1a2b3c", timeout=5)
    assert (old.status_code, old.text) == (400, f'"{UNSUPPORTED}"')
    assert f"{UNSUPPORTED}{FIRST_TIME}" in app.log_text()

    # The same request with EIO=4, what Socket.IO 3.x and 4.x clients send, opens a session.
    current = requests.get(f"{app.url}/socket.io/?EIO=4&transport=polling&t=N1a2b3c", timeout=5)
    assert current.status_code == 200 and current.text.startswith('0{"sid":'), current.text
