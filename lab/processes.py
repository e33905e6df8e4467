"""Start real processes, wait until they are ready, and kill their whole trees."""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]

# Every process a bench started, as psutil knows it: its pid and its start time. The pid alone
# would not do: Linux hands a pid out again once it wraps (pid_max is 32,768 here, and a full
# run starts more processes than that), and the check at the end would report, and kill, a
# stranger that happens to hold an old child's pid.
STARTED: list[psutil.Process] = []


class ServiceFailed(RuntimeError):
    """A process died during start-up or was not ready by its deadline; the message holds its log."""


def wait_until(
    condition: Callable[[], object], *, timeout: float, what: str, interval: float = 0.02
) -> object:
    """Poll `condition` until it returns something truthy, or raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS has just assigned; `LabBench.start` retries if another process takes it first."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class Launch:
    """How to run one process on a given port, and how to tell that it is ready."""

    argv: list[str]
    ready: Callable[[Service], bool]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    url: str = ""
    # SIGTERM the leader alone first and give it this long to stop its own children, before the
    # whole group is signalled: a Celery worker then shuts its pool down in order, so each pool
    # child leaves by its own exit path (and coverage saves what it measured there).
    leader_grace: float = 0.0


@dataclass
class Service:
    """One running process started by the bench, with its log file."""

    name: str
    port: int
    url: str
    log_path: Path
    process: subprocess.Popen
    launch: Launch

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left of the tree."""
        tree = process_tree(self.pid)
        if self.launch.leader_grace and self.alive():
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(self.launch.leader_grace)
        _signal_group(self.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(self.pid, signal.SIGKILL)
            self.process.wait(timeout)
        # Children that left the process group (a daemonising worker) are killed one by one.
        _, alive = psutil.wait_procs(tree, timeout=timeout)
        for proc in alive:
            proc.kill()
        psutil.wait_procs(alive, timeout=timeout)

    def kill(self) -> None:
        """SIGKILL the whole tree at once: a crash, not a shutdown (fault drills)."""
        tree = process_tree(self.pid)
        _signal_group(self.pid, signal.SIGKILL)
        self.process.wait(5)
        for proc in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()


class LabBench:
    """Owns every process it starts. Use it as a context manager: leaving it stops them all."""

    def __init__(self, log_dir: Path):
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.services: list[Service] = []

    def __enter__(self) -> LabBench:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_all()

    def start(
        self,
        name: str,
        launch_on: Callable[[int], Launch],
        *,
        port: int | None = None,
        timeout: float = 30.0,
    ) -> Service:
        """Start `launch_on(port)` and wait until it is ready.

        With no `port`, the OS assigns one; if another process grabs it between
        our bind test and the child's bind, the start is retried on a new port.
        """
        attempts = 1 if port else 3
        for attempt in range(1, attempts + 1):
            chosen = port or free_port()
            service = self._spawn(name, chosen, launch_on(chosen))
            try:
                self._wait_ready(service, timeout)
                return service
            except ServiceFailed:
                if attempt < attempts and "in use" in service.log_text():
                    # Lost the race for the port: keep that attempt's log apart, so the
                    # service's own log holds only the run that counts.
                    self.services.remove(service)
                    service.log_path.rename(service.log_path.with_suffix(f".port-{chosen}-taken.log"))
                    continue
                raise
        raise AssertionError("unreachable")

    def run(
        self, name: str, argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 30.0
    ) -> subprocess.CompletedProcess:
        """Run a one-shot command (an external emitter, a CLI) to completion, with a deadline.

        Its output, stdout and stderr merged as in every bench log, is returned as `stdout`
        and appended to <name>.log, which a failing test's report shows.
        """
        process = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        _remember(process.pid)
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            raise ServiceFailed(f"{name} did not finish within {timeout:.0f}s.\n{output}") from None
        finally:
            with (self.log_dir / f"{name}.log").open("a") as log:
                log.write(f"=== run {' '.join(argv)} -> exit {process.returncode}\n{output or ''}")
        return subprocess.CompletedProcess(argv, process.returncode, output, "")

    def stop(self, service: Service) -> None:
        """Stop one service (its log stays, so a restart on the same port appends to it)."""
        service.stop()

    def restart(self, service: Service, timeout: float = 30.0) -> Service:
        """Start a stopped service again, on the same port with the same launch."""
        if service.alive():
            service.stop()
        self.services.remove(service)
        return self.start(service.name, lambda _port: service.launch, port=service.port, timeout=timeout)

    def stop_all(self) -> None:
        """Stop every service, newest first, so clients go before the servers they talk to."""
        for service in reversed(self.services):
            if service.alive():
                service.stop()
        self.services.clear()

    def logs_report(self, tail_lines: int = 60) -> str:
        """The end of every service's log, for a failing test's report."""
        parts = []
        for log in sorted(self.log_dir.glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()[-tail_lines:]
            parts.append(f"----- {log.name} (last {len(lines)} lines) -----\n" + "\n".join(lines))
        return "\n".join(parts)

    def _spawn(self, name: str, port: int, launch: Launch) -> Service:
        log_path = self.log_dir / f"{name}.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **launch.env}
        with log_path.open("ab") as log:
            stamp = datetime.datetime.now().isoformat(timespec="milliseconds")
            log.write(f"=== {stamp} start {' '.join(launch.argv)} (port {port})\n".encode())
            log.flush()
            process = subprocess.Popen(
                launch.argv,
                cwd=launch.cwd or REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: one signal reaches the whole tree
                preexec_fn=_die_with_parent,
            )
        _remember(process.pid)
        service = Service(name, port, launch.url, log_path, process, launch)
        self.services.append(service)
        return service

    def _wait_ready(self, service: Service, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not service.alive():
                raise ServiceFailed(
                    f"{service.name} exited with code {service.process.returncode} during start-up.\n"
                    f"{_tail(service)}"
                )
            try:
                if service.launch.ready(service):
                    return
            except OSError:
                pass  # not listening yet
            if time.monotonic() >= deadline:
                service.stop()
                raise ServiceFailed(f"{service.name} was not ready within {timeout:.0f}s.\n{_tail(service)}")
            time.sleep(0.05)


def _tail(service: Service, lines: int = 40) -> str:
    text = "\n".join(service.log_text().splitlines()[-lines:])
    return f"----- {service.log_path} -----\n{text}"


def process_tree(pid: int) -> list[psutil.Process]:
    try:
        parent = psutil.Process(pid)
        return [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def _die_with_parent() -> None:
    """In the child: ask Linux to SIGKILL it if the bench's process dies without cleaning up.

    Linux ties this to the thread that started the child, not the process: a service
    started from a short-lived thread (a thread pool) is killed when that thread ends.
    Start services from one long-lived thread; waiting on them in parallel is fine.
    """
    if sys.platform == "linux":
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _remember(pid: int) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):  # gone already: nothing to outlive the run
        STARTED.append(psutil.Process(pid))


def leftover_processes() -> list[psutil.Process]:
    """Processes started by any bench in this interpreter that are still alive.

    psutil's is_running() compares the start time too, so a pid taken over by another
    process since does not count.
    """
    alive = []
    for proc in STARTED:
        with contextlib.suppress(psutil.NoSuchProcess):
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
    return alive
