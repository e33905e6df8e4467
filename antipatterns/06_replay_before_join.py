"""Antipattern 06: the missed messages replayed first, the rooms joined after.

What it does
    Chapter 06's app with one idea changed: load the history, then subscribe,
    the order many chat apps use so that no live message comes before the
    history it follows. `rejoin`, which reads a reconnecting page's `auth`,
    no longer puts the connection back in its rooms: the connect replays each
    room from the page's cursor as before (`replay` pages, then
    `replay_done`), and the page it serves joins each room (`join`) once that
    room's replay is done.

Why is this bad?
    Between the replay's last read of the log and the page's `join`, the
    page is in neither: a message stored in that window is not in the replay
    (it was read before) and is not sent live (the page is not in the room
    yet). The window is a round trip to the page and back, long on a slow
    phone network, and every reconnect opens it, in every room, while the
    others keep talking. Nothing fails and nothing is logged. And
    what the page typed offline, sent as soon as it connects, is refused:
    it is not in the room yet.

    Expected: every message stored after the page's cursor is sent to it,
    in the replay or live. Actual: one stored between `replay_done` and the
    `join` is sent to it neither way. The test counts what the server sends:
    chapter 06's own page hides the loss, late, as it finds the gap at the
    next message or `head` (every HEAD_SECONDS) and asks for it (`fetch`);
    a page that does not ask for gaps never shows it.

Use instead
    chapters/06_delivery_guarantees/app.py `rejoin`: the connect handler
    joins the rooms, then replays. A message stored after the join is sent
    live; one stored before is in what the replay reads; one stored in
    between arrives both ways, and the page drops the second by its number.

How to run it
    In place of the chapter's app.py, with its Redis and nginx (the chapter's app.py says how):
    PORT=5001 INSTANCE_NAME=chat-1 python antipatterns/06_replay_before_join.py
    PORT=5002 INSTANCE_NAME=chat-2 python antipatterns/06_replay_before_join.py
    PORT=5003 INSTANCE_NAME=chat-3 python antipatterns/06_replay_before_join.py

Differs from chapters/06_delivery_guarantees/app.py
    rejoin: reads the rooms and cursors in `auth`, and joins none of them
    index: serves PAGE instead of the chapter's templates/index.html
    PAGE: the chapter's page, which joins each room when its replay is done
"""

import sys
from pathlib import Path

# The chapter's folder: its app.py, imported as a module (it patches the standard library for
# gevent first, then builds the app), and the modules that imports.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "chapters" / "06_delivery_guarantees"))
import app as chapter
from app import MAX_NAME, MAX_ROOM, MAX_ROOMS, SERVED_BY
from flask import render_template_string, session
from flask_socketio_guard import Refused, require
from roomlog import CURSOR, START


# --8<-- [start:rejoin]
def rejoin(auth):
    """`auth` names the page, its rooms and, per room, the last message id it showed.

    Returns {room: cursor}. A room without a cursor starts at START: the whole log.
    """
    name = require(auth, name=MAX_NAME)["name"]
    names, cursors = auth.get("rooms"), auth.get("cursors", {})
    if not isinstance(names, list) or len(names) > MAX_ROOMS:
        raise Refused(f"'rooms' must be a list of at most {MAX_ROOMS} rooms")
    ids = cursors.values() if isinstance(cursors, dict) else [None]
    if not all(isinstance(c, str) and CURSOR.match(c) for c in ids):
        raise Refused("'cursors' must map rooms to message ids, like '1733580000000-42'")
    back_in = [require({"room": room}, room=MAX_ROOM)["room"] for room in names]
    session["name"] = name
    # expected: join_room(chat_room(room)) for each room here, before the replay reads the log;
    # actual: no room joined: the page joins after its replay, and what is stored in between
    # is sent to it neither way
    return {room: cursors.get(room, START) for room in back_in}


# --8<-- [end:rejoin]

# --8<-- [start:page]
# The chapter's page with one listener added to its script (Jinja's template inheritance).
PAGE = """{% extends "index.html" %}
{% block arrive %}{{ super() }}
    // The page's socket is made below this block: listen once the whole script has run.
    queueMicrotask(() =>
      socket.on("replay_done", (msg) => {
        // expected: no join: the server put the page back in its rooms at the connect;
        // actual: the page subscribes once it has the history, a round trip too late
        socket.emit("join", { room: msg.room, name: myName });
      }),
    );
{% endblock %}"""
# --8<-- [end:page]


def index():
    return render_template_string(PAGE, served_by=SERVED_BY)


chapter.rejoin = rejoin  # the connect handler looks it up in the chapter's module, at each connect
chapter.app.view_functions["index"] = index

if __name__ == "__main__":
    chapter.serve()
