"""Who is asking: the recipe "Auth on connect", shared by the socket events and the HTTP routes."""

from flask import current_app
from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer

from . import TOKEN_MAX_AGE

# Each user's own room: every connection of that user, on every instance, is in it. A task
# addresses the user through it, so a page that reconnects (a new sid) is still reached.
USER_ROOM_PREFIX = "user:"


def user_room(user):
    return USER_ROOM_PREFIX + user


class NotLoggedIn(ValueError):
    """Why a token was not accepted; the client is told as is."""


def tokens():
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="socket-auth")


def issue_token(user):
    return tokens().dumps(user)


def user_from(token):
    """The user signed into `token`, or NotLoggedIn saying what is wrong."""
    if not token:
        raise NotLoggedIn("log in first: no token")
    if not isinstance(token, str):
        raise NotLoggedIn("invalid token")
    try:
        return tokens().loads(token, max_age=TOKEN_MAX_AGE)
    except SignatureExpired:
        raise NotLoggedIn("token expired: log in again") from None
    except BadData:
        raise NotLoggedIn("invalid token") from None
