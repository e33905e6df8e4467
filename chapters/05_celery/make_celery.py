"""Chapter 05's Celery entry point, as in Flask's Celery example (no monkey patching here).

    celery -A make_celery worker --loglevel INFO
    celery -A make_celery beat --loglevel INFO --schedule /tmp/celerybeat-schedule

Run from chapters/05_celery: Celery imports `make_celery` from the current directory.
"""

from taskboard import create_app

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
