"""Fixtures for every chapter's tests: the lab bench, its logs, and proof that nothing outlives the run."""

from __future__ import annotations

import contextlib
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from urllib.parse import urlparse

import psutil
import pytest

from lab import LabBench, MissingDependency
from lab.browser import chromium
from lab.clients import RecordingClient, disconnect_all
from lab.deps import running_in_ci
from lab.hosts import leftover_links
from lab.processes import REPO_ROOT, leftover_processes, process_tree, wait_until


@pytest.fixture
def clients():
    """Make RecordingClients; any still connected are disconnected at teardown."""
    made: list[RecordingClient] = []

    def make(
        label: str = "client", *, kind: type[RecordingClient] = RecordingClient, **options
    ) -> RecordingClient:
        """A RecordingClient, or a kind of one (lab/delivery.py's ReliableClient)."""
        client = kind(label, **options)
        made.append(client)
        return client

    yield make
    disconnect_all(made)


@pytest.fixture
def bench(request, tmp_path, clients):
    """A LabBench for one test; it stops every process it started, even when the test fails.

    It depends on `clients` only for the teardown order: the servers stop first, so each
    client sees its connection drop and closes at once. Closed the other way round,
    each python-socketio websocket client takes about 3 s to disconnect (measured here
    against threading and gevent servers alike).
    """
    with LabBench(tmp_path / "logs") as lab_bench:
        request.node.lab_bench = lab_bench
        yield lab_bench


# -- the demo server, as a learner runs it -------------------------------------------------------


class Serve:
    """`python -m lab.serve NN --port 0 --control-port 0` as a learner runs it (on OS-assigned
    ports), its output read with deadlines."""

    def __init__(self, chapter: str, *options: str, log_dir: str):
        # Its own log folder: two runs of one chapter would empty each other's .lab/serve-NN.
        argv = ["--port", "0", "--control-port", "0", "--log-dir", log_dir, *options]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lab.serve", chapter, *argv],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output: list[str] = []
        # A thread reads the lines as they come, so a wait can have a deadline.
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put("")  # the end of the output

    def read_until(self, text: str, timeout: float = 90) -> str:
        """Read lines until one holds `text`; fail with what was printed if none does in time."""
        deadline = time.monotonic() + timeout
        while not self.output or text not in self.output[-1]:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = ""
            if not line:
                raise AssertionError(f"no line with {text!r} in {timeout}s:\n{''.join(self.output)}")
            self.output.append(line)
        return "".join(self.output)

    def urls(self) -> dict[str, str]:
        """Each service's name and URL, as printed: `  chapter      chapter-1       http://...`."""
        printed = "".join(self.output)
        return dict(re.findall(r"^[ \t]+\S+[ \t]+(\S+)[ \t]+(http://127\.0\.0\.1:\d+)/", printed, re.M))

    def control_room(self) -> str:
        """The control room's address, as printed: `Control room: http://127.0.0.1:NNNN/`."""
        return re.search(r"^Control room: (http://\S+)/$", "".join(self.output), re.M).group(1)

    def stop(self) -> None:
        """Ctrl-C: it exits cleanly and leaves none of its processes behind."""
        children = psutil.Process(self.process.pid).children(recursive=True)
        assert children
        self.process.send_signal(signal.SIGINT)
        assert self.process.wait(timeout=15) == 0
        gone, alive = psutil.wait_procs(children, timeout=5)
        assert alive == []


@pytest.fixture
def serving(tmp_path):
    """Start `python -m lab.serve NN [options]` and wait for it to serve; at teardown, if the test
    did not stop it, kill its whole tree, not serve alone: its children die with it
    (PR_SET_PDEATHSIG), but theirs do not, and nginx's workers would live on."""
    started: list[Serve] = []

    def serve(chapter: str, *options: str) -> Serve:
        started.append(Serve(chapter, *options, log_dir=str(tmp_path / f"serve-{len(started)}")))
        started[-1].read_until("Press Ctrl-C")
        return started[-1]

    yield serve
    for serve in started:
        tree = process_tree(serve.process.pid)  # [] once it has exited
        serve.process.kill()
        serve.process.wait()
        for proc in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()


# -- pages in headless Chromium, shared by every chapter's page tests ----------------------------

PAGE_DEADLINE_MS = 10_000


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (the system's) for one test module; MissingDependency names its install.

    Not for the whole session: Playwright's sync API keeps an asyncio loop running on the
    main thread while it is open, and every later asyncio.run() (the load client's tests)
    would fail with "cannot be called from a running event loop".
    """
    with chromium() as browser:
        yield browser


@pytest.fixture
def open_page(browser):
    """Open pages that can reach loopback only, as on workshop wifi with no internet.

    Each page is returned once its status says `status` (connected, unless told otherwise;
    None: a page with no status, returned once loaded); every context is closed at teardown.
    `device` goes to browser.new_context: a phone's screen, say.
    """
    contexts = []

    def open_page(url, status=re.compile("^connected$"), **device):
        context = browser.new_context(**device)
        contexts.append(context)
        page = context.new_page()

        def loopback_only(route):
            host = urlparse(route.request.url).hostname or ""
            if host.startswith("127.") or host == "localhost":
                route.continue_()
            else:
                route.abort()

        context.route("**/*", loopback_only)
        page.goto(url)
        if status is not None:
            page.get_by_test_id("status").filter(has_text=status).wait_for(timeout=PAGE_DEADLINE_MS)
        return page

    yield open_page
    for context in contexts:
        context.close()


def _skip_or_fail_on_missing(outcome) -> None:
    """A learner's machine may lack nginx or chromium: skip, naming the install command.

    Under CI=true nothing is skipped: a missing dependency is a failure of the CI setup.
    """
    missing = outcome.excinfo[1] if outcome.excinfo else None
    if isinstance(missing, MissingDependency):
        if running_in_ci():
            outcome.force_exception(pytest.fail.Exception(f"under CI=true: {missing}", pytrace=False))
        else:
            outcome.force_exception(pytest.skip.Exception(str(missing)))


def pytest_configure(config):
    """Under `nox -s cover`, pytest's own process stops measuring at once. It runs no chapter
    code (every app, worker and twin runs in a process of its own, each measuring itself), and
    tracing the harness's thousands of client threads only slowed it: a cover run hung for
    180 s inside a fork the bench made to start an app."""
    if "coverage" in sys.modules:
        import coverage

        if (current := coverage.Coverage.current()) is not None:
            current.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    _skip_or_fail_on_missing((yield))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    _skip_or_fail_on_missing((yield))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failure, attach the end of every process log to the report; a green run prints none."""
    report = (yield).get_result()
    doc = getattr(item, "function", None).__doc__ if hasattr(item, "function") else None
    if doc:
        params = f" [{item.callspec.id}]" if hasattr(item, "callspec") else ""
        report.proves = doc.strip().splitlines()[0] + params
    lab_bench = getattr(item, "lab_bench", None)
    if report.failed and lab_bench is not None:
        report.sections.append(("lab bench process logs", lab_bench.logs_report()))


def pytest_terminal_summary(terminalreporter):
    """Say in plain words what the run proved: the first docstring line of every test."""
    lines = []
    for outcome, mark in (("passed", "✓"), ("failed", "✗ NOT PROVEN:")):
        for report in terminalreporter.stats.get(outcome, []):
            if report.when == "call" and getattr(report, "proves", None):
                lines.append(f"{mark} {report.proves}")
    if lines:
        terminalreporter.section("what this run proved")
        for line in lines:
            terminalreporter.write_line(line)


def describe_process(proc: psutil.Process) -> str:
    """A leftover's pid, what it runs and in which test's logs, for the report."""
    try:
        return f"{proc.pid}: {' '.join(proc.cmdline())[:300]} (cwd {proc.cwd()})"
    except psutil.Error as error:
        return f"{proc.pid}: ({type(error).__name__})"


def pytest_sessionfinish(session):
    """The run ends with no process that a bench started still alive, no network link the lab
    made (lab/hosts.py: namespaces go with their holders, rules with their namespaces), and no
    client of ours still trying to reconnect to a server that has gone (a thread each, retrying
    forever)."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    leftovers = leftover_processes()
    if leftovers:
        described = [describe_process(proc) for proc in leftovers]
        for proc in leftovers:
            proc.kill()
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        reporter.write_line("\nFAILED: processes outlived the test run:", red=True)
        for line in described:
            reporter.write_line(f"  {line}", red=True)
    links = leftover_links(grace=10)
    if links:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        reporter.write_line(f"\nFAILED: network links outlived the test run: {', '.join(links)}", red=True)
    reconnecting = _reconnecting_clients(grace=5)
    if reconnecting:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        reporter.write_line(
            f"\nFAILED: {len(reconnecting)} Socket.IO clients still reconnecting after the run "
            "(close them with RecordingClient.disconnect, which calls shutdown())",
            red=True,
        )


def _reconnecting_clients(grace: float) -> list[threading.Thread]:
    """python-socketio's reconnect loops still running after `grace` seconds."""

    def alive() -> list[threading.Thread]:
        return [thread for thread in threading.enumerate() if "_handle_reconnect" in thread.name]

    with contextlib.suppress(TimeoutError):
        wait_until(lambda: not alive(), timeout=grace, what="the reconnect loops to end")
    return alive()
