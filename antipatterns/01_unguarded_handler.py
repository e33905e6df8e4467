"""Antipattern 01: the chapter 01 chat with its guards against hostile clients taken off.

What it does
    Runs chapters/01_basic_chat/app.py, imported, not copied, with three
    things undone and nothing else: no error handler (`on_error_default`),
    python-socketio's own Engine.IO message handler put back in place of
    the chapter's `on_engineio_message`, and the app served without the
    `guard_the_edge` WSGI middleware (its Host check and its check of
    long-polling POST bodies go with it). The handlers, the payload checks,
    the rate limit, the room prefix, the origins and the size limit are the
    chapter's own.

Why is this bad?
    A client that is not the page can send what the handlers never expect.
    An event with two arguments makes the call raise TypeError before the
    handler runs: the sender gets no ack and no `error` event, and the log
    gets a traceback. A frame python-socketio cannot decode (`42["join"`)
    costs one traceback each, `message handler error`, and the connection
    stays open for the next one: one client can fill the disk. A frame that
    is not even Engine.IO (`zz`) kills the socket but not its session: the
    user stays in its rooms as a ghost until the ping timeout, about 45 s.

Use instead
    chapters/01_basic_chat/app.py: the `errors` section's on_error_default
    and the `edge` section's on_engineio_message and guard_the_edge.

How to run it
    python antipatterns/01_unguarded_handler.py   (same settings as the chapter)

Differs from chapters/01_basic_chat/app.py
    on_handler_error: unregistered, so a handler's exception escapes
    on_engineio_message: python-engineio's own message handler put back in its place
    guard_the_edge: the app served without it
"""

import sys
from pathlib import Path

# The chapter's app, loaded by path ("01_basic_chat" is not an importable package name).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "chapters" / "01_basic_chat"))
import app as chapter

# --8<-- [start:unguarded]
# expected: any exception in a handler becomes an `error` event, a failed ack and one log line;
# actual: it escapes to python-socketio, the sender hears nothing, the log gets a traceback.
chapter.socketio.default_exception_handler = None
# expected: a packet that cannot be decoded costs one log line and its connection;
# actual: python-engineio logs a traceback for each one and keeps the connection open.
chapter.socketio.server.eio.on("message", chapter.handle_socketio_packet)
# expected: a WebSocket frame that is not Engine.IO closes its session at once;
# actual: the socket dies, its session and rooms live on until the ping timeout.
chapter.app.wsgi_app = chapter.app.wsgi_app.__wrapped__
# --8<-- [end:unguarded]


if __name__ == "__main__":
    chapter.socketio.run(chapter.app, host=chapter.HOST, port=chapter.PORT, allow_unsafe_werkzeug=True)
