"""The seven dashboards execute headless (papermill) against the query service as each policy scope and
render to static pages with plotly charts, the "as of" stamp and no traceback."""

from __future__ import annotations

import re
from pathlib import Path

from sophia_lib.dashboards import registry
from sophia_lib.dashboards.scopes import scope_for
from sophia_lib.dashboards.snapshots import SnapshotStore
from tests.dashboards.conftest import USERS, DashEnv, assert_no_traceback

BUILT_IN = {"executive-overview", "sales", "marketing", "customer-success", "finance", "operations", "data-health"}


def _page(env: DashEnv, user: str, slug: str) -> str:
    store = SnapshotStore.from_config(env.config)
    page = store.page(scope_for(env.config, USERS[user]), slug)
    assert page is not None, f"no page of {slug} for {user}"
    return Path(page.path).read_text()


def test_every_dashboard_rendered_for_every_scope_without_error(dash_env: DashEnv, rendered) -> None:
    assert {d.slug for d in registry.builtin(dash_env.config)} == BUILT_IN
    assert not rendered.failed, rendered.summary()
    scopes = {key.split("/")[0] for key in rendered.pages}
    assert len(scopes) == 5, scopes  # analyst, developer, executive, executive EMEA (seen), super user
    print(rendered.summary())
    for key, entry in sorted(rendered.pages.items()):
        print(f"  {key}: {entry['duration_s']} s, {entry['bytes'] // 1024} KiB")


def test_pages_have_plotly_charts_the_as_of_stamp_and_no_traceback(dash_env: DashEnv, rendered) -> None:
    for slug in BUILT_IN - {"data-health"}:
        html = _page(dash_env, "vic", slug)
        assert html.count('class="plotly-graph-div') >= 2, slug
        assert "Plotly.newPlot" in html and "plotly.min.js" in html, slug
        assert re.search(r"Data as of \d\d:\d\d UTC \(\d+ min ago\)", html), slug
        assert 'class="sophia-tile"' in html or slug == "operations", slug
        assert_no_traceback(html)
    health = _page(dash_env, "sue", "data-health")
    assert "Sources" in health and "salesforce" in health and "Data as of" in health
    assert_no_traceback(health)


def test_no_code_cells_reach_the_page(dash_env: DashEnv, rendered) -> None:
    html = _page(dash_env, "vic", "sales")
    for code in ("import sophia_lib", "def render(", "ui.kpis(", "board.show()"):
        assert code not in html


def test_each_scope_sees_its_own_rows(dash_env: DashEnv, rendered) -> None:
    """The EMEA executive's page is computed under the regional row filter, so its figures differ."""
    everyone = _page(dash_env, "vic", "finance")
    emea = _page(dash_env, "emea", "finance")
    values = re.compile(r'<div class="value">([^<]+)</div>')
    assert values.findall(everyone) != values.findall(emea)


def test_data_health_is_rendered_only_for_super_users(dash_env: DashEnv, rendered) -> None:
    health_scopes = {entry["scope"] for entry in rendered.pages.values() if entry["slug"] == "data-health"}
    assert health_scopes == {"super_user|"}
