"""The page and the HTTP routes, as one blueprint: log in, start and cancel a task over HTTP."""

import sys
from pathlib import Path

from celery.result import AsyncResult
from flask import Blueprint, jsonify, render_template, request, send_from_directory

from . import ASYNC_MODE, INSTANCE_NAME, JS_CLIENT_DIR, MAX_NAME, store
from .auth import NotLoggedIn, issue_token, user_from, user_room
from .tasks import TaskRefused, cancel_report, key, start_report, validate_steps

bp = Blueprint("taskboard", __name__)
# The file this process was started with (not sys.argv: runpy changes it), named on the page.
STARTED_WITH = next((arg for arg in sys.orig_argv[1:] if arg.endswith(".py")), sys.argv[0])
SERVED_BY = "/".join(Path(STARTED_WITH).resolve().parts[-2:])


@bp.get("/")
def index():
    return render_template("index.html", served_by=SERVED_BY)


@bp.get("/vendor/socket.io.min.js")
def socketio_client_js():
    return send_from_directory(JS_CLIENT_DIR, "socket.io.min.js")


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok", instance=INSTANCE_NAME, async_mode=ASYNC_MODE)


@bp.post("/login")
def login():
    """Trade a name for a token (as in the recipe "Auth on connect"); a real app checks a password."""
    name = (request.get_json(silent=True) or {}).get("name")
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > MAX_NAME:
        return jsonify(reason=f"'name' must be 1 to {MAX_NAME} characters"), 400
    return jsonify(token=issue_token(name.strip()))


# --8<-- [start:http]
def requesting_user():
    """The user named by the `Authorization: Bearer <token>` header, or NotLoggedIn."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return user_from(token if scheme == "Bearer" else None)


@bp.post("/tasks")
def start_task():
    """Start a report over HTTP: 202 and the task id; its events reach every page of this user."""
    try:
        user = requesting_user()
        steps, fail_at = validate_steps(request.get_json(silent=True))
        task_id = start_report(user, user_room(user), steps, fail_at)
    except NotLoggedIn as refused:
        return jsonify(reason=str(refused)), 401
    except TaskRefused as refused:
        return jsonify(reason=str(refused)), 400
    return jsonify(task=task_id), 202


@bp.get("/tasks/<task_id>")
def task_state(task_id):
    """Celery's own record of a task of yours: PENDING, SUCCESS, FAILURE..."""
    try:
        user = requesting_user()
    except NotLoggedIn as refused:
        return jsonify(reason=str(refused)), 401
    if store.get(key(task_id, "user")) != user:
        return jsonify(reason="no such task of yours"), 404
    return jsonify(task=task_id, state=AsyncResult(task_id).state)


@bp.post("/tasks/<task_id>/cancel")
def cancel_task(task_id):
    try:
        cancel_report(requesting_user(), task_id)
    except NotLoggedIn as refused:
        return jsonify(reason=str(refused)), 401
    except TaskRefused as refused:
        return jsonify(reason=str(refused)), 404
    return jsonify(task=task_id, cancelled=True), 202


# --8<-- [end:http]
