"""What a reader types, a test types: every console block on the site and in the READMEs.

Each block is marked on the line before it (sitegen/commands.py). A block marked with a
walk's name is typed by the test of that name below, command by command as the page says,
on a machine of its own where the page's ports are free (lab/reader.py, lab/netns.py); the
test then checks what the page says the reader will see. A block no test can type is marked
illustrative, with the reason.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from lab import netns
from lab.clients import RecordingClient, emit_through_queue, polling_session
from lab.delivery import ReliableClient, Sender, seq_of, tally
from lab.deps import MissingDependency, require_binary
from lab.processes import REPO_ROOT, wait_until
from lab.reader import Reader, Walk
from lab.serve import CONTROL_ROOM_PORT
from lab.wheelhouse import RUNNER
from sitegen import commands

WALKS: dict[str, str] = {}  # walk name -> the test that types it


def walks(*names: str):
    """Register the decorated test as the one that types the walks `names`."""

    def register(test):
        WALKS.update(dict.fromkeys(names, test.__name__))
        return test

    return register


@pytest.fixture
def reader(bench, tmp_path):
    reason = netns.unavailable()
    if reason:  # skipped on a learner's machine, failed under CI=true (tests/conftest.py)
        raise MissingDependency(f"the reader's machine is a network namespace: {reason}")
    typist = Reader(bench, tmp_path)
    yield typist
    typist.close()


def get(url: str) -> requests.Response:
    return requests.get(url, timeout=5)


def says_served_by(page: str) -> str:
    """The file a page says serves it."""
    return re.search(r'id="served-by"[^>]*>([^<]*)<', page).group(1)


def chat(url: str, room: str) -> list[str]:
    """Two windows on `url` join `room`; one writes, and both see the line."""
    ann, bob = RecordingClient("ann"), RecordingClient("bob")
    try:
        for client in (ann, bob):
            client.connect(url, transport=None)
            assert client.call("join", {"room": room, "name": client.label})["ok"] is True
        assert ann.call("message", {"room": room, "text": "hello"}) == {"ok": True}
        bob.wait_for_event("message", lambda d: d["text"] == "hello")
        return [d["text"] for d in bob.received("message")]
    finally:
        ann.disconnect()
        bob.disconnect()


# -- every block is typed or says why not ------------------------------------------------------


def test_every_console_block_is_typed_by_a_test_or_says_why_not():
    """Every console block on the site and in the READMEs is typed by a test, or says why none can."""
    unmarked = [b.where for b in commands.every_block() if b.marker is None]
    assert not unmarked, "console blocks with no <!-- commands: ... --> marker:\n" + "\n".join(unmarked)
    untyped = [f"{b.where}: {b.walk}" for b in commands.every_block() if b.walk and b.walk not in WALKS]
    assert not untyped, "walks no test types:\n" + "\n".join(untyped)
    reasonless = [b.where for b in commands.every_block() if b.reason == ""]
    assert not reasonless, "illustrative blocks with no reason:\n" + "\n".join(reasonless)


def test_blocks_of_one_walk_say_the_same_commands():
    """A chapter's README and its page, where they give the same walk, give the same commands."""
    for name in {b.walk for b in commands.every_block() if b.walk} - {"nox"}:  # nox: each block its own
        commands.walk(name)


# -- the walks -----------------------------------------------------------------------------------


@walks("01-by-hand", "setup-by-hand")
def test_chapter01_by_hand(reader):
    """Chapter 01 by hand, as typed: a venv, the pins, the chat on :5000, its twins on :5100 and :5200."""
    # The setup page's install is chapter 01's first two steps.
    assert [c.line for c in commands.walk("setup-by-hand")] == [
        c.line for c in commands.walk("01-by-hand")[:2]
    ]
    steps = Walk("01-by-hand")
    reader.venv(steps.next("python3 -m venv"))
    reader.install(steps.next("pip install"))
    reader.npm_ci(steps.next("npm ci"))
    chapter = reader.serve(steps.next("python chapters/01_basic_chat/app.py"), 5000, announces=True)
    broadcast = reader.serve(
        steps.next("PORT=5100 python antipatterns/01_broadcast_to_everyone.py"), 5100, announces=True
    )
    unguarded = reader.serve(
        steps.next("PORT=5200 python antipatterns/01_unguarded_handler.py"), 5200, announces=True
    )
    steps.done()
    for app, script in [
        (chapter, "01_basic_chat/app.py"),
        (broadcast, "antipatterns/01_broadcast_to_everyone.py"),
        (unguarded, "antipatterns/01_unguarded_handler.py"),
    ]:
        page = reader.call(get, app.url + "/")
        assert page.status_code == 200 and "/vendor/socket.io.min.js" in page.text, app.name
        assert says_served_by(page.text) == script  # a twin's page says it is the antipattern
    # "Open it in two browser windows": both see what one writes in their room.
    assert reader.call(chat, chapter.url, "lobby") == ["hello"]


# -- nox lines -----------------------------------------------------------------------------------

NOXFILE = REPO_ROOT / "noxfile.py"
# What each session hands its arguments after `--` to (noxfile.py): pytest over these paths, or a CLI.
CLI = {
    "bench": "bench.__main__",
    "serve": "lab.serve",
    "preflight": "lab.preflight",
    "wheelhouse": "lab.wheelhouse",
}


def nox_sessions() -> dict[str, tuple[str, ...] | None]:
    """Each session in noxfile.py, with the test paths it runs pytest on (None: not a pytest session)."""
    found = {}
    for node in ast.parse(NOXFILE.read_text()).body:
        if isinstance(node, ast.FunctionDef) and any(
            "nox.session" in ast.unparse(d) for d in node.decorator_list
        ):
            calls = [
                c for c in ast.walk(node) if isinstance(c, ast.Call) and ast.unparse(c.func) == "_pytest"
            ]
            found[node.name] = tuple(a.value for c in calls for a in c.args[1:]) if calls else None
    return found


def nox_line(command: commands.Command) -> tuple[list[str], list[str]]:
    """`LAB_REDIS=embedded nox -s chapter03 -- -k x` -> (["chapter03"], ["-k", "x"])."""
    words = shlex.split(command.line)
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
        words.pop(0)
    assert words[0] == "nox", command.line
    options, posargs = words[1:], []
    if "--" in options:
        options, posargs = options[: options.index("--")], options[options.index("--") + 1 :]
    return [w for w in options if not w.startswith("-")], posargs


# Runs in a child: a CLI's imports (the bench imports eventlet) stay out of the test's process.
PARSE_ONLY = """
import argparse, importlib, json, sys
parse = argparse.ArgumentParser.parse_args
def parse_then_stop(parser, args=None, namespace=None):
    parse(parser, args, namespace)
    sys.exit(0)
argparse.ArgumentParser.parse_args = parse_then_stop
importlib.import_module(sys.argv[1]).main(json.loads(sys.argv[2]))
sys.exit("it returned without parsing its arguments")
"""


def accepts(module: str, argv: list[str]) -> None:
    """The CLI in `module` parses `argv` without complaint (it runs nothing: parsing is all)."""
    parsed = subprocess.run(
        [sys.executable, "-c", PARSE_ONLY, module, json.dumps(argv)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert parsed.returncode == 0, f"{module} {argv}: {parsed.stderr}"


NOX_BLOCKS = [b for b in commands.every_block() if b.walk == "nox"]


@walks("nox")
@pytest.mark.parametrize("block", NOX_BLOCKS, ids=[b.where for b in NOX_BLOCKS])
def test_each_nox_line_names_a_session_that_takes_its_arguments(block, reader):
    """Each `nox` line on a page names real sessions, and what follows `--` is what they take: a pytest
    selection that selects tests, a CLI's arguments; `nox -s serve -- NN` is run, on the ports it names."""
    sessions = nox_sessions()
    for command in block.commands:
        names, posargs = nox_line(command)
        for name in names or ["lint", "docs", "guard", "tests"]:
            assert name in sessions, f"{block.where}: no nox session {name!r}: {command.line}"
        for name in names:
            if name == "serve":
                served_on_the_ports_it_names(reader, posargs, command.comment)
            elif name in CLI:
                accepts(CLI[name], posargs)
            elif sessions[name] and posargs:
                selects_tests(sessions[name], posargs)


def selects_tests(paths: tuple[str, ...], posargs: list[str]) -> None:
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *paths, *posargs],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert collected.returncode == 0, f"pytest {' '.join(posargs)} selects nothing:\n{collected.stdout}"


def served_on_the_ports_it_names(reader: Reader, posargs: list[str], comment: str) -> None:
    """`nox -s serve -- NN`: run as nox runs it, on the reader's machine; each port the line's
    comment names answers, but one it says never listens."""
    serve = commands.Command("python -m lab.serve " + " ".join(shlex.quote(a) for a in posargs), "")
    demo = reader.serve(serve, CONTROL_ROOM_PORT, timeout=90)
    try:
        for text, low, high in re.findall(r"(:(\d{4})(?:-(\d{4}))?(?: \(never listens)?)", comment):
            for port in range(int(low), int(high or low) + 1):
                expected = "never listens" not in text
                assert reader.listening(port) is expected, f"{comment}: :{port} listening is not {expected}"
    finally:
        reader.bench.stop(demo)


def healthz(url: str) -> dict:
    return requests.get(f"{url}/healthz", timeout=5).json()


def install(reader: Reader, steps: Walk, folder: str) -> None:
    """The three lines every by-hand block starts with: a venv, the folder's pins and the guard, npm ci."""
    reader.venv(steps.next("python3 -m venv"))
    reader.install(steps.next(f"pip install -r {folder}/requirements.txt ./flask-socketio-guard"))
    reader.npm_ci(steps.next("npm ci"))


@walks("02-by-hand")
def test_chapter02_by_hand(reader):
    """Chapter 02 by hand: each of its four servers answers on :5000 in its own mode; a twin on :5100."""
    steps = Walk("02-by-hand")
    install(reader, steps, "chapters/02_async_modes")
    for script, mode, server in [
        ("run_gevent.py", "gevent", "gevent"),
        ("run_threading.py", "threading", "Werkzeug"),
        ("run_eventlet.py", "eventlet", "eventlet"),
        ("gunicorn", "gevent", "gunicorn"),
    ]:
        terminal = reader.serve(
            steps.next(
                "cd chapters/02_async_modes && gunicorn"
                if script == "gunicorn"
                else f"python chapters/02_async_modes/{script}"
            ),
            5000,
            announces=True,
        )
        answer = reader.call(healthz, terminal.url)
        assert (answer["async_mode"], server in answer["server"]) == (mode, True), answer
        reader.stop(terminal)
    twin = reader.serve(
        steps.next("PORT=5100 python antipatterns/02_blocking_sleep.py"), 5100, announces=True
    )
    assert says_served_by(reader.call(get, twin.url + "/").text) == "antipatterns/02_blocking_sleep.py"
    steps.done()


def joined(url: str, name: str, room: str = "lobby") -> RecordingClient:
    """A browser window on `url` that has joined `room` as `name`."""
    client = RecordingClient(name).connect(url, transport=None)
    assert client.call("join", {"room": room, "name": name})["ok"] is True
    return client


def notice_reaches(clients: list[RecordingClient], text: str) -> None:
    for client in clients:
        client.wait_for_event("notice", lambda d: d["text"] == text)


@walks("03-by-hand", "03-twins-by-hand")
def test_chapter03_by_hand(reader):
    """Chapter 03 by hand: notify.py and curl reach both instances; twins beside it stay out of its cluster.

    The twins get a Redis database (and the counter twin a channel) of their own: on the
    chapter's, a twin's users would be counted as the chapter's, or its instances would
    hear the chapter's notices.
    """
    steps = Walk("03-by-hand")
    install(reader, steps, "chapters/03_redis_scaling")
    reader.serve(steps.next("redis-server --port 6379 --bind 127.0.0.1"), 6379)
    chat = [
        reader.serve(steps.next(f"PORT={port} INSTANCE_NAME=chat-{i}"), port, announces=True)
        for i, port in ((1, 5001), (2, 5002))
    ]
    # "Open both side by side": one window on each instance.
    windows = [reader.call(joined, instance.url, f"user-{i}") for i, instance in enumerate(chat)]
    done = reader.run(steps.next("python chapters/03_redis_scaling/notify.py"))
    assert done.returncode == 0 and "2 instance(s) listening" in done.stdout, done.stdout
    notice_reaches(windows, "hello from outside")
    done = reader.run(steps.next("curl -X POST"))
    # (curl's progress meter, on stderr here, shows only when its output is not a terminal.)
    assert done.stdout.splitlines()[-1].replace(" ", "") == '{"ok":true}', done.stdout
    notice_reaches(windows, "hello over HTTP")
    steps.done()

    twins = Walk("03-twins-by-hand")
    no_queue = [
        reader.serve(twins.next("REDIS_URL=redis://127.0.0.1:6379/1 PORT="), port, announces=True)
        for port in (5101, 5102)
    ]
    counter = [
        reader.serve(twins.next("REDIS_URL=redis://127.0.0.1:6379/2 SOCKETIO_CHANNEL=counter-twin"), port)
        for port in (5201, 5202)
    ]
    twins.done()
    for terminal, script in (
        (chat[0], "03_redis_scaling/app.py"),
        (no_queue[0], "antipatterns/03_no_message_queue.py"),
        (counter[0], "antipatterns/03_counter_in_process_memory.py"),
    ):
        assert says_served_by(reader.call(get, terminal.url + "/").text) == script
    # A user on the no-queue twin is counted there, and not in the chapter's count.
    reader.call(joined, no_queue[0].url, "twin-user")
    wait_until(
        lambda: reader.call(healthz, no_queue[0].url)["online"] == 1,
        timeout=5,
        what="the twin to count its user",
    )
    assert reader.call(healthz, chat[0].url)["online"] == 2
    # The counter twin has a queue, on its own channel: the chapter's notices still reach two instances.
    done = reader.run(commands.Command('python chapters/03_redis_scaling/notify.py "once more"', ""))
    assert "2 instance(s) listening" in done.stdout, done.stdout


def window(url: str, transport: str | None = None) -> tuple[str, str]:
    """A browser window on `url`: the instance its `welcome` names, and the transport it ends on."""
    client = RecordingClient("window").connect(url, transport=transport)
    try:
        client.wait_for_event("welcome")
        return client.received("welcome")[0]["instance"], client.sio.transport()
    finally:
        client.disconnect()


def instances_named(curl_loop_output: str) -> set[str]:
    return {json.loads(line)["instance"] for line in curl_loop_output.splitlines() if line.startswith("{")}


@walks("04-by-hand", "04-curl-loop", "04-haproxy-by-hand", "04-nginx-twins-by-hand", "04-gunicorn-w4-by-hand")
def test_chapter04_by_hand(reader):
    """Chapter 04 by hand: nginx, then HAProxy, on :8080; each nginx twin and gunicorn -w 4 shows its flaw."""
    state = Path("/tmp/nginx04")  # the page's own folder for nginx; removed after, if the walk made it
    made_state = not state.exists()
    try:
        steps = Walk("04-by-hand")
        install(reader, steps, "chapters/04_nginx_lb")
        reader.serve(steps.next("redis-server --port 6379 --bind 127.0.0.1"), 6379)
        for i in (1, 2, 3):
            reader.serve(steps.next(f"PORT=500{i} INSTANCE_NAME=chat-{i}"), 5000 + i, announces=True)
        nginx = reader.serve(steps.next("mkdir -p /tmp/nginx04 && nginx"), 8080)
        steps.done()
        front = "http://127.0.0.1:8080"
        # "Each page says which instance holds it and that it is on websocket."
        instance, transport = reader.call(window, front)
        assert instance.startswith("chat-") and transport == "websocket"
        # "Ask from other loopback addresses which instance answers": the whole address is hashed.
        loop = Walk("04-curl-loop")
        curl_loop = loop.next("for i in 2 3 4 5 6 7; do curl")
        loop.done()
        assert len(instances_named(reader.run(curl_loop).stdout)) > 1

        reader.stop(nginx)
        haproxy = Walk("04-haproxy-by-hand")
        proxy = reader.serve(haproxy.next("haproxy -db -f chapters/04_nginx_lb/haproxy.cfg"), 8080)
        haproxy.done()
        assert reader.call(window, front)[1] == "websocket"
        reader.stop(proxy)

        twins = Walk("04-nginx-twins-by-hand")
        proxy = reader.serve(
            twins.next('nginx -p /tmp/nginx04 -c "$PWD/antipatterns/04_round_robin.conf"'), 8080
        )
        # "Behind round-robin, the browser's developer tools show 400 answers to /socket.io/ requests."
        sid, answers = reader.call(polling_session, front, 5)
        assert answers[-1] == (400, f'"Invalid session {sid}"'), answers
        reader.stop(proxy)
        proxy = reader.serve(
            twins.next('nginx -p /tmp/nginx04 -c "$PWD/antipatterns/04_no_upgrade_headers.conf"'), 8080
        )
        assert (
            reader.call(window, front)[1] == "polling"
        )  # "Behind the no-upgrade twin, the page says polling."
        reader.stop(proxy)
        reader.serve(twins.next('nginx -p /tmp/nginx04 -c "$PWD/antipatterns/04_ip_hash.conf"'), 8080)
        assert (
            len(instances_named(reader.run(curl_loop).stdout)) == 1
        )  # "the curl loop names a single instance"
        twins.done()

        gunicorn = Walk("04-gunicorn-w4-by-hand")
        reader.serve(
            gunicorn.next(
                "cd chapters/04_nginx_lb && gunicorn -c ../../antipatterns/04_gunicorn_many_workers.conf.py"
            ),
            5000,
        )
        answer = reader.run(gunicorn.next("curl -s http://127.0.0.1:5000/healthz")).stdout
        gunicorn.done()
        assert re.search(r'"instance": ?"chat-1/worker-\d"', answer), (
            answer
        )  # "it names the worker that answered"
    finally:
        if made_state:
            shutil.rmtree(state, ignore_errors=True)


@walks("recipe-by-hand")
def test_the_auth_recipe_by_hand(reader):
    """The auth recipe by hand: it serves; with PRODUCTION=1 it exits naming SECRET_KEY, then takes one."""
    steps = Walk("recipe-by-hand")
    install(reader, steps, "recipes/auth_on_connect")
    app = reader.serve(steps.next("python recipes/auth_on_connect/app.py"), 5000, announces=True)
    assert reader.call(get, app.url + "/").status_code == 200
    reader.stop(app)
    refused = steps.next("PRODUCTION=1 python recipes/auth_on_connect/app.py")
    assert refused.comment.startswith("exits: ")
    assert refused.comment.removeprefix("exits: ") in reader.starts_and_exits(refused)
    app = reader.serve(steps.next("PRODUCTION=1 SECRET_KEY=change-me TOKEN_MAX_AGE=60"), 5000)
    assert reader.call(healthz, app.url)["status"] == "ok"
    steps.done()


@walks("guard-install", "guard-by-hand")
def test_the_guard_by_hand(reader):
    """The guard, installed by hand from its folder as its README says, passes its own suite from the root."""
    install_only = [c.line for c in commands.walk("guard-install")]
    assert install_only == [c.line for c in commands.walk("guard-by-hand")[:2]]
    steps = Walk("guard-by-hand")
    reader.venv(steps.next("python3 -m venv"))
    assert reader.install(steps.next("pip install ./flask-socketio-guard")) is None
    suite = reader.install(steps.next("pip install './flask-socketio-guard[test]' && pytest"))
    steps.done()
    done = reader.run(suite, timeout=120)
    assert done.returncode == 0 and " passed" in done.stdout, done.stdout


@walks("preflight")
def test_preflight_as_the_instructor_sends_it(reader):
    """Each preflight line the instructor guide sends attendees runs, and here finds nothing missing."""
    steps = Walk("preflight")
    for starts in ("nox -s preflight", "nox -s preflight -- --chapter 04", "python3 lab/preflight.py"):
        done = reader.run(steps.next(starts))
        assert done.returncode == 0 and "✗" not in done.stdout, done.stdout
    steps.done()


@walks("install-nox")
def test_nox_installs_as_the_pages_say(reader, tmp_path):
    """The one way the pages install nox (pipx) gives the nox and uv that CI runs."""
    pipx = require_binary("pipx")
    steps = Walk("install-nox")
    line = steps.next("pipx install nox==")
    steps.done()
    home = {
        "PIPX_HOME": str(tmp_path / "pipx"),
        "PIPX_BIN_DIR": str(tmp_path / "bin"),
        "PATH": f"{Path(pipx).parent}:/usr/bin:/bin",
    }
    done = reader.run(line, online=True, env=home, timeout=300)
    assert done.returncode == 0, done.stdout
    for tool, pin in zip(("nox", "uv"), RUNNER, strict=True):
        version = subprocess.run([tmp_path / "bin" / tool, "--version"], capture_output=True, text=True)
        assert pin.split("==")[1] in version.stdout + version.stderr, (tool, version)


def logged_in_page(url: str, user: str, dashboard: bool = False) -> RecordingClient:
    """A window on `url` where `user` logged in (POST /login, then the token in `auth`), as the page does."""
    token = requests.post(f"{url}/login", json={"name": user}, timeout=5).json()["token"]
    page = RecordingClient(user)
    page.token = token
    if dashboard:
        page.sio.on("figure", lambda data: page._record("figure", data), namespace="/dashboard")
    page.connect(url, transport=None, auth={"token": token})
    page.wait_for_event("welcome")
    return page


def task_state(url: str, page: RecordingClient, task: str) -> str:
    """Celery's record of `task`, as GET /tasks/<id> tells the page's user."""
    headers = {"Authorization": f"Bearer {page.token}"}
    return requests.get(f"{url}/tasks/{task}", headers=headers, timeout=5).json()["state"]


def producers_heard(page: RecordingClient, count: int) -> set[str]:
    """The producers of the dashboard figures `page` gets, once it has `count` of them."""
    page.wait_for("figures", lambda p: len(p.received("figure")) >= count, timeout=10)
    return {figure["producer"] for figure in page.received("figure")}


@walks("05-by-hand", "05-twins-by-hand")
def test_chapter05_by_hand(reader):
    """Chapter 05 by hand: a report started on web-1 reaches the user on web-2 too; each twin, its flaw."""
    schedule = Path("/tmp/celerybeat-schedule")  # the page's; removed after, if the walk made it
    before = set(schedule.parent.glob(f"{schedule.name}*"))
    try:
        walk_chapter05(reader)
    finally:
        for made in set(schedule.parent.glob(f"{schedule.name}*")) - before:
            made.unlink()


def walk_chapter05(reader: Reader) -> None:
    steps = Walk("05-by-hand")
    reader.export(steps.next("export SECRET_KEY=dev"))
    install(reader, steps, "chapters/05_celery")
    reader.serve(steps.next("redis-server --port 6379 --bind 127.0.0.1"), 6379)
    webs = [
        reader.serve(
            steps.next(f"cd chapters/05_celery && PORT={port} INSTANCE_NAME=web-{i}"), port, announces=True
        )
        for i, port in ((1, 5001), (2, 5002))
    ]
    worker = reader.start(
        steps.next("cd chapters/05_celery && celery -A make_celery worker"), ready_when=" ready."
    )
    beat = reader.start(
        steps.next("cd chapters/05_celery && celery -A make_celery beat"), ready_when="Starting..."
    )
    steps.done()
    # "Log in as the same user in both, and build a report: both windows show its progress and result."
    tabs = [reader.call(logged_in_page, web.url, "ann", True) for web in webs]
    ack = tabs[0].call("start", {"steps": 2})
    for tab in tabs:
        tab.wait_for_event("result", lambda data: data["task"] == ack["task"], timeout=15)
    assert producers_heard(tabs[1], 2) == {"celery beat"}  # "one figure a second, from celery beat"

    twins = Walk("05-twins-by-hand")
    reader.stop(worker)
    reader.start(
        twins.next("cd antipatterns && celery -A 05_worker_without_queue worker"), ready_when=" ready."
    )
    # "The task succeeds, and the page hears nothing."
    task = tabs[0].call("start", {"steps": 1})["task"]
    wait_until(
        lambda: reader.call(task_state, webs[0].url, tabs[0], task) == "SUCCESS", timeout=15, what="the task"
    )
    # Anything published before this barrier that was to reach the page has.
    reader.call(emit_through_queue, "redis://127.0.0.1:6379/0", "barrier", "after")
    tabs[0].wait_for_event("barrier")
    assert not [d for d in tabs[0].received("result") if d["task"] == task]
    reader.stop(webs[0])
    emit_to_sid = reader.serve(
        twins.next("PORT=5201 INSTANCE_NAME=web-1 python antipatterns/05_emit_to_sid.py"),
        5201,
        announces=True,
    )
    assert reader.call(healthz, emit_to_sid.url)["status"] == "ok"
    reader.stop(webs[1])
    reader.stop(beat)
    # "Each client gets figures from every instance": once each instance has a page, both produce.
    duplicates = [
        reader.serve(
            twins.next(f"PORT={port} INSTANCE_NAME=web-{i} python antipatterns/05_duplicate"),
            port,
            announces=True,
        )
        for i, port in ((1, 5301), (2, 5302))
    ]
    twins.done()
    assert (
        says_served_by(reader.call(get, duplicates[0].url + "/").text)
        == "antipatterns/05_duplicate_background_tasks.py"
    )
    pages = [reader.call(logged_in_page, web.url, "bob", True) for web in duplicates]
    assert producers_heard(pages[0], 4) == {"web-1", "web-2"}


def reliable_page(url: str, name: str) -> ReliableClient:
    """A chapter 06 page on `url`, on a browser's transports, that has joined the room `lobby`."""
    return ReliableClient(name).start(url, ["lobby"], transport=None)


@walks("06-by-hand")
def test_chapter06_by_hand(reader):
    """Chapter 06 by hand, behind nginx: a page loses nothing through a stopped instance and a Redis restart.

    A message written while Redis is down is kept, sent again, and stored once, numbered on from before.
    """
    made = [state for state in (Path("/tmp/nginx06"), Path("/tmp/redis06")) if not state.exists()]
    pages: list[ReliableClient] = []
    try:
        steps = Walk("06-by-hand")
        install(reader, steps, "chapters/06_delivery_guarantees")
        redis = reader.serve(steps.next("mkdir -p /tmp/redis06 && redis-server --port 6379"), 6379)
        instances = {
            name: reader.serve(steps.next(f"PORT={port} INSTANCE_NAME={name}"), port, announces=True)
            for name, port in (("chat-1", 5001), ("chat-2", 5002), ("chat-3", 5003))
        }
        reader.serve(steps.next("mkdir -p /tmp/nginx06 && nginx"), 8080)
        steps.done()
        pages += [reader.call(reliable_page, "http://127.0.0.1:8080", name) for name in ("ann", "bob")]
        ann, bob = pages
        writer = Sender(bob, "lobby", with_ids=True)
        writer.send("before")
        # "Stop the instance the pages name with Ctrl-C while you write in the other page."
        reader.stop(instances[ann.received("welcome")[-1]["instance"]])
        for n in range(3):
            writer.send(f"while its instance is gone {n}")
        # "Stop Redis with Ctrl-C and write a message ... Start Redis again with the same command."
        reader.stop(redis)
        retries = writer.retries
        with ThreadPoolExecutor(1) as writing:
            sent = writing.submit(writer.send, "while Redis is down")
            wait_until(lambda: writer.retries > retries, timeout=10, what="the page to keep its message")
            reader.bench.restart(redis)
            sent.result()
        writer.send("after the restart")
        # Every acknowledged message, on both pages: once each, in order, numbered on across the restart.
        numbers = [seq_of(entry_id) for entry_id in writer.acked]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), numbers
        # Its page comes back on another instance in its own time: the writer's outage may be shorter.
        ann.wait_for("its way back", lambda p: len(p.received("welcome")) > 1, timeout=30)
        for page in pages:
            page.wait_for("every message", lambda p: len(p.shown("lobby")) >= len(numbers), timeout=30)
            assert tally(page.shown("lobby"), numbers).clean(), (page.label, page.shown("lobby"), numbers)
    finally:
        for page in pages:
            page.disconnect()
        for state in made:
            shutil.rmtree(state, ignore_errors=True)
