"""nginx in front of app instances, run from a chapter's own, copyable nginx.conf.

A chapter's nginx.conf is an http-level file, as it would sit in
/etc/nginx/conf.d/: an `upstream` block listing the instances and a `server`
block that listens and proxies. It keeps example ports a reader can use as
they are (instances on 5001, 5002, ...; nginx on 8080). The bench runs a copy
with the real ports: the `server host:port` lines of the first upstream block
become one line per running instance, and `listen NNNN` becomes nginx's own
port. Nothing else in the file changes, so the test runs what the reader copies.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from lab.deps import require_binary
from lab.processes import REPO_ROOT, LabBench, Launch, Service

# Around the chapter's file: foreground, logs and temporary files in the bench's log folder.
MAIN_CONFIG = """\
daemon off;
worker_processes 1;
pid {state}/nginx.pid;
error_log stderr notice;
events {{
    worker_connections {worker_connections};
}}
http {{
    access_log {state}/access.log;
    client_body_temp_path {state}/client_body;
    proxy_temp_path {state}/proxy;
    fastcgi_temp_path {state}/fastcgi;
    uwsgi_temp_path {state}/uwsgi;
    scgi_temp_path {state}/scgi;
    include {site};
}}
"""

UPSTREAM_BLOCK = re.compile(r"(upstream\s+\S+\s*\{)(.*?)(\})", re.S)
SERVER_LINE = re.compile(r"^(\s*)server\s+[\w.\-]+:\d+([^;]*);[^\n]*\n", re.M)
LISTEN = re.compile(r"(\blisten\s+)(?:[\d.]+:)?\d+")


def render_site(config: str, listen_port: int, backends: Sequence[str]) -> str:
    """The chapter's config with its upstream servers and its listen port replaced."""
    match = UPSTREAM_BLOCK.search(config)
    if match is None or not SERVER_LINE.search(match.group(2)):
        raise ValueError("the nginx config needs an upstream block with `server host:port` lines")
    body = match.group(2)
    first = SERVER_LINE.search(body)
    indent, options = first.group(1), first.group(2)
    servers = "".join(f"{indent}server {backend}{options};\n" for backend in backends)
    body = SERVER_LINE.sub("", body)
    body = body[: first.start()] + servers + body[first.start() :]
    config = config[: match.start(2)] + body + config[match.end(2) :]
    config, listens = LISTEN.subn(rf"\g<1>127.0.0.1:{listen_port}", config)
    if listens == 0:
        raise ValueError("the nginx config needs a `listen` directive")
    return config


def start_nginx(
    bench: LabBench,
    site_config: str | Path,
    backends: Sequence[Service],
    *,
    name: str = "nginx",
    worker_connections: int = 4096,
    port: int | None = None,
) -> Service:
    """Start nginx with `site_config` in front of `backends`; ready when /healthz answers through it.

    worker_connections is raised from nginx's default of 512, which caps a load
    test at a few hundred clients (each proxied client holds two connections).
    """
    binary = require_binary("nginx")
    template = (REPO_ROOT / site_config).read_text()
    state = (bench.log_dir / f"{name}-state").resolve()
    state.mkdir(exist_ok=True)
    for temp in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (state / temp).mkdir(exist_ok=True)
        # Started as root, nginx's workers drop to an unprivileged user that must write here.
        (state / temp).chmod(0o777)

    def launch_on(chosen: int) -> Launch:
        site = state / "site.conf"
        site.write_text(render_site(template, chosen, [f"127.0.0.1:{b.port}" for b in backends]))
        main = state / "nginx.conf"
        main.write_text(MAIN_CONFIG.format(state=state, site=site, worker_connections=worker_connections))
        return Launch(
            argv=[binary, "-p", str(state), "-c", str(main), "-e", "stderr"],
            ready=lambda service: _healthy(service.url),
            url=f"http://127.0.0.1:{chosen}",
        )

    return bench.start(name, launch_on, port=port)


def _healthy(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
        return response.status == 200
