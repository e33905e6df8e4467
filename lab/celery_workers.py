"""Real `celery worker` and `celery beat` processes, started and stopped like every other service.

Each is ready when its own log says so: a worker's "<name>@<host> ready.", beat's first
"Scheduler: Sending due task". They listen on no port; the bench's port is only a label.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

from lab.processes import REPO_ROOT, LabBench, Launch, Service

CHAPTER05 = REPO_ROOT / "chapters" / "05_celery"


def celery_command() -> list[str]:
    """`celery` from this interpreter's environment (nox's or the venv's), not whatever is on PATH."""
    beside = Path(sys.executable).with_name("celery")
    return [str(beside)] if beside.exists() else [shutil.which("celery") or "celery"]


def _app_location(app: str | Path) -> tuple[Path, str]:
    """`-A` and the directory to run in: Celery imports the app module from the current directory."""
    path = (REPO_ROOT / app).resolve()
    return path.parent, path.stem


def start_worker(
    bench: LabBench,
    app: str | Path = CHAPTER05 / "make_celery.py",
    *,
    name: str = "worker-1",
    env: dict[str, str] | None = None,
    concurrency: int = 1,
    timeout: float = 30.0,
) -> Service:
    """Start `celery -A <app> worker` with `concurrency` prefork processes, named <name>@<host>."""
    cwd, module = _app_location(app)
    pattern = re.compile(rf"^\[.*\] {re.escape(name)}@\S+ ready\.$", re.MULTILINE)

    def launch_on(_port: int) -> Launch:
        argv = [
            *celery_command(),
            "-A",
            module,
            "worker",
            "--loglevel",
            "INFO",
            "--hostname",
            f"{name}@%h",
            "--concurrency",
            str(concurrency),
            # No start-up chatter with the other workers: a second sooner, and nothing to share here.
            "--without-mingle",
            "--without-gossip",
        ]
        return Launch(
            argv=argv,
            env=env or {},
            cwd=cwd,
            ready=lambda service: bool(pattern.search(service.log_text())),
            # Under `nox -s cover` only: SIGTERM to the worker alone is Celery's warm shutdown, which
            # closes its pool itself, so the pool children save their coverage (about 2 s a stop).
            leader_grace=3.0 if "coverage" in sys.modules else 0.0,
        )

    return bench.start(name, launch_on, timeout=timeout)


def start_beat(
    bench: LabBench,
    app: str | Path = CHAPTER05 / "make_celery.py",
    *,
    name: str = "beat",
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> Service:
    """Start `celery -A <app> beat`; ready once it has sent its first due task."""
    cwd, module = _app_location(app)
    schedule = Path(bench.log_dir) / f"{name}-schedule"

    def launch_on(_port: int) -> Launch:
        argv = [*celery_command(), "-A", module, "beat", "--loglevel", "INFO", "--schedule", str(schedule)]
        return Launch(
            argv=argv,
            env=env or {},
            cwd=cwd,
            ready=lambda service: "Scheduler: Sending due task" in service.log_text(),
        )

    return bench.start(name, launch_on, timeout=timeout)
