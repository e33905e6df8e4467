"""The auth-on-connect recipe: real server processes, real clients over the network.

What a refused client sees, pinned here: python-socketio's `connect()` raises
socketio.exceptions.ConnectionError("One or more namespaces failed to connect: /") and
its `connect_error` handler receives {"message": <reason>}; the JS client's
`connect_error` handler receives an Error whose `message` is the reason (`data` is
undefined) and stops retrying (`socket.active` is false).
"""

from __future__ import annotations

import logging
import re
import socket
import sys
import time
from typing import Any

import pytest
import requests
import socketio
from itsdangerous import SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from lab.apps import start_app
from lab.browser import log_line
from lab.clients import RefusableClient, in_parallel
from lab.processes import REPO_ROOT, wait_until

RECIPE = "recipes/auth_on_connect/app.py"
SECRET_KEY = "a-test-key-that-is-not-secret"
SALT = "socket-auth"  # the recipe's
KEPT_KEY = {"PRODUCTION": "1", "SECRET_KEY": SECRET_KEY}
DEADLINE = 20.0  # seconds for a reconnect: python-socketio waits up to 5.5 s between attempts

NO_TOKEN = "log in first: no token"
INVALID = "invalid token"
EXPIRED = "token expired: log in again"


def token_signed_ago(seconds: int, user: str = "ann", key: str = SECRET_KEY, salt: str = SALT) -> str:
    """A token as the recipe signs it, stamped `seconds` in the past (itsdangerous' own clock hook)."""

    class PastClock(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - seconds

    return URLSafeTimedSerializer(key, salt=salt, signer=PastClock).dumps(user)


def log_in(url: str, name: str) -> str:
    response = requests.post(f"{url}/login", json={"name": name}, timeout=5)
    response.raise_for_status()
    return response.json()["token"]


def connect_as(clients, url: str, name: str, label: str, *, reconnection: bool = False):
    """A RecordingClient logged in as `name`, connected over websocket with its token in `auth`."""
    client = clients(label, reconnection=reconnection)
    client.sio.connect(url, auth={"token": log_in(url, name)}, transports=["websocket"], wait_timeout=10)
    return client


def failed_connect(url: str, auth=None, transports: list[str] | None = None) -> tuple[str, Any]:
    """Connect, expect it to fail, and return what `connect()` raised and what `connect_error` received."""
    client = RefusableClient(reconnection=False)
    received = []
    client.on("connect_error", lambda data=None: received.append(data))
    try:
        with pytest.raises(socketio.exceptions.ConnectionError) as failed:
            client.connect(url, auth=auth, transports=transports, wait_timeout=5)
    finally:
        client.disconnect()
    [data] = received
    return str(failed.value), data


def refusal(url: str, auth) -> dict:
    """Connect with `auth`, expect a refusal, and return what `connect_error` received.

    Long-polling: a refused websocket client takes 3 s to close; the answer is the same.
    """
    raised, data = failed_connect(url, auth, transports=["polling"])
    assert raised == "One or more namespaces failed to connect: /"
    return data


def no_traceback(app) -> None:
    log = app.log_text()
    assert "Traceback" not in log, log[-3000:]


def test_login_checks_the_name_and_signs_the_user_id(bench):
    """POST /login answers 400 with a reason for a bad name, and a token signed with the user id otherwise."""
    app = start_app(bench, RECIPE, env=KEPT_KEY)
    refused = {
        "no body": (None, "payload must be an object"),
        "a list": (["ann"], "payload must be an object"),
        "no name": ({}, "missing key 'name'"),
        "a number": ({"name": 7}, "'name' must be a string"),
        "blank": ({"name": "   "}, "'name' must not be empty"),
        "33 characters": ({"name": "x" * 33}, "'name' is longer than 32 characters"),
    }
    for label, (body, reason) in refused.items():
        response = requests.post(f"{app.url}/login", json=body, timeout=5)
        assert (response.status_code, response.json()) == (400, {"reason": reason}), label

    # Accepted names are stripped first; 32 characters is still fine.
    tokens = URLSafeTimedSerializer(SECRET_KEY, salt=SALT)
    assert tokens.loads(log_in(app.url, "  ann  ")) == "ann"
    assert tokens.loads(log_in(app.url, "x" * 32)) == "x" * 32
    no_traceback(app)


def test_a_connection_without_a_valid_token_is_refused_with_the_reason(bench):
    """No token, a forged, foreign or expired one: the connect is refused, and the client reads why."""
    app = start_app(bench, RECIPE, env=KEPT_KEY)
    tried = {
        "no auth": None,
        "auth without a token": {"user": "ann"},
        "not a token": {"token": "ann"},
        "a token that is not a string": {"token": 42},
        "signed with another key": {"token": token_signed_ago(0, key="guessed")},
        "signed with another salt": {"token": token_signed_ago(0, salt="cookie-session")},
        "two hours old": {"token": token_signed_ago(7200)},
    }
    # At once: each refused client takes seconds to close its long-polling session.
    answers = in_parallel(lambda auth: refusal(app.url, auth), list(tried.values()))
    seen = dict(zip(tried, answers, strict=True))
    assert seen == {
        "no auth": {"message": NO_TOKEN},
        "auth without a token": {"message": NO_TOKEN},
        "not a token": {"message": INVALID},
        "a token that is not a string": {"message": INVALID},
        "signed with another key": {"message": INVALID},
        "signed with another salt": {"message": INVALID},
        "two hours old": {"message": EXPIRED},
    }
    # One warning line per refusal, nothing more.
    assert app.log_text().count("refused a connection from") == len(seen)
    no_traceback(app)


def test_token_max_age_comes_from_the_environment(bench, clients):
    """With TOKEN_MAX_AGE=30 a token signed 60 s ago is refused as expired; one signed 10 s ago connects."""
    app = start_app(bench, RECIPE, env={**KEPT_KEY, "TOKEN_MAX_AGE": "30"})
    assert refusal(app.url, {"token": token_signed_ago(60)}) == {"message": EXPIRED}

    ann = clients("ann")
    ann.sio.connect(app.url, auth={"token": token_signed_ago(10)}, transports=["polling"], wait_timeout=10)
    assert ann.call("whoami") == {"ok": True, "user": "ann", "instance": "app-1"}
    no_traceback(app)


def test_an_open_connection_outlives_its_token(bench, clients):
    """The token is checked at connect only: once too old to connect with, the open connection answers on."""
    max_age = 2
    app = start_app(bench, RECIPE, env={**KEPT_KEY, "TOKEN_MAX_AGE": str(max_age)})
    token = log_in(app.url, "ann")
    ann = clients("ann")
    ann.sio.connect(app.url, auth={"token": token}, transports=["websocket"], wait_timeout=10)

    def expired() -> bool:
        """The server's own check, on the same clock: itsdangerous counts whole seconds."""
        try:
            URLSafeTimedSerializer(SECRET_KEY, salt=SALT).loads(token, max_age=max_age)
        except SignatureExpired:
            return True
        return False

    wait_until(expired, timeout=10, what="the token to expire", interval=0.1)
    assert refusal(app.url, {"token": token}) == {"message": EXPIRED}  # a new connect with it

    assert ann.call("whoami") == {"ok": True, "user": "ann", "instance": "app-1"}
    assert ann.call("notify_me", {"text": "still in"}) == {"ok": True}
    ann.wait_for_event("notice", lambda d: d == {"user": "ann", "text": "still in"})
    no_traceback(app)


def test_an_unreachable_server_gives_connect_error_a_string_that_depends_on_the_transport():
    """Nothing listening: `connect_error` gets `Connection error` on WebSocket, requests' error on polling."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connects are refused, and the port stays ours
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        websocket_only = failed_connect(url, transports=["websocket"])
        polling_first = failed_connect(url)  # the default transports: long-polling, then an upgrade

    assert websocket_only == ("Connection error", "Connection error")
    raised, data = polling_first
    assert raised == data and data.startswith("HTTPConnectionPool(host='127.0.0.1'")
    assert "Max retries exceeded" in data and "Connection refused" in data


def test_every_tab_of_a_user_gets_its_notice_and_nobody_else_does(bench, clients):
    """A `notice` reaches every connection of its user, through the user's room, and no other user."""
    app = start_app(bench, RECIPE, env=KEPT_KEY)
    ann_1 = connect_as(clients, app.url, "ann", "ann-tab-1")
    ann_2 = connect_as(clients, app.url, "ann", "ann-tab-2")
    bob = connect_as(clients, app.url, "bob", "bob")
    assert ann_2.call("whoami") == {"ok": True, "user": "ann", "instance": "app-1"}

    # Ann writes from one tab; both her tabs hear it.
    assert ann_1.call("notify_me", {"text": "the build is green"}) == {"ok": True}
    for tab in (ann_1, ann_2):
        tab.wait_for_event("notice", lambda d: d == {"user": "ann", "text": "the build is green"})

    # Bob's own notice is the barrier: anything of Ann's sent to him would have come first.
    assert bob.call("notify_me", {"text": "bob's marker"}) == {"ok": True}
    bob.wait_for_event("notice", lambda d: d["text"] == "bob's marker")
    assert [d["user"] for d in bob.received("notice")] == ["bob"]
    assert [d["user"] for d in ann_1.received("notice") + ann_2.received("notice")] == ["ann", "ann"]
    no_traceback(app)


def test_a_bad_notify_me_gets_a_reason_and_reaches_nobody(bench, clients):
    """A malformed `notify_me` gets an `error` event and a failed ack, as in the chapters; no notice."""
    app = start_app(bench, RECIPE, env=KEPT_KEY)
    ann = connect_as(clients, app.url, "ann", "ann")

    bad = {
        "no text": ({}, "missing key 'text'"),
        "501 characters": ({"text": "x" * 501}, "'text' is longer than 500 characters"),
        "two arguments": (({"text": "hi"}, {"extra": 1}), "send one object, not 2 arguments"),
    }
    for label, (payload, reason) in bad.items():
        assert ann.call("notify_me", payload) == {"ok": False, "reason": reason}, label
        ann.wait_for_event("error", lambda d, reason=reason: d == {"event": "notify_me", "reason": reason})
    assert ann.received("notice") == []
    no_traceback(app)


def test_a_client_cannot_become_another_user_with_its_own_connect_event(bench, clients):
    """An event named `connect` carrying bob's token is refused; the connection stays ann's."""
    app = start_app(bench, RECIPE, env=KEPT_KEY)
    ann = connect_as(clients, app.url, "ann", "ann")

    forged_connect = ({}, {"token": log_in(app.url, "bob")})  # what a real connect hands the handler
    refused = {"ok": False, "reason": "a client cannot send 'connect'; it is connected already"}
    assert ann.call("connect", forged_connect) == refused
    assert ann.call("whoami") == {"ok": True, "user": "ann", "instance": "app-1"}
    no_traceback(app)


def test_a_reconnecting_client_resends_its_token_and_is_back_in_its_room(bench, clients):
    """After a restart with the same SECRET_KEY, clients reconnect on their own into their user rooms."""
    app = start_app(bench, RECIPE, env=KEPT_KEY)
    ann_1 = connect_as(clients, app.url, "ann", "ann-tab-1", reconnection=True)
    ann_2 = connect_as(clients, app.url, "ann", "ann-tab-2", reconnection=True)
    bob = connect_as(clients, app.url, "bob", "bob", reconnection=True)

    # The server drops every connection and comes back on the same port, with no rooms.
    app = bench.restart(app)
    for client in (ann_1, ann_2, bob):
        client.wait_for("a reconnect", lambda c: len(c.received("connect")) == 2, timeout=DEADLINE)

    # The connect handler put each one back in its user's room, from the token alone.
    assert ann_2.call("notify_me", {"text": "back again"}) == {"ok": True}
    ann_1.wait_for_event("notice", lambda d: d == {"user": "ann", "text": "back again"})
    assert bob.call("notify_me", {"text": "bob's marker"}) == {"ok": True}
    bob.wait_for_event("notice", lambda d: d["text"] == "bob's marker")
    assert [d["user"] for d in bob.received("notice")] == ["bob"]
    no_traceback(app)


def test_without_secret_key_a_restart_voids_every_token_until_the_client_logs_in_again(bench, clients):
    """With a random key a restart voids every token; a callable `auth` reconnects with a new one."""
    app = start_app(bench, RECIPE)
    current = {"token": log_in(app.url, "ann")}
    ann = clients("ann", reconnection=True)
    refusals = []
    ann.sio.on("connect_error", lambda data=None: refusals.append(data))
    # A callable: python-socketio calls it again before every reconnect, as the JS client does.
    ann.sio.connect(app.url, auth=lambda: dict(current), transports=["websocket"], wait_timeout=10)

    app = bench.restart(app)
    wait_until(lambda: {"message": INVALID} in refusals, timeout=DEADLINE, what="a refused reconnect")
    # Unlike the JS client, python-socketio keeps retrying after a refusal; a new login ends it.
    current["token"] = log_in(app.url, "ann")
    ann.wait_for("a reconnect", lambda c: len(c.received("connect")) == 2, timeout=DEADLINE)
    assert ann.call("whoami") == {"ok": True, "user": "ann", "instance": "app-1"}
    no_traceback(app)


def test_a_refused_client_waits_its_delay_cap_plus_up_to_half_a_second_between_attempts(bench, caplog):
    """python-socketio adds 0.5 s of jitter after its 5 s cap: a refused client retries up to 5.5 s apart."""
    cap = 0.2  # the default 5 s, shrunk so that the test does not wait it out
    app = start_app(bench, RECIPE)
    logger = logging.getLogger("recipe-reconnects")
    caplog.set_level(logging.INFO, logger=logger.name)
    sio = socketio.Client(reconnection_delay=cap, reconnection_delay_max=cap, logger=logger)
    # Long-polling: a refused websocket client takes 3 s to close (see `refusal`).
    sio.connect(app.url, auth={"token": log_in(app.url, "ann")}, transports=["polling"], wait_timeout=10)

    # A restart with a new random key: every reconnect is refused, and the client keeps trying.
    app = bench.restart(app)
    refused = f"refused a connection from 127.0.0.1: {INVALID}"
    delays: list[float] = []

    def refused_and_waited_past_the_cap() -> bool:
        delays[:] = [float(d) for d in re.findall(r"new attempt in (-?[\d.]+) seconds", caplog.text)]
        return refused in app.log_text() and any(delay > cap for delay in delays)

    try:
        wait_until(
            refused_and_waited_past_the_cap, timeout=DEADLINE, what="a refusal, and a wait past the cap"
        )
    finally:
        sio.shutdown()
    factor = sio.randomization_factor  # the default, 0.5: seconds, not a fraction of the delay
    assert factor == 0.5
    assert all(cap - factor <= delay <= cap + factor for delay in delays), delays


def test_production_refuses_to_start_without_a_secret_key(bench):
    """PRODUCTION=1 without SECRET_KEY: the app exits with status 1 and a message naming the variable."""
    script = str(REPO_ROOT / RECIPE)
    result = bench.run(
        "production-no-key", [sys.executable, script], env={"PRODUCTION": "1", "SECRET_KEY": ""}
    )
    assert result.returncode == 1
    assert result.stdout.strip() == "SECRET_KEY must be set when PRODUCTION=1"


def test_the_builtin_connection_refused_error_hides_the_reason(bench, tmp_path):
    """Python's built-in ConnectionRefusedError still refuses (the handler fails closed), but hides why."""
    # The twin: the recipe itself, minus Flask-SocketIO's ConnectionRefusedError import.
    recipe = (REPO_ROOT / RECIPE).read_text()
    imported = "from flask_socketio import ConnectionRefusedError, SocketIO, emit, join_room\n"
    assert recipe.count(imported) == 1
    twin = tmp_path / "app_builtin_refusal.py"
    twin.write_text(recipe.replace(imported, "from flask_socketio import SocketIO, emit, join_room\n"))
    app = start_app(bench, twin, env=KEPT_KEY)

    # expected: {"message": "invalid token"}; actual: the generic answer to a handler that failed.
    # The guard fails closed for a connect handler that raised: any answer but False would let it in.
    assert refusal(app.url, {"token": "forged"}) == {"message": "Connection rejected by server"}
    assert "refused 'connect' from" in app.log_text()
    no_traceback(app)


# -- the page, and the JS client, in headless Chromium ---------------------------------------------

PAGE_DEADLINE_MS = 10_000


@pytest.fixture
def open_logged_out_page(open_page):
    """Open the recipe's page, loopback only, before anyone logs in."""
    return lambda url: open_page(url, status="logged out")


def log_in_page(page, name):
    page.locator("input[name=username]").fill(name)
    page.get_by_role("button", name="Log in").click()
    page.get_by_test_id("user").filter(has_text=re.compile(f"^{name}$")).wait_for(timeout=PAGE_DEADLINE_MS)


@pytest.mark.browser
def test_the_js_client_reads_the_reason_in_err_message_and_stops(bench, open_logged_out_page):
    """The JS client's connect_error gets an Error: message is the reason, no data; it does not retry."""
    app = start_app(bench, RECIPE, env=KEPT_KEY)
    page = open_logged_out_page(app.url + "/")
    cases = {
        "no auth": None,
        "forged": {"token": "forged"},
        "expired": {"token": token_signed_ago(7200)},
    }
    seen = page.evaluate(
        """async (cases) => {
            const seen = {};
            for (const [label, auth] of Object.entries(cases)) {
                seen[label] = await new Promise((resolve) => {
                    const probe = io({ auth, forceNew: true });
                    probe.on("connect_error", (err) => {
                        resolve({ message: err.message, data: err.data ?? null, active: probe.active });
                        probe.close();
                    });
                });
            }
            return seen;
        }""",
        cases,
    )
    assert seen == {
        "no auth": {"message": NO_TOKEN, "data": None, "active": False},
        "forged": {"message": INVALID, "data": None, "active": False},
        "expired": {"message": EXPIRED, "data": None, "active": False},
    }


@pytest.mark.browser
def test_two_tabs_of_one_user_share_notices_in_the_browser(bench, open_logged_out_page):
    """Two pages logged in as ann both show her notice; bob's page does not."""
    app = start_app(bench, RECIPE, env=KEPT_KEY)
    ann_1, ann_2, bob = (open_logged_out_page(app.url + "/") for _ in range(3))
    for page, name in ((ann_1, "ann"), (ann_2, "ann"), (bob, "bob")):
        log_in_page(page, name)

    ann_1.locator("input[name=text]").fill("tea is ready")
    ann_1.get_by_role("button", name="Notify me").click()
    for page in (ann_1, ann_2):
        log_line(page, "notice for ann: tea is ready").wait_for(timeout=PAGE_DEADLINE_MS)

    bob.locator("input[name=text]").fill("bob's marker")
    bob.get_by_role("button", name="Notify me").click()
    log_line(bob, "notice for bob: bob's marker").wait_for(timeout=PAGE_DEADLINE_MS)
    assert log_line(bob, "tea is ready").count() == 0
    no_traceback(app)


@pytest.mark.browser
def test_the_page_says_why_its_reconnect_was_refused_and_a_new_login_connects(bench, open_logged_out_page):
    """After a restart under a new random key the page shows why it was refused; a new login connects."""
    app = start_app(bench, RECIPE)
    page = open_logged_out_page(app.url + "/")
    log_in_page(page, "ann")

    app = bench.restart(app)
    page.get_by_test_id("status").filter(has_text=f"refused: {INVALID}").wait_for(timeout=20_000)
    assert page.evaluate("socket.active") is False

    page.get_by_test_id("user").filter(has_text="none").wait_for(timeout=PAGE_DEADLINE_MS)
    log_in_page(page, "ann")
    page.get_by_test_id("status").filter(has_text=re.compile("^connected$")).wait_for(
        timeout=PAGE_DEADLINE_MS
    )
    no_traceback(app)
