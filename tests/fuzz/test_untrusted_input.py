"""Every app against inputs no page of ours sends: each gets a reason or costs its connection, no more.

Hypothesis writes the inputs: event payloads with the wrong types, missing and extra keys,
extra arguments, strings on and over the limits, bytes; raw WebSocket frames and
long-polling bodies that are almost Engine.IO or Socket.IO packets. Fixed lists add the
packets known to have broken python-engineio and python-socketio. Throughout, the server
stays up, writes at most one line per connection and no traceback, and a bystander
in its room (`lobby` in a chat, its user's in chapter 05 and the recipe) goes on as before:
each of its lines comes back once, in order.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from lab.apps import healthz
from lab.raw import PollingSession
from tests.fuzz.strategies import (
    JUST_OVER_THE_FRAME_LIMIT,
    JUST_UNDER_THE_FRAME_LIMIT,
    MAX_EVENT_BYTES,
    events,
    frames,
    fuzz_settings,
    polling_bodies,
)
from tests.fuzz.wire import (
    CLOSED_LINE,
    REFUSED_POST,
    expected_line,
    largest_frame,
)

# An ack normally takes milliseconds; this is how long a test waits for one before failing.
ACK_DEADLINE = 5.0
# A frame this close to the size limit may go either way: the ack id adds a few digits.
SIZE_SLACK = 32
# The bystander speaks after this many examples, after each fuzz test, and last of all.
EXAMPLES_PER_LINE = 20

# Frames that python-engineio or python-socketio cannot decode: each closes its connection.
MALFORMED = {
    "not-engineio": "zz",
    "empty-frame": "",
    "bad-base64": "b!!!",
    "unknown-socketio-type": "4z",
    "socketio-type-7": "47",
    "bad-json": '42["join",',
    "event-named-by-a-list": '42[["join"],{}]',
    "event-with-no-name": "42[]",
    "event-as-object": "42{}",
    "event-named-by-a-number": "42[1]",
    "deep-engineio-json": "4" + "[" * 5_000,
    "deep-socketio-json": "42" + "[" * 5_000,
    "bytes-with-no-event": b"\x00\x01",
}
# Unknown packets python-engineio and python-socketio pass over: no line, no harm.
HARMLESS = {
    "engineio-type-9": "9",
    "socketio-ack-for-nothing": "43",
    "disconnect-from-other-namespace": "41/foo,",
}
# Garbage after garbage on one WebSocket, in one write: the second arrives before the server has
# closed the connection for the first. One line in all.
GARBAGE_TWICE = {
    "socketio-then-engineio": ["42[]", "zz"],
    "bytes-then-engineio": [b"\x00", "zz"],
    "socketio-twice": ["42[]", "42[]"],
    "engineio-twice": ["zz", "zz"],
}
# Long-polling bodies: the WebSocket list (an empty body is no packet at all: it is below),
# and the Engine.IO packets a client never POSTs.
MALFORMED_POSTS = {
    **{
        name: frame.encode() if isinstance(frame, str) else frame
        for name, frame in MALFORMED.items()
        if name != "empty-frame"
    },
    "not-utf-8": b"\xff\xfe",
    "second-packet-bad": b'42["leave",{"room":"x"}]\x1e42[]',
}
UNEXPECTED_POSTS = {
    **{name: frame.encode() for name, frame in HARMLESS.items()},
    "engineio-open": b"0",
    "engineio-ping": b"2",
    "engineio-noop": b"6",
    "empty-body": b"",
}


def ids(cases: dict) -> list:
    return [pytest.param(value, id=name) for name, value in cases.items()]


def assert_up(fuzzed) -> None:
    assert healthz(fuzzed.app.url)["status"] == "ok"


# -- event payloads, through a real python-socketio client --------------------------------------


def check_answers(fuzzed, calls: list[tuple[str, tuple]], acks: list, closed: bool) -> None:
    """Each ack is {"ok": True, ...} or {"ok": False, "reason": ...} with its `error` event;
    a close comes only for a frame over the size limit, and always for one."""
    sizes = [largest_frame(event, args) for event, args in calls]
    if closed:
        assert max(sizes) > MAX_EVENT_BYTES - SIZE_SLACK, f"closed on frames of {sizes} bytes"
    else:
        assert max(sizes) <= MAX_EVENT_BYTES + SIZE_SLACK, f"answered frames of {sizes} bytes"
    errors = []
    for (name, _), ack in zip(calls, acks, strict=True):
        if ack is None:
            continue  # the connection closed first
        assert len(ack) == 1 and isinstance(ack[0], dict), ack
        answer = ack[0]
        if answer.get("ok") is True:
            continue
        assert set(answer) == {"ok", "reason"} and answer["ok"] is False, answer
        assert isinstance(answer["reason"], str) and answer["reason"].strip(), answer
        errors.append({"event": name, "reason": answer["reason"]})
    assert fuzzed.hostile.heard_errors(errors, timeout=2), f"not every error event of {errors}"


def test_any_payload_gets_an_ack_with_a_reason_or_an_oversized_one_a_close(fuzzed):
    """Any arguments to any event get {"ok": True} or {"ok": False, "reason"} and an `error` event."""
    batches = 0
    event, payload, _ = fuzzed.door.cheap

    def with_text(text):  # an event the app takes from anyone, its text near the frame limit
        return [(event, ({**(payload or {}), "text": text},))]

    @fuzz_settings(30)
    @given(calls=st.lists(events(fuzzed.events), min_size=1, max_size=4))
    @example(calls=with_text(JUST_UNDER_THE_FRAME_LIMIT))
    @example(calls=with_text(JUST_OVER_THE_FRAME_LIMIT))
    @example(calls=with_text(b"\x00" * (MAX_EVENT_BYTES + 1)))
    def one_batch(calls):
        nonlocal batches
        acks, closed = fuzzed.hostile.send_all(calls, timeout=ACK_DEADLINE)
        check_answers(fuzzed, calls, acks, closed)
        batches += 1
        if batches % EXAMPLES_PER_LINE == 0:
            fuzzed.bystander.still_chats()

    one_batch()
    assert "Traceback" not in fuzzed.log.since(0)
    fuzzed.bystander.still_chats()


# -- raw WebSocket frames ------------------------------------------------------------------------


def test_garbage_websocket_frames_cost_at_most_one_log_line_per_connection(fuzzed):
    """Up to three garbage frames in one write to a fresh WebSocket cost at most one line; no traceback."""
    start, connections = fuzzed.log.mark(), 0

    @fuzz_settings(60)
    @given(sent=st.lists(frames, min_size=1, max_size=3))
    def one_connection(sent):
        nonlocal connections
        connections += 1
        with fuzzed.door.raw_websocket("raw") as ws:
            mark = fuzzed.log.mark()
            ws.send(*sent)
            state = ws.settle()
        assert state != "silent", "the server neither answered nor closed the connection"
        lines = fuzzed.log.lines_since(mark)
        assert len(lines) <= 1 and all(expected_line(line, ws.eio_sid) for line in lines), lines
        assert_up(fuzzed)
        if connections % EXAMPLES_PER_LINE == 0:
            fuzzed.bystander.still_chats()

    one_connection()
    # Lines written after a connection's own check (a handler's refusal runs in its own thread).
    lines = fuzzed.log.lines_since(start)
    assert len(lines) <= connections and all(expected_line(line) for line in lines), lines
    fuzzed.bystander.still_chats()


@pytest.mark.parametrize("frame", ids(MALFORMED))
def test_a_malformed_frame_costs_one_line_and_its_connection_which_leaves_its_rooms_at_once(fuzzed, frame):
    """A frame the libraries cannot decode: one `closed` line, the connection closed, its rooms left."""
    name = fuzzed.new_name("raw")
    with fuzzed.door.raw_websocket(name) as ws:
        # A connection in a room (the bystander's, where clients name rooms) sends one bad frame.
        fuzzed.door.join_raw(ws, name)
        mark = fuzzed.log.mark()
        ws.send(frame)
        assert ws.settle() == "closed"
    # It leaves its room now, not a ping timeout later; the log holds one line about it.
    fuzzed.bystander.hears_leave(name, ws.eio_sid, "websocket")
    lines = fuzzed.log.lines_since(mark)
    assert len(lines) == 1 and expected_line(lines[0], ws.eio_sid), lines
    assert_up(fuzzed)


@pytest.mark.parametrize("sent", ids(GARBAGE_TWICE))
def test_garbage_after_garbage_on_one_websocket_is_dropped_without_a_line(fuzzed, sent):
    """A second bad frame, sent before the server closed the connection: still one line, no traceback."""
    with fuzzed.door.raw_websocket("raw") as ws:
        mark = fuzzed.log.mark()
        ws.send(*sent)
        assert ws.settle() == "closed"
        ws.wait_dropped()  # the second frame is read after the CLOSE went out
    lines = fuzzed.log.lines_since(mark)
    assert len(lines) == 1 and expected_line(lines[0], ws.eio_sid), lines
    assert_up(fuzzed)


@pytest.mark.parametrize("frame", ids(HARMLESS))
def test_an_unknown_but_harmless_frame_is_ignored_without_a_line(fuzzed, frame):
    """An unknown packet the libraries pass over: no line in the log, no harm to anyone."""
    with fuzzed.door.raw_websocket("raw") as ws:
        mark = fuzzed.log.mark()
        ws.send(frame)
        assert ws.settle() != "silent"  # open or closed, as long as the server has read it
    assert fuzzed.log.lines_since(mark) == []
    assert_up(fuzzed)


def test_a_websocket_frame_over_the_size_limit_closes_the_connection(fuzzed):
    """A frame over 16 KiB: python-engineio closes the connection, and its rooms are left at once."""
    name = fuzzed.new_name("big")
    with fuzzed.door.raw_websocket(name) as ws:
        fuzzed.door.join_raw(ws, name)
        mark = fuzzed.log.mark()
        ws.send('42["message",{"room":"lobby","text":"' + "x" * MAX_EVENT_BYTES + '"}]')
        assert ws.settle() == "closed"
    fuzzed.bystander.hears_leave(name, ws.eio_sid, "websocket")
    assert len(fuzzed.log.lines_since(mark)) <= 1
    assert_up(fuzzed)


# -- long-polling POSTs --------------------------------------------------------------------------


def check_post_answer(response) -> None:
    """200, or 400 with the refusal; never a traceback, not even in the body."""
    assert response.status_code in (200, 400), (response.status_code, response.text[-500:])
    if response.status_code == 400:
        assert response.text == REFUSED_POST


def lines_for(fuzzed, session: PollingSession, mark: int) -> list[str]:
    """The lines since `mark`, at most one, each about this session; never a traceback."""
    lines = fuzzed.log.lines_since(mark)
    assert len(lines) <= 1 and all(expected_line(line, session.eio_sid) for line in lines), lines
    return lines


def assert_disconnected(session: PollingSession) -> None:
    """The next GET brings the Socket.IO DISCONNECT packet, or finds the session gone."""
    response = session.get()
    assert response.status_code == 400 or "41" in response.text.split("\x1e"), response.text


def test_garbage_polling_posts_are_answered_200_or_400_and_cost_at_most_one_line(fuzzed):
    """Any POST body: an answer within the deadline, 200 or 400, and at most one log line per session."""
    sessions = 0

    @fuzz_settings(40)
    @given(body=polling_bodies)
    def one_session(body):
        nonlocal sessions
        sessions += 1
        session = fuzzed.door.polling_session("poll")
        mark = fuzzed.log.mark()
        response = session.post(body)
        check_post_answer(response)
        closed = any(CLOSED_LINE.search(line) for line in lines_for(fuzzed, session, mark))
        # A closed session's next GET brings the DISCONNECT; an open one is closed as a client would.
        if closed or response.status_code == 400:
            assert_disconnected(session)
        else:
            session.close()
        lines_for(fuzzed, session, mark)  # still one line at most, whatever the cleanup met
        assert_up(fuzzed)
        if sessions % EXAMPLES_PER_LINE == 0:
            fuzzed.bystander.still_chats()

    one_session()
    fuzzed.bystander.still_chats()


@pytest.mark.parametrize("body", ids(MALFORMED_POSTS))
def test_a_malformed_post_costs_one_line_and_its_session_which_leaves_its_rooms_at_once(fuzzed, body):
    """A POST the libraries cannot decode: one `closed` line, a DISCONNECT for the session, its rooms left."""
    name = fuzzed.new_name("poll")
    # A session in the bystander's room POSTs one bad body: it is closed, with one line.
    session = fuzzed.door.polling_session(name)
    fuzzed.door.join_raw(session, name)
    mark = fuzzed.log.mark()
    check_post_answer(session.post(body))
    assert len(lines_for(fuzzed, session, mark)) == 1
    # It leaves its room at once, and its next GET brings the DISCONNECT.
    fuzzed.bystander.hears_leave(name, session.eio_sid, "polling")
    assert_disconnected(session)
    # More garbage on the same session is dropped without a word.
    mark = fuzzed.log.mark()
    assert session.post(body).status_code in (200, 400)
    assert fuzzed.log.lines_since(mark) == []
    assert_up(fuzzed)


@pytest.mark.parametrize("body", ids(UNEXPECTED_POSTS))
def test_an_unexpected_post_is_answered_at_once(fuzzed, body):
    """A POST of a packet a client never sends is answered within the deadline, with at most one line."""
    session = fuzzed.door.polling_session("poll")
    mark = fuzzed.log.mark()
    # python-engineio ends a session on a packet it does not expect, and that waits for a GET.
    check_post_answer(session.post(body))
    session.close()
    lines_for(fuzzed, session, mark)
    assert_up(fuzzed)


def test_a_post_after_the_client_closed_its_session_is_answered_without_a_traceback(fuzzed):
    """A POST after the client's own CLOSE (`1`) gets 200 or 400, and costs no traceback."""
    session = fuzzed.door.polling_session("poll")
    assert session.post(b"1").status_code == 200
    mark = fuzzed.log.mark()
    response = session.post(b"40")
    assert response.status_code in (200, 400) and "Traceback" not in response.text, response.text[-500:]
    lines_for(fuzzed, session, mark)
    assert_up(fuzzed)


def test_a_post_over_the_size_limit_gets_400_and_closes_the_session(fuzzed):
    """A POST over 16 KiB gets 400 and the refusal; the session leaves its rooms at once."""
    name = fuzzed.new_name("big")
    session = fuzzed.door.polling_session(name)
    fuzzed.door.join_raw(session, name)
    mark = fuzzed.log.mark()
    response = session.post(b"4" + b"x" * MAX_EVENT_BYTES)
    assert (response.status_code, response.text) == (400, REFUSED_POST)
    assert len(fuzzed.log.lines_since(mark)) == 1
    fuzzed.bystander.hears_leave(name, session.eio_sid, "polling")
    assert_disconnected(session)
    assert_up(fuzzed)


def test_afterwards_the_log_holds_no_traceback_and_the_bystander_still_chats(fuzzed):
    """Afterwards: no traceback (bar Werkzeug's writer race); the bystander heard each line once, in order."""
    fuzzed.bystander.still_chats()
    fuzzed.log.lines_since(0)  # a traceback written after its own test had checked
