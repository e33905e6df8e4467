"""Fixtures: a guarded app served for real (serving.py), and clients closed after each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask_socketio import SocketIO
from serving import Client, Served, make_app


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    served: list[Served] = []

    def start(
        app_and_socketio: tuple[Flask, SocketIO] | None = None, server: dict | None = None, **options: Any
    ) -> Served:
        served_app = Served(*(app_and_socketio or make_app(**options)), **(server or {}))
        served.append(served_app)
        return served_app

    yield start
    for server in served:
        server.stop()


@pytest.fixture
def clients() -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def connect(url: str, **options: Any) -> Client:
        made.append(Client(url, **options))
        return made[-1]

    yield connect
    for client in made:
        client.close()
