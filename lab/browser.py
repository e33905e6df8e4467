"""Headless Chromium from the system's package, driven by Playwright (no browser download)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from lab.deps import INSTALL_HINTS, MissingDependency

# Without --disable-background-networking, Chromium keeps dialling Google's hosts,
# which fails noisily on a closed network (a workshop, CI).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu"]


def chromium_path() -> str:
    """The system Chromium, or MissingDependency naming the install command."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise MissingDependency(f"chromium is not on PATH. Install it with: {INSTALL_HINTS['chromium']}")


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
