"""Chapter 05's web instance: `python app.py`. The chapter itself is the taskboard package.

gevent, patched before every other import: chapter 02 says why, chapter 03 why the Redis
queue insists on it. The Celery worker and beat start from make_celery.py, unpatched.
"""

from gevent import monkey

monkey.patch_all()

from taskboard import create_app  # noqa: E402
from taskboard.web import serve  # noqa: E402

# --8<-- [start:run]
app = create_app()

if __name__ == "__main__":
    serve(app)  # socketio.run, with TCP_NODELAY: taskboard/web.py
# --8<-- [end:run]
