"""Headless Chromium from the system's package (or an installed Google Chrome), driven by
Playwright (no browser download)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from lab.deps import CHROMIUM_NAMES, MissingDependency, find_chromium, install_hint

# Without --disable-background-networking, Chromium keeps dialling Google's hosts,
# which fails noisily on a closed network (a workshop, CI).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu"]


def chromium_path() -> str:
    """The system Chromium (or Google Chrome), or MissingDependency naming the install command."""
    path = find_chromium()
    if path is None:
        names = ", ".join(CHROMIUM_NAMES)
        raise MissingDependency(
            f"chromium is not on PATH ({names}) nor in /Applications. "
            f"Install it with: {install_hint('chromium')}"
        )
    return path


@contextmanager
def chromium() -> Iterator:
    """A headless Playwright Browser on the system Chromium, closed on exit."""
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def log_line(page, text: str):
    """The lines of a page's log (`data-testid="log"`, every chapter's page has one) holding `text`."""
    return page.get_by_test_id("log").locator("li").filter(has_text=text)
