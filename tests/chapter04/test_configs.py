"""The chapter's nginx.conf runs for anyone, and each nginx twin is it with one mistake and nothing else.

Comments may differ (a twin explains its mistake); directives may not, beyond the ones
its header names. So a fix to the chapter's config that is not carried into a twin, or a
twin that drifts, fails here.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from lab.deps import require_binary
from lab.nginx import render_config
from lab.processes import REPO_ROOT, Launch, free_port

CHAPTER = "chapters/04_nginx_lb/nginx.conf"
UPGRADE_MAP = ["map $http_upgrade $connection_upgrade {", "default upgrade;", "'' close;", "}"]
UPGRADE_HEADERS = [
    "proxy_http_version 1.1;",
    "proxy_set_header Upgrade $http_upgrade;",
    "proxy_set_header Connection $connection_upgrade;",
]


def directives(path: str) -> Counter:
    """The config's lines with comments dropped and white space folded: what nginx reads."""
    lines = (re.sub(r"\s+", " ", line.split("#", 1)[0]).strip() for line in (REPO_ROOT / path).open())
    return Counter(line for line in lines if line)


@pytest.mark.parametrize(
    ("twin", "removed", "added"),
    [
        ("antipatterns/04_round_robin.conf", ["hash $remote_addr consistent;"], []),
        ("antipatterns/04_no_upgrade_headers.conf", UPGRADE_MAP + UPGRADE_HEADERS, []),
        ("antipatterns/04_ip_hash.conf", ["hash $remote_addr consistent;"], ["ip_hash;"]),
    ],
    ids=["round-robin", "no-upgrade-headers", "ip-hash"],
)
def test_an_nginx_twin_differs_from_the_chapter_only_by_its_mistake(twin, removed, added):
    """An nginx twin is the chapter's nginx.conf minus its one mistake: no other directive differs."""
    chapter, broken = directives(CHAPTER), directives(twin)
    assert chapter - broken == Counter(removed)
    assert broken - chapter == Counter(added)
    # And it says so in its header.
    assert f"Differs from {CHAPTER}" in (REPO_ROOT / twin).read_text()


def test_the_chapters_nginx_conf_runs_without_root(bench):
    """The chapter's nginx.conf runs as a user without root, writing only in the folder it runs in."""
    nginx = require_binary("nginx")
    # A folder anyone may enter: the run below is not root's.
    prefix = Path(tempfile.mkdtemp(prefix="nginx04-"))
    prefix.chmod(0o777)
    port = free_port()
    config = prefix / "nginx.conf"
    config.write_text(render_config((REPO_ROOT / CHAPTER).read_text(), port, ["127.0.0.1:9"], prefix))
    as_user = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] if os.geteuid() == 0 else []
    command = [*as_user, nginx, "-p", str(prefix), "-c", str(config), "-e", "stderr"]
    try:
        bench.start(
            "nginx-as-a-user",
            lambda _: Launch([*command, "-g", f"daemon off; pid {prefix}/nginx.pid;"], ready=answers(port)),
            port=port,
        )
        # Its own files, and nowhere else: the access log and the temporary folders.
        made = {path.name for path in prefix.iterdir()}
        assert {"access.log", "client_body_temp", "proxy_temp"} <= made, made
        assert all(path.owner() != "root" for path in prefix.iterdir() if path.name != "nginx.conf")
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


def answers(port: int):
    """Ready when nginx answers at all: with no instance behind it, that is a 502 of its own."""

    def ready(_service) -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
        except urllib.error.HTTPError as error:
            return error.code == 502
        return True

    return ready
