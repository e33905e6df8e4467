"""What the fuzz tests send: event payloads, raw WebSocket frames and polling bodies no page of ours sends.

Each strategy leans towards the inputs that break validators and decoders: strings just
under and over the length limits, strings that are empty once stripped, every JSON type
where a string belongs, bytes (a binary event), extra keys and extra arguments, and
frames that are almost Engine.IO or Socket.IO packets. Surrogates are left out: every
client encodes text as UTF-8, which cannot carry a lone one; astral characters are in.
"""

from __future__ import annotations

import json
import os
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

# FUZZ_SCALE=10 runs ten times as many examples of every fuzz test (a long local run).
FUZZ_SCALE = float(os.environ.get("FUZZ_SCALE", "1"))
# FUZZ_SHRINK=1 shrinks a failing input to its smallest form. Off by default: every attempt
# at an input that hangs the server waits out a timeout, and shrinking makes hundreds.
FUZZ_SHRINK = os.environ.get("FUZZ_SHRINK") == "1"


def fuzz_settings(examples: int) -> settings:
    """Deterministic runs, as every test here is: the same examples each time, no database.

    No deadline: an example's time is a network round trip to a real server. The
    health checks that time example generation do not apply to payloads built to be large.
    A test stops at its first failing input and prints it (shrunk with FUZZ_SHRINK=1).
    """
    phases = [Phase.explicit, Phase.generate, *([Phase.shrink] if FUZZ_SHRINK else [])]
    return settings(
        max_examples=max(1, round(examples * FUZZ_SCALE)),
        phases=phases,
        report_multiple_bugs=False,
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=False,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


# The apps' limits, as chapters/*/app.py set them (config section): the strategies aim at them.
MAX_ROOM = MAX_NAME = 32
MAX_TEXT = 500
MAX_SECONDS = 5
MAX_EVENT_BYTES = 16 * 1024

# Every character UTF-8 can carry: astral ones (emoji) yes, lone surrogates no.
characters = st.characters(codec="utf-8")
short_text = st.text(characters, max_size=40)
# Characters that cost one byte, two, four, and six escaped as JSON (\uXXXX), and whitespace.
PADDING = ["x", "é", "😀", "\u2028", " ", "\t"]
AROUND_LIMITS = [0, 1, MAX_NAME - 1, MAX_NAME, MAX_NAME + 1, MAX_TEXT - 1, MAX_TEXT, MAX_TEXT + 1]
# Strings that bring a frame just under the size limit, and over it (an emoji is 12 bytes as JSON).
JUST_UNDER_THE_FRAME_LIMIT = "x" * (MAX_EVENT_BYTES - 100)
JUST_OVER_THE_FRAME_LIMIT = "😀" * (MAX_EVENT_BYTES // 12 + 1)
NEAR_THE_FRAME_LIMIT = [JUST_UNDER_THE_FRAME_LIMIT, JUST_OVER_THE_FRAME_LIMIT]


@st.composite
def sized_text(draw: st.DrawFn) -> str:
    """A string whose length sits on a limit, padded with whitespace that strip() removes."""
    core = draw(st.sampled_from(PADDING)) * draw(st.sampled_from(AROUND_LIMITS))
    pad = draw(st.sampled_from(["", " ", "\n\t "]))
    return pad + core + pad


strings = st.one_of(
    st.sampled_from(["", " ", "\t\n", "lobby", " lobby ", "\x00", "null", "😀" * MAX_ROOM]),
    short_text,
    sized_text(),
)

json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),  # past 64 bits: JSON does not care
    st.floats(),  # NaN and Infinity too: Python's json writes and reads them
    strings,
    st.binary(max_size=64),  # bytes anywhere make python-socketio send a binary event
)
json_values = st.recursive(
    json_leaves,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(short_text, children, max_size=4),
    max_leaves=12,
)


def weighted(*choices: tuple[int, st.SearchStrategy]) -> st.SearchStrategy:
    """Draw from one of the strategies, each as often as its weight (out of their sum)."""
    total = sum(weight for weight, _ in choices)

    @st.composite
    def pick(draw: st.DrawFn) -> Any:
        roll = draw(st.integers(0, total - 1))
        for weight, strategy in choices:
            if roll < weight:
                return draw(strategy)
            roll -= weight
        raise AssertionError("unreachable")

    return pick()


# A field's value: mostly a string, else any JSON value or bytes; now and then one that makes
# the frame too large (its connection is closed, so more would waste the run).
field_values = weighted((60, strings), (37, json_values), (3, st.sampled_from(NEAR_THE_FRAME_LIMIT)))


def payload_objects(fields: tuple[str, ...]) -> st.SearchStrategy[dict]:
    """Objects with each of `fields` or with some missing, and extra keys."""
    values = {key: field_values for key in fields}
    named = st.one_of(st.fixed_dictionaries(values), st.fixed_dictionaries({}, optional=values))
    extra = st.dictionaries(short_text, json_values, max_size=2)
    return st.builds(lambda extra, named: {**extra, **named}, extra, named)


def event_args(fields: tuple[str, ...]) -> st.SearchStrategy[tuple]:
    """The arguments of one event: mostly one object, else none, another value, or extra arguments."""
    return weighted(
        (8, st.tuples(payload_objects(fields))),
        (1, st.just(())),
        (1, st.tuples(json_values)),
        (1, st.tuples(payload_objects(fields), json_values)),
        (1, st.lists(json_values, min_size=3, max_size=4).map(tuple)),
    )


def runs_work(args: tuple) -> bool:
    """True when `slow_io`/`cpu_work` would accept these arguments and really sleep or burn CPU."""
    if len(args) != 1 or not isinstance(args[0], dict):
        return False
    seconds = args[0].get("seconds")
    return isinstance(seconds, int | float) and not isinstance(seconds, bool) and 0 < seconds <= MAX_SECONDS


# Each event an app may answer, and the fields its payload must hold.
FIELDS = {
    "join": ("room", "name"),
    "leave": ("room",),
    "message": ("room", "text", "id"),  # chapter 06 wants the sender's id; the others ignore it
    "broadcast": ("text",),
    "ping": (),
    "fetch": ("room", "after"),  # chapter 06: the messages after a message id
    "slow_io": ("seconds",),
    "cpu_work": ("seconds",),
    "start": ("steps", "fail_at"),  # chapter 05: a report task (queued: no worker runs it)
    "cancel": ("task",),
    "whoami": (),  # the recipe
    "notify_me": ("text",),
}
WORK_EVENTS = {"slow_io", "cpu_work"}


def events(names: tuple[str, ...]) -> st.SearchStrategy[tuple[str, tuple]]:
    """(event, arguments) for the named events; never a `slow_io`/`cpu_work` that would run."""
    per_event = [st.tuples(st.just(name), event_args(FIELDS[name])) for name in names]
    return st.one_of(per_event).filter(lambda call: call[0] not in WORK_EVENTS or not runs_work(call[1]))


# -- raw frames: almost Engine.IO and Socket.IO packets ------------------------------------------


def broken_json(value: Any, cut: int) -> str:
    """`value` as JSON (bytes as their repr), cut short when `cut` falls inside it."""
    text = json.dumps(value, default=repr)
    return text[:cut] if 0 < cut < len(text) else text


socketio_bodies = st.one_of(
    st.builds(broken_json, json_values, st.integers(0, 60)),
    st.builds(lambda depth, c: c * depth, st.integers(1, 3_000), st.sampled_from(["[", "{", '["a",'])),
    short_text,
)
# A Socket.IO packet: type, binary attachment count, namespace, ack id, then the data. With a
# type of `[` or `{`, python-engineio decodes the rest as JSON before python-socketio sees it.
socketio_packets = st.builds(
    lambda kind, attachments, namespace, ack, body: f"{kind}{attachments}{namespace}{ack}{body}",
    st.sampled_from("0123456789z[{"),
    st.sampled_from(["", "1-", "9-", "-"]),
    st.sampled_from(["", "/", "/admin,", "/,"]),
    st.sampled_from(["", "0", "12", "99999999999999999999"]),
    socketio_bodies,
)
engineio_text = st.one_of(
    st.builds(lambda kind, rest: kind + rest, st.sampled_from("0123456789b"), short_text),
    st.builds(lambda packet: "4" + packet, socketio_packets),
    short_text,
)
# Under the size limit: frames over it are closed by python-engineio before any decoding.
frames = st.one_of(engineio_text, st.binary(max_size=200)).filter(
    lambda frame: len(frame if isinstance(frame, bytes) else frame.encode()) <= MAX_EVENT_BYTES
)
# A long-polling POST body: Engine.IO packets joined by the record separator, or raw bytes.
polling_bodies = st.one_of(
    st.lists(engineio_text, min_size=1, max_size=3).map(lambda packets: "\x1e".join(packets).encode()),
    st.binary(max_size=200),
).filter(lambda body: len(body) <= MAX_EVENT_BYTES)
