"""mkdocs hooks (`hooks:` in mkdocs.yml): render what the site generates from the repository.

A citation that does not resolve raises PluginError, which fails `mkdocs build` (strict or not).
"""

from __future__ import annotations

import sys
from pathlib import Path

from mkdocs.exceptions import PluginError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sitegen import citations, twins


def on_page_markdown(markdown, page, config, files):
    try:
        if "{twins}" in markdown:
            markdown = markdown.replace("{twins}", twins.gallery())
        return citations.render(markdown)
    except citations.CitationError as exc:
        raise PluginError(f"{page.file.src_path}: {exc}") from None
    except ValueError as exc:  # a twin without its "Differs from"
        raise PluginError(f"{page.file.src_path}: {exc}") from None
