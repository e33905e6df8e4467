"""What the balancers' renderers share: a config's example servers, swapped for the running ones."""

from __future__ import annotations

import re
from collections.abc import Callable


def replace_servers(
    config: str, block: re.Pattern, server_line: re.Pattern, lines: Callable[[str, str], str], what: str
) -> str:
    """`config` with every server line of its first `block` replaced by `lines(indent, options)`.

    `block` has a group named `body`; `server_line` has the groups (indent, options). The
    new lines stand where the first server line stood, with its indent and its options
    (`max_fails=...`, `check cookie ...`), so a server block reads as the chapter wrote it.
    """
    match = block.search(config)
    first = server_line.search(match.group("body")) if match else None
    if first is None:
        raise ValueError(f"the config needs {what}")
    body = match.group("body")
    body = body[: first.start()] + lines(*first.groups()) + server_line.sub("", body[first.start() :])
    return config[: match.start("body")] + body + config[match.end("body") :]


def reachable(host: str) -> str:
    """The address to reach a server listening on `host`: loopback for a wildcard."""
    return "127.0.0.1" if host in {"0.0.0.0", "", "*"} else host
