"""Every line of code the site shows is readable without scrolling sideways, on a laptop.

The site puts its table of contents in the left sidebar (mkdocs.yml, `toc.integrate`), so a
code block is about 1,000 px wide at a 1,280 px window: 116 characters of the fallback
monospace font, measured in headless Chromium when the feature went in (a 128-character line
needed 1,080 px). The code is formatted at 110 columns (ruff's line-length); this holds every
line the pages show, from the files they include or typed on the page, to the same bound;
quoted output (a `text` block) wraps instead.
No processes: this reads the pages and the files they include.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").rglob("*.md"))
WIDEST = 110  # ruff's line-length, in pyproject.toml
FENCE = re.compile(r"^(\s*)(```|~~~)(\w*)")
INCLUDE = re.compile(r'^\s*--8<-- "([^":]+)(?::([\w-]+))?"')


def included(path: str, section: str | None) -> list[str]:
    """The lines a `--8<-- "path:section"` line shows, dedented as pymdownx.snippets does."""
    text = (ROOT / path).read_text(encoding="utf-8")
    if section:
        found = re.search(rf"\[start:{section}\][^\n]*\n(.*?)\n[^\n]*\[end:{section}\]", text, re.S)
        text = textwrap.dedent(found.group(1)) if found else ""
    return [line for line in text.splitlines() if "--8<--" not in line]


def shown_lines(page: Path) -> list[tuple[str, str]]:
    """(where, line) for every line inside the page's code blocks, includes resolved."""
    shown, fence, wraps = [], None, False
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        marker = FENCE.match(line)
        if marker and fence is None:
            fence = marker.group(1)
            # Quoted output wraps instead (docs/stylesheets/extra.css): its words are not ours to break.
            wraps = marker.group(3) == "text"
            continue
        if marker and fence is not None and marker.group(1) == fence:
            fence = None
            continue
        if fence is None or wraps:
            continue
        include = INCLUDE.match(line)
        where = f"{page.relative_to(ROOT)}:{number}"
        if include:
            shown += [(f"{where} ({include.group(1)})", text) for text in included(*include.groups())]
        else:
            shown.append((where, line.removeprefix(fence)))
    return shown


def test_the_table_of_contents_leaves_the_code_its_width():
    """The table of contents sits in the left sidebar: code blocks get ~116 characters at 1,280 px."""
    features = re.search(r"^  features:\n((?:    .*\n)+)", (ROOT / "mkdocs.yml").read_text(), re.M)
    assert features and re.search(r"^    - toc\.integrate$", features.group(1), re.M)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_line_of_code_a_page_shows_fits_a_laptop(page):
    """Every line of code a page shows, typed there or included from a file, is at most 110 characters."""
    wide = [
        f"{where}: {len(line)} characters: {line.strip()[:60]}..."
        for where, line in shown_lines(page)
        if len(line) > WIDEST
    ]
    assert not wide, "\n".join(wide)
