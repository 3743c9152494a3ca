"""In a real browser (Playwright driving Debian chromium): the executive signs in and lands on their
dashboards; the analyst signs in, opens the workbench and reaches JupyterLab. Screenshots are kept in
``test-artifacts/hub/`` (git-ignored; CI uploads it)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hub.harness import RunningHub
from tests.support.browser import chromium_browser

ARTIFACTS = Path(os.environ.get("SOPHIA_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with chromium_browser() as launched:
        yield launched


def _sign_in(page, hub: RunningHub, username: str) -> None:
    page.goto(f"{hub.url}/hub/login")
    page.get_by_role("button", name="Sign in with Sophia demo identity provider").click()
    page.fill("#username", username)
    page.fill("#password", f"{username}-demo")
    page.get_by_role("button", name="Sign in").click()


def _shot(page, name: str) -> Path:
    folder = ARTIFACTS / "hub"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def test_the_executive_signs_in_and_lands_on_their_dashboards(browser, hub: RunningHub) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        _sign_in(page, hub, "erin")
        page.wait_for_url(f"{hub.url}/hub/home", timeout=30_000)
        dashboards = page.locator("#sophia-dashboards")
        dashboards.get_by_role("link", name="Revenue overview").wait_for(timeout=10_000)
        assert page.locator("#sophia-role").inner_text().endswith("Executive viewer")
        assert page.get_by_text("Open workbench").count() == 0
        assert page.get_by_text("Start My Server").count() == 0
        assert _shot(page, "executive-landing").stat().st_size > 0
    finally:
        context.close()


def test_the_analyst_signs_in_and_reaches_jupyterlab(browser, hub: RunningHub) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        _sign_in(page, hub, "grace")
        page.wait_for_url(f"{hub.url}/hub/home", timeout=30_000)
        _shot(page, "analyst-landing")
        page.get_by_role("button", name="Open workbench").click()
        page.wait_for_url(f"{hub.url}/user/grace/lab**", timeout=120_000)
        page.locator("#jp-main-dock-panel").wait_for(timeout=60_000)
        page.locator(".jp-DirListing-itemText", has_text="explore").first.wait_for(timeout=60_000)
        _shot(page, "analyst-jupyterlab")
        assert "JupyterLab" in page.title()
    finally:
        context.close()
