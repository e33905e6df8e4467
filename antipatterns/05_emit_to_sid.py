"""Antipattern 05: task progress addressed to the sid of the connection that asked.

What it does
    Chapter 05's web instance, with one definition changed: `reply_to`, the
    room a task started from a socket sends its events to, is the requesting
    connection's sid instead of its user's room.

Why is this bad?
    A sid names one connection, and a page gets a new one every time it
    reconnects (python-socketio#472): a wifi blip, a laptop lid, a deploy
    that restarts the instance. Every event the task sends after that goes to
    a sid nobody holds. The task succeeds, the page shows a bar stuck where
    the old connection left it, and never a result. The user's other tabs
    never hear of it either.

Use instead
    chapters/05_celery/taskboard/events.py `reply_to`: the room "user:<id>",
    which every connection of that user joins at connect, from its token.

How to run it
    python antipatterns/05_emit_to_sid.py   (same settings as the chapter's app.py)

Differs from chapters/05_celery/taskboard/events.py
    reply_to: the connection's sid instead of the user's room
"""

import sys
from pathlib import Path

# The chapter's web instance, loaded by path ("05_celery" is not an importable package name):
# importing its app.py patches the standard library for gevent, then builds the app. Everything
# below is created after the patch.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "chapters" / "05_celery"))
from app import app
from flask import request
from taskboard import events
from taskboard.web import serve


# --8<-- [start:reply_to]
def reply_to():
    # expected: the user's room, which the page is back in after a reconnect;
    # actual: this connection's sid, which dies with it
    return request.sid


# --8<-- [end:reply_to]

events.reply_to = reply_to

if __name__ == "__main__":
    serve(app)
