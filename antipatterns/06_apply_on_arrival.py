"""Antipattern 06: a page that shows each message as it arrives.

What it does
    Chapter 06's app, serving the chapter's page with one function of its JavaScript
    changed: `arrive`, what the page does with each message the server sends it, live or
    in a replay, shows it at once, in the order it came. The page keeps the chapter's
    cursor, sends it on every reconnect and asks for every gap, as the chapter's does.

Why is this bad?
    The server delivers each message at least once, not exactly once, and not always in
    order: a replay and the live fan-out can both bring a message, a retried send is sent
    live again, and a message whose live copy was lost (Redis pub/sub keeps nothing) comes
    later, by a fetch, after the messages that followed it. Shown as they arrive, those
    messages appear twice and out of order, on this page and not on the next one, so two
    people in one room read two different conversations.

Use instead
    chapters/06_delivery_guarantees/templates/index.html `arrive`: drop a message whose
    number it has shown or holds, hold one that came early, and show the next in number
    order; the cursor is the number of the last message shown.

How to run it
    python antipatterns/06_apply_on_arrival.py   (same settings as the chapter's app.py)

Differs from chapters/06_delivery_guarantees/app.py
    index: serves PAGE instead of the chapter's templates/index.html
    PAGE: the chapter's page with its `arrive` block replaced: each message is shown as it arrives
"""

import sys
from pathlib import Path

# The chapter's app, loaded by path ("06_delivery_guarantees" is not an importable package
# name): importing its app.py patches the standard library for gevent, then builds the app.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "chapters" / "06_delivery_guarantees"))
from app import SERVED_BY, app, serve
from flask import render_template_string

# --8<-- [start:arrive]
# The chapter's page, all but one block of its script (Jinja's template inheritance).
PAGE = """{% extends "index.html" %}
{% block arrive %}
    function arrive(view, entry) {
      // expected: drop what is shown or held, hold what came early, show in number order;
      // actual: every arrival is shown at once, in the order it came
      showLine(entry);
      if (entry.seq > view.last) view.pending.set(entry.seq, entry);
      drain(view);
    }

    // What it holds is on the screen already: only the cursor waits for the gaps to fill.
    function drain(view) {
      while (view.pending.has(view.last + 1)) advance(view, view.pending.get(view.last + 1));
    }
{% endblock %}"""
# --8<-- [end:arrive]


def index():
    return render_template_string(PAGE, served_by=SERVED_BY)


app.view_functions["index"] = index

if __name__ == "__main__":
    serve()
