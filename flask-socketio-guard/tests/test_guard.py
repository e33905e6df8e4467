"""What the guard promises, on a real server: each hostile input gets a reason or costs its connection."""

from __future__ import annotations

import logging
import time

import pytest
import requests
import socketio
import websocket
from flask import Flask
from flask_socketio import SocketIO
from flask_socketio_guard import DEFAULTS, Refused, SocketIOGuard, require, secret
from serving import DEADLINE, RawWebSocket, make_app, polling_session, tracebacks, wait_until


@pytest.fixture(autouse=True)
def _warnings(caplog):
    caplog.set_level(logging.WARNING)


def refused_lines(caplog, event: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"refused {event!r} from")]


# Events ---------------------------------------------------------------------------------------


def test_refused_in_a_handler_reaches_only_the_sender_as_an_error_and_a_failed_ack(serve, clients, caplog):
    server = serve()
    sender, bystander = clients(server.url), clients(server.url)
    assert sender.call("echo", "refuse") == {"ok": False, "reason": "not that"}
    wait_until(lambda: sender.received("error"), "the error event")
    assert sender.received("error") == [{"event": "echo", "reason": "not that"}]
    assert bystander.call("echo", "hi") == {"ok": True, "name": None}
    assert bystander.received("error") == []
    assert refused_lines(caplog, "echo") == []  # a refusal in the app's own words is no incident


def test_an_exception_in_a_handler_costs_one_line_and_no_traceback(serve, clients, caplog):
    server = serve()
    client = clients(server.url)
    refused = {"ok": False, "reason": "the server could not handle this event"}
    assert client.call("echo", "boom") == refused
    [line] = refused_lines(caplog, "echo")
    assert line.endswith(f"from {client.sio.get_sid()}: KeyError: 'boom'")
    assert tracebacks(caplog) == []


def test_an_event_with_two_arguments_is_told_to_send_one(serve, clients, caplog):
    server = serve()
    client = clients(server.url)
    assert client.call_raw("join", {"room": "a"}, {"extra": 1}) == {
        "ok": False,
        "reason": "send one object, not 2 arguments",
    }
    [line] = refused_lines(caplog, "join")
    assert "on_join() takes from 0 to 1 positional arguments but 2 were given" in line


def test_require_names_what_is_wrong():
    for data, reason in [
        ("x", "payload must be an object"),
        ({}, "missing key 'room'"),
        ({"room": 1}, "'room' must be a string"),
        ({"room": "  "}, "'room' must not be empty"),
        ({"room": "x" * 17}, "'room' is longer than 16 characters"),
    ]:
        with pytest.raises(Refused, match=reason):
            require(data, room=16)
    assert require({"room": " a ", "extra": 1}, room=16) == {"room": "a"}


@pytest.mark.parametrize("always_connect", [False, True], ids=["connect-pending", "always-connect"])
def test_forged_connect_and_disconnect_are_refused_and_real_ones_run(serve, clients, always_connect):
    """With always_connect=True the real connect runs on a connected client: still told apart."""
    server = serve(always_connect=always_connect)
    client = clients(server.url, auth={"name": "ann", "rooms": ["lobby"]})
    assert client.call("echo", "hi") == {"ok": True, "name": "ann"}  # the real connect ran, in full
    assert client.call("connect", {"name": "eve"}) == {
        "ok": False,
        "reason": "a client cannot send 'connect'; it is connected already",
    }
    assert client.call("disconnect") == {
        "ok": False,
        "reason": "a client cannot send 'disconnect'; close the connection instead",
    }
    assert server.app.disconnects == []  # the app's disconnect handler did not run
    assert client.call("echo", "still") == {"ok": True, "name": "ann"}
    client.disconnect()
    wait_until(lambda: server.app.disconnects, "the real disconnect")


def test_forged_events_are_refused_even_where_the_app_has_no_such_handler(serve, clients):
    app, socketio_ = make_app()
    socketio_.handlers = [h for h in socketio_.handlers if h[0] != "disconnect"]
    socketio_.server.handlers["/"].pop("disconnect")
    server = serve((app, socketio_))
    client = clients(server.url)
    assert client.call("disconnect") == {
        "ok": False,
        "reason": "a client cannot send 'disconnect'; close the connection instead",
    }
    assert client.call("connect_error", {}) == {"ok": False, "reason": "a client cannot send 'connect_error'"}
    wait_until(lambda: len(client.received("error")) == 2, "both error events")


def test_a_forged_event_on_a_namespace_it_never_joined_is_dropped(serve, caplog):
    server = serve()
    ws = RawWebSocket(server.url)
    ws.ws.send('42/other,1["disconnect"]')
    ws.ws.send('421["echo","after"]')
    frames = [ws.ws.recv()]
    while not frames[-1].startswith("43"):
        frames.append(ws.ws.recv())
    assert frames == ['42["echo","after"]', '431[{"ok":true,"name":null}]']  # nothing for the first
    assert tracebacks(caplog) == []
    ws.close()


def test_refused_in_connect_refuses_the_connection_with_its_reason(serve):
    server = serve()
    reasons = []
    client = socketio.Client(reconnection=False)
    client.on("connect_error", reasons.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(server.url, auth={"name": 1}, transports=["polling"], wait_timeout=DEADLINE)
    assert reasons == [{"message": "auth: 'name' must be a string"}]


def test_a_failing_connect_handler_refuses_the_connection_in_one_line(serve, caplog):
    server = serve()
    client = socketio.Client(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(server.url, auth={"boom": True}, transports=["polling"], wait_timeout=DEADLINE)
    [line] = refused_lines(caplog, "connect")
    assert line.endswith("RuntimeError: the connect handler failed")
    assert tracebacks(caplog) == []


def test_a_connect_handler_without_auth_still_runs(serve, clients):
    app, socketio_ = make_app()
    connected = []
    socketio_.on("connect")(lambda: connected.append(True))  # Flask-SocketIO retries without `auth`
    server = serve((app, socketio_))
    clients(server.url)
    assert connected == [True]


def test_a_flood_is_refused_past_the_budget_and_the_budget_refills(serve, clients):
    server = serve()  # 5 events a second, bursts of 10
    client, bystander = clients(server.url), clients(server.url)
    replies = [client.call("echo", i) for i in range(20)]
    refused = {"ok": False, "reason": "too many events: at most 5 a second"}
    assert refused in replies and replies.count(refused) + sum(r.get("ok") is True for r in replies) == 20
    assert bystander.call("echo", "mine") == {"ok": True, "name": None}  # its budget is its own
    wait_until(lambda: client.call("echo", "later") != refused, "the budget to refill")


def test_a_refused_event_costs_no_token_so_a_client_that_keeps_sending_gets_in_at_the_refill_pace(
    serve, clients
):
    """Sending non-stop past its burst, a client still gets 5 events a second in: refusals cost no token."""
    server = serve()  # 5 events a second, bursts of 10
    rate = 5
    client = clients(server.url)
    refused = {"ok": False, "reason": "too many events: at most 5 a second"}
    calls: list[tuple[float, float, dict]] = []  # sent at, answered at, the ack; the server's clock too

    def send() -> dict:
        sent = time.monotonic()
        reply = client.call("echo", len(calls))
        calls.append((sent, time.monotonic(), reply))
        return reply

    # Spend the burst, then keep sending for 2 s after the first refusal.
    while send() != refused:
        pass
    burst = len(calls) - 1
    first_refused_sent, first_refused_answered, _ = calls[-1]
    while time.monotonic() - first_refused_answered < 2:
        send()

    replies = [reply for _, _, reply in calls]
    accepted = [reply for reply in replies if reply != refused]
    assert all(reply["ok"] is True for reply in accepted)
    last_sent, last_answered, _ = calls[-1]
    # No bucket lets more through than its burst plus the refill over the whole run.
    assert burst >= 2 * rate and len(accepted) <= 2 * rate + rate * (last_answered - calls[0][0])
    # After the first refusal, and after the last event, the bucket holds between 0 and 1 token;
    # in between it refilled at `rate` and paid one token per accepted event, none per refused one.
    # A bucket that charged refusals too would let almost nothing through while the client sends.
    accepted_after = len(accepted) - burst
    assert rate * (last_sent - first_refused_answered) - 1 < accepted_after
    assert accepted_after < rate * (last_answered - first_refused_sent) + 1


def test_a_connection_on_two_namespaces_has_one_budget(serve, clients):
    """The budget is the Engine.IO connection's: joining a second namespace does not double it."""
    server = serve()  # 5 events a second, bursts of 10
    client = clients(server.url, namespaces=["/", "/extra"])
    started = time.monotonic()
    replies = [client.call("echo", i, namespace=("/", "/extra")[i % 2]) for i in range(30)]
    elapsed = time.monotonic() - started
    refused = {"ok": False, "reason": "too many events: at most 5 a second"}
    accepted = sum(reply.get("ok") is True for reply in replies)
    assert accepted + replies.count(refused) == 30
    # Ten at once, then five a second, over both namespaces together: two budgets would pass 20 at once.
    assert 10 <= accepted <= 10 + 5 * elapsed


def test_a_connection_is_in_at_most_max_rooms(serve, clients):
    server = serve()  # MAX_ROOMS = 3
    client = clients(server.url)
    for room in ("a", "b", "c", "c"):
        assert client.call("join", {"room": room}) == {"ok": True}
    full = {"ok": False, "reason": "you are in 3 rooms already: leave one first"}
    assert client.call("join", {"room": "d"}) == full
    assert client.call("leave", {"room": "a"}) == {"ok": True}
    assert client.call("join", {"room": "d"}) == {"ok": True}


def test_a_connection_on_two_namespaces_has_one_room_limit(serve, clients):
    """The room limit is the Engine.IO connection's: its rooms in "/" and "/extra" count together."""
    server = serve()  # MAX_ROOMS = 3
    client = clients(server.url, namespaces=["/", "/extra"])
    for room in ("a", "b", "c"):
        assert client.call("join", {"room": room}) == {"ok": True}
    full = {"ok": False, "reason": "you are in 3 rooms already: leave one first"}
    assert client.call("join", {"room": "d"}, namespace="/extra") == full
    assert client.call("leave", {"room": "a"}) == {"ok": True}
    assert client.call("join", {"room": "d"}, namespace="/extra") == {"ok": True}
    # And the other way round: its room in "/extra" counts against a join in "/".
    assert client.call("join", {"room": "a"}) == full


# Packets and requests ---------------------------------------------------------------------------


@pytest.mark.parametrize("frame", ['42["echo"', '42[["echo"],{}]', "zz", "4" + "[" * 5000])
def test_a_malformed_frame_costs_one_line_and_closes_its_connection_at_once(serve, caplog, frame):
    server = serve()
    ws = RawWebSocket(server.url)
    ws.ws.send(frame)
    ws.ws.send(frame)  # the second is dropped unread
    assert ws.closed()
    wait_until(lambda: server.app.disconnects, "the app's disconnect handler: no ghost")
    closed = [r.getMessage() for r in caplog.records if "malformed packet" in r.getMessage()]
    assert len(closed) == 1 and closed[0].startswith(f"closed {ws.eio_sid}: malformed packet (")
    assert tracebacks(caplog) == []
    ws.close()


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_under_socketio_run_werkzeug_ends_a_connection_with_its_websocket(serve, monkeypatch):
    """After the close frame, the end of the connection: Werkzeug reads no next request from it."""
    given = {}
    monkeypatch.setattr(SocketIO, "run", lambda self, app, **options: given.update(options))
    app, socketio = make_app()
    socketio.run(app, port=0)
    server = serve((app, socketio), server={"request_handler": given["request_handler"]})
    for _ in range(50):
        ws = RawWebSocket(server.url)
        ws.ws.send("zz")
        # websocket-client answers the server's close frame with its own, as a browser does.
        while ws.ws.recv_data(control_frame=True)[0] != websocket.ABNF.OPCODE_CLOSE:
            pass
        while ws.ws.sock.recv(4096):  # nothing after the close handshake but the end of the connection
            pass
        ws.ws.sock.close()


@pytest.mark.parametrize(
    "body",
    [b"zz", b"2probe", b"x" * 17_000, b"\xff\xfe"],
    ids=["not-engineio", "ping-from-a-client", "oversized", "not-utf-8"],
)
def test_a_bad_polling_post_gets_a_400_and_ends_the_session(serve, caplog, body):
    server = serve()
    session_url, _ = polling_session(server.url)
    for _ in range(2):
        answer = requests.post(session_url, data=body, timeout=DEADLINE)
        assert (answer.status_code, answer.text) == (400, "malformed or oversized packet: connection closed")
    wait_until(lambda: server.app.disconnects, "the session to leave Socket.IO")
    assert len([r for r in caplog.records if "malformed packet" in r.getMessage()]) == 1
    assert tracebacks(caplog) == []


@pytest.mark.parametrize(
    "body", [b"zz", b'42/extra,["echo"'], ids=["refused-at-the-edge", "undecodable-socketio-packet"]
)
def test_a_bad_polling_post_closes_every_namespace_of_its_connection_only(serve, clients, body):
    """Over long-polling, a malformed packet ends the connection in "/" and "/extra" alike."""
    server = serve()
    bystander = clients(server.url, namespaces=["/", "/extra"])
    session_url, _ = polling_session(server.url, namespaces=("/", "/extra"))
    requests.post(session_url, data=body, timeout=DEADLINE)
    # Socket.IO's disconnect, for each namespace, waits in the session for the next GET.
    packets = requests.get(session_url, timeout=DEADLINE).text.split("\x1e")
    assert {"41", "41/extra,"} <= set(packets)
    wait_until(lambda: len(server.app.disconnects) == 2, "the app's disconnect handler in each namespace")
    assert {namespace for namespace, _ in server.app.disconnects} == {"/", "/extra"}
    assert bystander.call("echo", "still", namespace="/extra") == {"ok": True}
    assert bystander.call("echo", "still") == {"ok": True, "name": None}
    assert len(server.app.disconnects) == 2  # the bystander's connection is untouched


def test_a_good_polling_post_passes_through(serve):
    server = serve()
    session_url, _ = polling_session(server.url)
    answer = requests.post(session_url, data=b'421["echo","hi"]', timeout=DEADLINE)
    assert (answer.status_code, answer.text) == (200, "OK")
    assert '431[{"ok":true,"name":null}]' in requests.get(session_url, timeout=DEADLINE).text


def test_a_request_on_a_closed_session_gets_a_400_not_a_traceback(serve, caplog):
    server = serve()
    session_url, _ = polling_session(server.url)
    assert requests.post(session_url, data=b"1", timeout=DEADLINE).text == "OK"  # the client's CLOSE
    answer = requests.get(session_url, timeout=DEADLINE)
    assert answer.status_code == 400
    assert tracebacks(caplog) == []


def test_only_trusted_hosts_are_answered_but_open_paths_answer_any(serve):
    server = serve()
    evil = {"Host": f"evil.example:{server.port}"}
    for path in ("/", "/socket.io/?EIO=4&transport=polling"):
        answer = requests.get(server.url + path, headers=evil, timeout=DEADLINE)
        assert (answer.status_code, answer.text) == (400, "untrusted host: add it to TRUSTED_HOSTS")
    assert requests.get(server.url + "/healthz", headers=evil, timeout=DEADLINE).status_code == 200
    for host in (f"localhost:{server.port}", f"127.0.0.1:{server.port}"):
        assert requests.get(server.url + "/", headers={"Host": host}, timeout=DEADLINE).text == "page"


def test_the_own_origin_and_allowed_origins_connect_others_do_not(serve):
    app, socketio_ = Flask(__name__), None
    app.config["SOCKETIO_GUARD_ALLOWED_ORIGINS"] = ["http://allowed.example"]
    socketio_ = SocketIO(app, async_mode="threading")
    SocketIOGuard(app, socketio_)
    server = serve((app, socketio_))
    handshake = server.url + "/socket.io/?EIO=4&transport=polling"
    for origin, status in [
        (server.url, 200),
        ("http://allowed.example", 200),
        ("http://evil.example", 400),
        (server.url.replace("http:", "https:"), 400),
    ]:
        answer = requests.get(handshake, headers={"Origin": origin}, timeout=DEADLINE)
        assert answer.status_code == status, origin
    behind_tls = {"Origin": server.url.replace("http:", "https:"), "X-Forwarded-Proto": "https"}
    assert requests.get(handshake, headers=behind_tls, timeout=DEADLINE).status_code == 200


def test_an_origin_rule_of_the_apps_own_is_kept(serve):
    app = Flask(__name__)
    socketio_ = SocketIO(app, async_mode="threading", cors_allowed_origins="*")
    SocketIOGuard(app, socketio_)
    server = serve((app, socketio_))
    handshake = server.url + "/socket.io/?EIO=4&transport=polling"
    answer = requests.get(handshake, headers={"Origin": "http://anyone.example"}, timeout=DEADLINE)
    assert answer.status_code == 200


# What a browser offers, byte for byte (Chromium and Firefox): per-message deflate, RFC 7692.
BROWSERS_OFFER = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"


def agreed_extensions(url: str) -> str:
    """The extensions the server agrees to when a client offers what a browser offers."""
    ws_url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    ws = websocket.create_connection(ws_url, timeout=DEADLINE, header=[BROWSERS_OFFER])
    try:
        return ws.getheaders().get("sec-websocket-extensions", "")
    finally:
        ws.close(timeout=1)


@pytest.mark.parametrize("compression", [False, True], ids=["default", "WEBSOCKET_COMPRESSION"])
def test_a_browsers_offer_of_per_message_deflate_is_struck_unless_compression_is_on(serve, compression):
    app = Flask(__name__)
    app.config["SOCKETIO_GUARD_WEBSOCKET_COMPRESSION"] = compression
    socketio_ = SocketIO(app, async_mode="threading")
    SocketIOGuard(app, socketio_)
    agreed = agreed_extensions(serve((app, socketio_)).url)
    assert agreed.startswith("permessage-deflate") if compression else agreed == "", agreed


# Installing ---------------------------------------------------------------------------------------


def test_init_app_fits_an_app_factory_and_fills_in_the_defaults():
    guard, socketio_ = SocketIOGuard(), SocketIO()
    app = Flask(__name__)
    socketio_.init_app(app, async_mode="threading")
    guard.init_app(app, socketio_)
    assert app.extensions["socketio_guard"] is guard
    assert {key: app.config[key] for key in DEFAULTS} == DEFAULTS
    assert socketio_.server.eio.max_http_buffer_size == 16 * 1024


def test_an_empty_list_of_trusted_hosts_is_refused_not_read_as_every_host():
    app = Flask(__name__)
    app.config["SOCKETIO_GUARD_TRUSTED_HOSTS"] = []
    with pytest.raises(ValueError, match="SOCKETIO_GUARD_TRUSTED_HOSTS is empty"):
        SocketIOGuard(app, SocketIO(app, async_mode="threading"))


def test_secret_comes_from_the_environment_and_is_required_in_production(monkeypatch):
    monkeypatch.setenv("SOME_SECRET", "s3cret")
    assert secret("SOME_SECRET", production=True) == "s3cret"
    monkeypatch.delenv("SOME_SECRET")
    assert len(secret("SOME_SECRET", production=False)) == 32  # a throwaway one, for a demo
    with pytest.raises(SystemExit, match="SOME_SECRET must be set when PRODUCTION=1"):
        secret("SOME_SECRET", production=True)
