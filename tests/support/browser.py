"""Debian's chromium driven by Playwright (``playwright install`` cannot download here, so the system binary)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.support.servers import require_binary

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@contextmanager
def chromium_browser() -> Iterator[Any]:
    """A headless chromium, or a skip (a failure under SOPHIA_REQUIRE_SERVERS=1) when it is not installed."""
    chromium = require_binary("chromium", "the browser tests drive Debian chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
