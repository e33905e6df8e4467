"""A network namespace of the lab's own: a machine whose ports are all free.

A page tells a reader to type `PORT=5001 python app.py` and `redis-server --port 6379`.
A test that types the same must not meet whatever else listens on 5001 or 6379, and must
not change the commands to dodge it. In a namespace of its own the page's ports are free:
it has its own loopback, and nothing outside it sees its ports or is seen from it.

The namespace lives as long as one holder process (`unshare --net`, started by the bench),
so it goes away with the bench's processes at teardown and can never outlive the run.
Processes join it through `nsenter`; the test's own code joins it in threads of its own
(`Namespace.call`), since Linux keeps the network namespace per thread.
"""

from __future__ import annotations

import ctypes
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from lab.processes import LabBench, Launch, Service

T = TypeVar("T")
CLONE_NEWNET = 0x40000000


def unavailable() -> str | None:
    """Why this machine cannot make a namespace here, or None when it can."""
    if os.geteuid() != 0:
        return "a network namespace needs root (CI runs as root; locally: sudo)"
    missing = [tool for tool in ("unshare", "nsenter", "ip") if shutil.which(tool) is None]
    return f"{', '.join(missing)} not found (util-linux, iproute2)" if missing else None


class Namespace:
    """One network namespace with its loopback up, owned by `bench`."""

    def __init__(self, bench: LabBench, name: str = "netns"):
        self.bench = bench
        self.holder = bench.start(
            name,
            lambda _port: Launch(argv=["unshare", "--net", "--", "sleep", "infinity"], ready=_holds),
            port=0,
        )
        self.enter = ["nsenter", f"--target={self.holder.pid}", "--net", "--"]
        done = bench.run(f"{name}-lo", [*self.enter, "ip", "link", "set", "lo", "up"])
        assert done.returncode == 0, done.stdout
        self._threads = ThreadPoolExecutor(max_workers=4, thread_name_prefix=name, initializer=self._join)

    def argv(self, *argv: str) -> list[str]:
        """`argv`, run inside the namespace."""
        return [*self.enter, *argv]

    def call(self, function: Callable[..., T], *args: object) -> T:
        """Run `function` in a thread inside the namespace; threads it starts stay inside too."""
        return self._threads.submit(function, *args).result()

    def close(self) -> None:
        self._threads.shutdown(wait=True)

    def _join(self) -> None:
        with open(f"/proc/{self.holder.pid}/ns/net") as handle:
            if ctypes.CDLL(None, use_errno=True).setns(handle.fileno(), CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into the lab's network namespace")


def _holds(service: Service) -> bool:
    """The holder is in its namespace once its namespace differs from ours."""
    try:
        return os.readlink(f"/proc/{service.pid}/ns/net") != os.readlink("/proc/self/ns/net")
    except FileNotFoundError:
        return False
