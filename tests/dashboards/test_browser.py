"""In a real browser (Playwright driving Debian chromium) through the hub: the executive lists and opens
dashboards (plotly SVG, "as of" stamp, no traceback), explores one live and a filter changes the figures;
an analyst's published notebook then shows up for the executive. Screenshots at desktop and phone widths
go to ``test-artifacts/dashboards/`` (git-ignored; CI uploads it)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from tests.dashboards.conftest import DashEnv
from tests.support.browser import chromium_browser

ARTIFACTS = Path(os.environ.get("SOPHIA_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with chromium_browser() as launched:
        yield launched


def _shot(page, name: str) -> Path:
    folder = ARTIFACTS / "dashboards"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def _signed_in(browser, env: DashEnv, user: str, viewport: dict):
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.goto(f"{env.hub.url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", "x")
    page.click("#login_submit")
    page.wait_for_load_state()
    page.goto(env.prefix_url)
    page.locator(".card").first.wait_for(timeout=30_000)
    return context, page


def _no_traceback(page) -> None:
    text = page.locator("body").inner_text()
    assert "Traceback" not in text and "most recent call last" not in text


@pytest.mark.parametrize("viewport,label", [(DESKTOP, "desktop"), (PHONE, "phone")])
def test_the_executive_opens_the_executive_overview(browser, dash_env: DashEnv, dash_service, viewport,
                                                    label) -> None:
    context, page = _signed_in(browser, dash_env, "vic", viewport)
    try:
        assert page.locator(".card h2", has_text="Executive overview").count() == 1
        assert page.locator(".card h2", has_text="Data health").count() == 0
        _shot(page, f"executive-list-{label}")
        page.locator(".card", has_text="Executive overview").get_by_role("link", name="Open").click()
        page.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=30_000)
        assert page.locator(".js-plotly-plot").count() >= 3
        assert page.get_by_text("Data as of").first.is_visible()
        _no_traceback(page)
        if label == "phone":  # the tiles fold: nothing wider than the screen
            width = page.evaluate("document.querySelector('.sophia-tiles').getBoundingClientRect().width")
            assert width <= viewport["width"]
        _shot(page, f"executive-overview-{label}")
    finally:
        context.close()


def test_a_filter_changes_the_figures_in_live_mode(browser, dash_env: DashEnv, dash_service) -> None:
    context, page = _signed_in(browser, dash_env, "vic", DESKTOP)
    try:
        page.goto(f"{dash_env.prefix_url}live/sales")
        page.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=60_000)
        _no_traceback(page)
        page.wait_for_timeout(3000)  # the widgets' websocket connects after the page has rendered
        before = page.locator(".sophia-tile .value").all_inner_texts()
        region = page.locator(".widget-dropdown", has_text="Region").locator("select")
        region.select_option(label="EMEA")
        page.wait_for_function("(b) => { const v = [...document.querySelectorAll('.sophia-tile .value')]"
                               ".map(e => e.innerText); return v.length > 0 && v.every(x => x) && "
                               "JSON.stringify(v) !== b; }",
                               arg=json.dumps(before, separators=(",", ":"), ensure_ascii=False), timeout=60_000)
        page.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=30_000)
        assert page.locator(".sophia-tile .value").all_inner_texts() != before
        _no_traceback(page)
        _shot(page, "sales-live-emea-desktop")
    finally:
        context.close()


def test_an_analyst_publishes_and_the_executive_sees_it(browser, dash_env: DashEnv, dash_service, tmp_path,
                                                        monkeypatch) -> None:
    from sophia_lib.dashboards.client import publish_notebook

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(
        "from sophia_lib.dashboards import ui\ndata = ui.Data()\n"
        "ui.chart(ui.line(data.metric('arr', grain='month'), 'month', 'arr', 'ARR', unit='currency'))")]
    path = tmp_path / "arr.ipynb"
    nbformat.write(nb, path)
    monkeypatch.setenv("SOPHIA_DASHBOARDS_URL", dash_env.prefix_url)
    monkeypatch.setenv("SOPHIA_DASHBOARDS_TOKEN", dash_env.tokens["ana"])
    publish_notebook(dash_env.config, path, "ARR trend (Ana)", ["sophia-executives"], slug="arr-trend-ana")
    context, page = _signed_in(browser, dash_env, "vic", DESKTOP)
    try:
        card = page.locator(".card", has_text="ARR trend (Ana)")
        card.wait_for(timeout=10_000)
        card.get_by_role("link", name="Open").click()
        page.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=30_000)
        _shot(page, "published-by-analyst-desktop")
    finally:
        context.close()
