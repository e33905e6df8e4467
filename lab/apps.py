"""Start chapter apps as separate processes, under the run contract every chapter shares.

The contract: an app is started as `python chapters/NN_name/app.py` (or any
command, such as gunicorn), configured by the environment variables HOST,
PORT and INSTANCE_NAME plus whatever the chapter reads (REDIS_URL, ...), and
answers `GET /healthz` with JSON holding `status` and `instance`.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.processes import REPO_ROOT, LabBench, Launch, Service

if TYPE_CHECKING:
    from lab.hosts import Host


def get_json(url: str, timeout: float = 1.0) -> Any:
    """GET `url` and return its JSON body."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


def healthz(url: str, timeout: float = 1.0) -> dict:
    """GET <url>/healthz and return its JSON body."""
    return get_json(f"{url}/healthz", timeout)


def start_app(
    bench: LabBench,
    script: str | Path,
    *,
    name: str = "app-1",
    env: dict[str, str] | None = None,
    port: int | None = None,
    command: Callable[[int], Sequence[str]] | None = None,
    answers_as: Callable[[str], bool] | None = None,
    wait_ready: bool = True,
    timeout: float = 30.0,
    on: Host | None = None,
) -> Service:
    """Start one app instance; ready when /healthz answers with this instance's name.

    `script` is run with this interpreter unless `command(port)` gives the argv
    (a gunicorn command line, say); the environment carries the run contract either way.
    `answers_as(instance)` replaces the name check, for a server whose processes name
    themselves (gunicorn's workers: "chat-1/worker-3"). `wait_ready=False` returns once it
    runs, for a twin that never listens on purpose (a demo shows it hanging). `on` runs it on
    a host of the lab's network (lab/hosts.py), at the host's address.
    """
    answers_as = answers_as or (lambda instance: instance == name)
    script_path = (REPO_ROOT / script).resolve()
    address = on.address if on else "127.0.0.1"
    if on and not port:
        port = 5000  # a host has every port free

    def launch_on(chosen: int) -> Launch:
        argv = list(command(chosen)) if command else [sys.executable, str(script_path)]
        url = f"http://{address}:{chosen}"
        return Launch(
            argv=on.argv(*argv) if on else argv,
            env={"HOST": address, "PORT": str(chosen), "INSTANCE_NAME": name, **(env or {})},
            cwd=script_path.parent,
            ready=lambda service: not wait_ready or answers_as(healthz(service.url).get("instance", "")),
            url=url,
        )

    return bench.start(name, launch_on, port=port, timeout=timeout)


def start_apps(
    bench: LabBench,
    script: str | Path,
    count: int,
    *,
    prefix: str = "app",
    env: dict[str, str] | None = None,
    first_port: int | None = None,
    timeout: float = 30.0,
) -> list[Service]:
    """Start `count` instances of one app, named <prefix>-1 ... <prefix>-N.

    With `first_port`, they listen on consecutive ports from it (the demo's fixed URLs);
    without, on OS-assigned ones.
    """
    return [
        start_app(
            bench,
            script,
            name=f"{prefix}-{i}",
            env=env,
            port=first_port + i - 1 if first_port else None,
            timeout=timeout,
        )
        for i in range(1, count + 1)
    ]


def under_gunicorn(config: str | Path, name: str) -> dict:
    """start_app's options to run an instance as `gunicorn -c <config> app:app` from its folder."""
    gunicorn = str(Path(sys.executable).parent / "gunicorn")  # the one installed beside this Python
    return {
        "command": lambda _port: [gunicorn, "-c", str(REPO_ROOT / config), "app:app"],
        # Each worker names itself <name>/worker-N: ready when any answers.
        "answers_as": lambda instance: instance.startswith(f"{name}/worker-"),
    }
