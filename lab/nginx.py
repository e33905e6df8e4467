"""nginx in front of app instances, run from a chapter's own, copyable nginx.conf.

A chapter's nginx.conf is a whole nginx configuration, as it would sit in
/etc/nginx/nginx.conf: the worker limits at the top, then an `http` block with an
`upstream` listing the instances and a `server` that listens and proxies. It keeps
example ports a reader can use as they are (instances on 5001, 5002, ...; nginx on
8080). The bench runs a copy with the real ports and its own folders:

- the `server host:port` lines of the first upstream block become one line per
  running instance, with the first line's options (`max_fails=...`);
- `listen NNNN` becomes nginx's own port, on loopback (or the address `serve --host` names);
- the lines in LAB_HTTP_LINES open the `http` block: a second access log, whose lines
  name the instance that answered (`upstream=`), which the tests read;
- nginx runs in the bench's folder (`-p`), where the config's own relative paths put
  its access log and temporary files; `daemon off` and the pid file are given on the
  command line (`-g`), and errors go to stderr (`-e`), so nginx runs in the foreground
  and logs to the bench's log. A config with no paths of its own gets the ones nginx
  was built with (Debian: /var/log/nginx, /var/lib/nginx), which only root may write.

Nothing else in the file changes, so the test runs what the reader copies.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from lab.apps import healthz
from lab.configs import reachable, replace_servers
from lab.deps import require_binary
from lab.processes import REPO_ROOT, LabBench, Launch, Service

LAB_HTTP_LINES = """
    # -- added by the lab bench (lab/nginx.py): an access log that names the instance --
    log_format lab '$remote_addr "$request" $status upstream=$upstream_addr '
                   'upstream_status=$upstream_status';
    access_log {state}/lab-access.log lab;
    # -- end of the lab bench's lines --
"""

HTTP_BLOCK = re.compile(r"^\s*http\s*\{[^\n]*\n", re.M)
UPSTREAM_BLOCK = re.compile(r"upstream\s+\S+\s*\{(?P<body>.*?)\}", re.S)
SERVER_LINE = re.compile(r"^(\s*)server\s+[\w.\-]+:\d+([^;]*);[^\n]*\n", re.M)
LISTEN = re.compile(r"(\blisten\s+)(?:[\d.]+:)?\d+")
LOG_LINE = re.compile(
    # A retried request names every upstream it tried: "127.0.0.1:5001, 127.0.0.1:5002".
    r'^(?P<client>\S+) "(?P<request>[^"]*)" (?P<status>\d+) upstream=(?P<upstream>.*?) '
    r"upstream_status=(?P<upstream_status>.*)$"
)


def render_config(
    config: str, listen_port: int, backends: Sequence[str], state: Path, host: str = "127.0.0.1"
) -> str:
    """The chapter's config with its upstream servers, its listen port and the lab's folders."""
    config = replace_servers(
        config,
        UPSTREAM_BLOCK,
        SERVER_LINE,
        lambda indent, options: "".join(f"{indent}server {backend}{options};\n" for backend in backends),
        "an upstream block with `server host:port` lines",
    )
    config, listens = LISTEN.subn(rf"\g<1>{host}:{listen_port}", config)
    if listens == 0:
        raise ValueError("the nginx config needs a `listen` directive")
    config, https = HTTP_BLOCK.subn(lambda m: m.group(0) + LAB_HTTP_LINES.format(state=state), config, 1)
    if https == 0:
        raise ValueError("the nginx config needs an `http {` block (a whole nginx.conf, not a site file)")
    return config


@dataclass(frozen=True)
class Request:
    """One line of the access log: who asked what, what came back, and which instance answered."""

    client: str
    request: str
    status: int
    upstream: str  # "127.0.0.1:5001", several comma-separated when nginx tried the next one
    upstream_status: str


def access_log(proxy: Service) -> list[Request]:
    """The requests nginx has logged so far (its access log, written per request)."""
    path = _state_dir(proxy.log_path.parent, proxy.name) / "lab-access.log"
    if not path.exists():
        return []
    lines = (LOG_LINE.match(line) for line in path.read_text().splitlines())
    return [
        Request(m["client"], m["request"], int(m["status"]), m["upstream"], m["upstream_status"])
        for m in lines
        if m
    ]


def requests_from(proxy: Service, client: str) -> int:
    """How many requests from one client address nginx has logged so far.

    A request is logged when it ends: a long-poll when its answer goes out, a WebSocket
    once, when it closes.
    """
    return sum(1 for request in access_log(proxy) if request.client == client)


def start_nginx(
    bench: LabBench,
    config: str | Path,
    backends: Sequence[Service],
    *,
    name: str = "nginx",
    port: int | None = None,
    host: str = "127.0.0.1",
) -> Service:
    """Start nginx from a chapter's `config` in front of `backends`; ready when /healthz answers.

    Its worker limits are the config's own: a file written for 10,000 clients says so
    itself (chapters/04_nginx_lb/nginx.conf), and nginx's default of 512 connections per
    worker is what a config that says nothing gets.
    """
    binary = require_binary("nginx")
    template = (REPO_ROOT / config).read_text()
    state = _state_dir(bench.log_dir, name)
    state.mkdir(exist_ok=True)

    def launch_on(chosen: int) -> Launch:
        rendered = state / "nginx.conf"
        backend_addresses = [urlsplit(b.url).netloc for b in backends]
        rendered.write_text(render_config(template, chosen, backend_addresses, state, host))
        return Launch(
            argv=[
                binary,
                *("-p", str(state), "-c", str(rendered), "-e", "stderr"),
                *("-g", f"daemon off; pid {state}/nginx.pid;"),
            ],
            # Ready when an instance's /healthz answers through it.
            ready=lambda service: healthz(service.url)["status"] == "ok",
            url=f"http://{reachable(host)}:{chosen}",
        )

    return bench.start(name, launch_on, port=port)


def _state_dir(log_dir: Path, name: str) -> Path:
    """Where one nginx keeps its rendered config, pid, access log and temporary files."""
    return (log_dir / f"{name}-state").resolve()
