"""Each nginx twin is the chapter's nginx.conf with its one mistake and nothing else.

Comments may differ (a twin explains its mistake); directives may not, beyond the ones
its header names. So a fix to the chapter's config that is not carried into a twin, or a
twin that drifts, fails here.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest

from lab.processes import REPO_ROOT

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
