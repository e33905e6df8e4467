"""A reader at a keyboard: types a page's commands as written, each terminal a process.

The commands come from the page itself (sitegen.commands), never from a copy in a test.
They run on a machine of their own (lab.netns), so the page's ports (6379, 5001, ...) are
used as written. What a reader would need to change on their own machine, nothing here
changes either, with two declared exceptions:
- `pip install ...` installs into a fresh virtual environment with uv's pip, with the same
  arguments (a reader's `pip` is their venv's, and uv is only faster); later commands run
  with that venv first on the PATH, as an activated venv puts it;
- `npm ci` is what every nox session runs already (noxfile.py `_install_js`); the reader
  checks that node_modules holds the client instead of installing it again.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lab.netns import Namespace
from lab.processes import REPO_ROOT, LabBench, Launch, Service, ServiceFailed, wait_until
from sitegen.commands import Command, walk

# How every page makes and enters its virtual environment.
VENV = "python3 -m venv .venv && . .venv/bin/activate"


class Walk:
    """The commands of one walk, handed out in order; the walk fails if any is left over."""

    def __init__(self, name: str):
        self.name = name
        self._commands: Iterator[Command] = iter(walk(name))

    def next(self, starts: str) -> Command:
        """The next command, which must start with `starts` (so a page edit fails by name)."""
        command = next(self._commands, None)
        assert command is not None, f"walk {self.name}: the page has no more commands, expected {starts!r}"
        assert command.line.startswith(starts), (
            f"walk {self.name}: expected {starts!r}, the page says {command.line!r}"
        )
        return command

    def done(self) -> None:
        left = list(self._commands)
        assert not left, f"walk {self.name}: no test types {[c.line for c in left]}"


class Reader:
    """Types commands in terminals of its own, on a machine of its own."""

    def __init__(self, bench: LabBench, home: Path):
        self.bench = bench
        self.home = home
        self.machine = Namespace(bench, "readers-machine")
        self.exports: dict[str, str] = {}
        self.venv_bin = Path(sys.executable).parent
        self._terminals = 0

    # -- typing -------------------------------------------------------------------------------

    def venv(self, command: Command) -> None:
        """`python3 -m venv .venv && . .venv/bin/activate`: a fresh venv, made in the reader's
        home rather than the repository, which later commands run in."""
        assert command.line == VENV, f"expected {VENV!r}, the page says {command.line!r}"
        venv = self.home / "venv"
        subprocess.run([_uv(), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
        self.venv_bin = venv / "bin"

    def install(self, command: Command) -> Command | None:
        """`pip install ...` into the venv, with uv's pip and the same arguments. What follows
        an `&&` is handed back, for the walk to type next."""
        line, _, then = command.line.partition(" && ")
        words = shlex.split(line)
        assert words[:2] == ["pip", "install"], command.line
        assert self.venv_bin.parent != Path(sys.prefix), "the page installs with no venv made first"
        done = subprocess.run(
            [_uv(), "pip", "install", "--quiet", "--python", str(self.venv_bin / "python"), *words[2:]],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, f"{command.line}\n{done.stdout}{done.stderr}"
        return Command(then, command.comment) if then else None

    def npm_ci(self, command: Command) -> None:
        """`npm ci`: every nox session ran it already; the client it installs is there."""
        assert command.line == "npm ci", command.line
        assert (REPO_ROOT / "node_modules" / "socket.io-client" / "dist").is_dir()

    def export(self, command: Command) -> None:
        """`export NAME=value`: every later terminal has it."""
        name, _, value = command.line.removeprefix("export ").partition("=")
        self.exports[name] = shlex.split(value)[0] if value else ""

    def serve(self, command: Command, port: int, *, timeout: float = 30, announces: bool = False) -> Service:
        """A terminal that keeps running: started, and ready once `port` accepts connections.
        `announces`: an app, which must say where it listens, so the reader knows it is up."""
        self._terminals += 1
        name = f"terminal-{self._terminals}"
        launch = Launch(argv=self._argv(command), ready=lambda _s: self.listening(port), env=self._env())
        launch.url = f"http://127.0.0.1:{port}"
        terminal = self.bench.start(name, lambda _port: launch, port=port, timeout=timeout)
        if announces:
            wait_until(
                lambda: launch.url in terminal.log_text(), timeout=5, what=f"{name} to say {launch.url}"
            )
        return terminal

    def start(self, command: Command, *, ready_when: str, timeout: float = 30) -> Service:
        """A terminal that keeps running and listens on no port: ready once its output says `ready_when`."""
        self._terminals += 1
        name = f"terminal-{self._terminals}"
        launch = Launch(argv=self._argv(command), ready=lambda s: ready_when in s.log_text(), env=self._env())
        return self.bench.start(name, lambda _port: launch, port=1, timeout=timeout)

    def run(
        self,
        command: Command,
        *,
        timeout: float = 60,
        online: bool = False,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess:
        """A command that ends: its output, stdout and stderr merged, and its exit code.
        `online`: on this machine rather than the reader's, for what needs the network (PyPI)."""
        self._terminals += 1
        argv = ["bash", "-c", command.line] if online else self._argv(command)
        return self.bench.run(
            f"terminal-{self._terminals}", argv, env={**self._env(), **(env or {})}, timeout=timeout
        )

    def stop(self, service: Service) -> None:
        """Ctrl-C in that terminal."""
        self.bench.stop(service)

    def starts_and_exits(self, command: Command, *, timeout: float = 30) -> str:
        """A command the page says exits at once: started as a server would be, and its log."""
        self._terminals += 1
        name = f"terminal-{self._terminals}"
        launch = Launch(argv=self._argv(command), ready=lambda _s: False, env=self._env())
        try:
            self.bench.start(name, lambda _port: launch, port=1, timeout=timeout)
        except ServiceFailed as failed:
            return str(failed)
        raise AssertionError(f"{command.line} kept running")

    # -- looking --------------------------------------------------------------------------------

    def listening(self, port: int) -> bool:
        return self.machine.call(_accepts, port)

    def call(self, function: Any, *args: object) -> Any:
        """Run `function` on the reader's machine (a browser, curl: whatever the page opens)."""
        return self.machine.call(function, *args)

    def close(self) -> None:
        self.machine.close()

    def _argv(self, command: Command) -> list[str]:
        return self.machine.argv("bash", "-c", command.line)

    def _env(self) -> dict[str, str]:
        path = f"{self.venv_bin}:{os.environ.get('PATH', '/usr/local/bin:/usr/bin:/bin')}:/usr/sbin:/sbin"
        return {**self.exports, "PATH": path, "VIRTUAL_ENV": str(self.venv_bin.parent)}


def _uv() -> str:
    return shutil.which("uv") or str(Path(sys.executable).parent / "uv")


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0
