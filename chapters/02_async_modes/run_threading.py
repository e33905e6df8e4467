"""Chapter 02, threading mode: one OS thread per connection and per event, no monkey patching.

What this shows
    The chapter's app (app.py) served by Werkzeug with async_mode="threading".
    Nothing needs patching: a blocking call blocks only its own thread. It is
    the simplest mode and the most compatible with third-party libraries, and
    the right one for a small app; each client costs a whole OS thread, so it
    does not stretch to thousands of clients.

How to run it
    One terminal:  python chapters/02_async_modes/run_threading.py
    (the same as `python chapters/02_async_modes/app.py`). Settings: see app.py.

What breaks without it
    Nothing breaks; it stops scaling. Werkzeug is a development server
    (serve() passes allow_unsafe_werkzeug=True); for production use the
    gunicorn command in gunicorn.conf.py.

TL;DR
    async_mode="threading": no patching, fewest surprises, fewest clients.
"""

from app import create_app, serve

# --8<-- [start:run]
ASYNC_MODE = "threading"

if __name__ == "__main__":
    serve(*create_app(ASYNC_MODE))
# --8<-- [end:run]
