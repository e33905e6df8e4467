"""Chapter 01 with `always_connect=True`: the guard still tells a real connect from a forged one.

With that documented option python-socketio connects the client before its connect handler
runs, so "is it connected yet?" no longer tells the real connect from an event a client
named "connect". The chapter's app is run as it is, and as a copy with that one setting
changed; both must let a reconnecting page back into its room and refuse the forged event.
"""

from __future__ import annotations

import pytest

from lab.apps import start_app
from lab.processes import REPO_ROOT

CHAPTER = REPO_ROOT / "chapters" / "01_basic_chat" / "app.py"
CREATED = "socketio = SocketIO(app, async_mode=ASYNC_MODE)"


def with_always_connect(folder) -> str:
    """The chapter's app.py with `always_connect=True` and nothing else changed, in `folder`."""
    source = CHAPTER.read_text()
    assert source.count(CREATED) == 1, "the chapter no longer creates its SocketIO on one line"
    changed = folder / "app.py"
    changed.write_text(source.replace(CREATED, CREATED[:-1] + ", always_connect=True)"))
    return str(changed)


@pytest.mark.parametrize("always_connect", [False, True], ids=["default", "always-connect"])
def test_a_real_connect_rejoins_and_a_forged_one_is_refused(bench, clients, tmp_path, always_connect):
    """A page that reconnects is back in its room at once; a client's own `connect` event changes nothing."""
    script = with_always_connect(tmp_path) if always_connect else str(CHAPTER)
    app = start_app(
        bench, script, env={"JS_CLIENT_DIR": str(REPO_ROOT / "node_modules" / "socket.io-client" / "dist")}
    )
    bystander = clients("bystander").connect(app.url)
    assert bystander.call("join", {"room": "lobby", "name": "bystander"})["ok"]

    ann = clients("ann").connect(app.url, auth={"name": "ann", "rooms": ["lobby"]})
    # Its first event is a message, as one a page buffered while offline: it is in the room already.
    assert ann.call("message", {"room": "lobby", "text": "back"}) == {"ok": True}
    bystander.wait_for_event("system", lambda d: d["text"] == "ann is back in lobby")
    bystander.wait_for_event("message", lambda d: d["text"] == "back")

    forged = {"ok": False, "reason": "a client cannot send 'connect'; it is connected already"}
    assert ann.call("connect", {"name": "eve", "rooms": ["lobby"]}) == forged
    ann.wait_for_event("error", lambda d: d == {"event": "connect", "reason": forged["reason"]})
    assert ann.call("message", {"room": "lobby", "text": "still ann"}) == {"ok": True}
    bystander.wait_for_event("message", lambda d: d == {"room": "lobby", "name": "ann", "text": "still ann"})
    assert "Traceback" not in app.log_text()
