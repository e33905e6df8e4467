"""HAProxy in front of app instances, run from a chapter's own, copyable haproxy.cfg.

As with nginx (lab/nginx.py), the chapter's file keeps example ports (instances on
5001, 5002, ...; HAProxy on 8080) and the bench runs a copy with the real ones:

- the `server NAME host:port ...` lines of the first backend become one line per
  running instance, named after it, with the first line's options and its
  `cookie` value set to the instance's name;
- `bind :NNNN` becomes HAProxy's own port, on loopback (or the address `serve --host` names).

Nothing else changes. HAProxy runs in the foreground (`-db`) and, as the chapter's
file says (`log stdout`), logs one line per request to the bench's log.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from lab.apps import healthz
from lab.configs import reachable, replace_servers
from lab.deps import require_binary
from lab.processes import REPO_ROOT, LabBench, Launch, Service

BACKEND = re.compile(r"^backend\s+\S+[^\n]*\n(?P<body>(?:[ \t]+[^\n]*\n|\n)*)", re.M)
SERVER_LINE = re.compile(r"^(\s*)server\s+\S+\s+[\w.\-]+:\d+([^\n]*)\n", re.M)
COOKIE = re.compile(r"\bcookie\s+\S+")
BIND = re.compile(r"(\bbind\s+)[\d.]*:\d+")


def render_config(
    config: str, listen_port: int, backends: Sequence[tuple[str, str]], host: str = "127.0.0.1"
) -> str:
    """The chapter's config with its servers (name, host:port) and its bind port replaced."""
    config = replace_servers(
        config,
        BACKEND,
        SERVER_LINE,
        lambda indent, options: "".join(
            f"{indent}server {name} {address}{COOKIE.sub(f'cookie {name}', options)}\n"
            for name, address in backends
        ),
        "a backend with `server NAME host:port` lines",
    )
    config, binds = BIND.subn(rf"\g<1>{host}:{listen_port}", config)
    if binds == 0:
        raise ValueError("the HAProxy config needs a `bind :PORT` line")
    return config


def start_haproxy(
    bench: LabBench,
    config: str | Path,
    backends: Sequence[Service],
    *,
    name: str = "haproxy",
    port: int | None = None,
    host: str = "127.0.0.1",
) -> Service:
    """Start HAProxy from a chapter's `config` in front of `backends`; ready when /healthz answers."""
    binary = require_binary("haproxy")
    template = (REPO_ROOT / config).read_text()
    rendered = bench.log_dir / f"{name}.cfg"

    def launch_on(chosen: int) -> Launch:
        addresses = [(b.name, urlsplit(b.url).netloc) for b in backends]
        rendered.write_text(render_config(template, chosen, addresses, host))
        return Launch(
            argv=[binary, "-db", "-f", str(rendered)],
            # Ready when an instance's /healthz answers through it.
            ready=lambda service: healthz(service.url)["status"] == "ok",
            url=f"http://{reachable(host)}:{chosen}",
        )

    return bench.start(name, launch_on, port=port)
