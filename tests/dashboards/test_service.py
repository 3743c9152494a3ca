"""The dashboards service with a real hub: listing by audience, instant snapshots per policy scope, refusals,
forged identity headers, and every view in the audit log."""

from __future__ import annotations

import time

from sqlalchemy import select

from sophia_lib.appdb import open_app_db
from sophia_lib.appdb.models import AuditEntry
from sophia_lib.dashboards.usage import usage
from tests.dashboards.conftest import DashEnv, assert_no_traceback, login


def _audit(env: DashEnv, action: str, actor: str) -> list[AuditEntry]:
    time.sleep(0.3)  # the audit writer commits in the background
    app_db = open_app_db(env.config)
    try:
        with app_db.session() as s:
            return list(s.scalars(select(AuditEntry).where(AuditEntry.action == action, AuditEntry.actor == actor)))
    finally:
        app_db.close()


def test_executive_lists_and_opens_the_executive_overview(dash_env: DashEnv, dash_service) -> None:
    client = login(dash_env.hub, "vic")
    listing = client.get(dash_env.prefix_url)
    assert listing.status_code == 200, listing.text[:300]
    assert "Executive overview" in listing.text and "Data health" not in listing.text
    assert "Data as of" in listing.text
    page = client.get(f"{dash_env.prefix_url}d/executive-overview/")
    assert page.status_code == 200
    assert "plotly-graph-div" in page.text and "Data as of" in page.text and 'id="sophia-bar"' in page.text
    assert "/services/dashboards/static/plotly.min.js" in page.text
    assert client.get(f"{dash_env.prefix_url}static/plotly.min.js").status_code == 200
    assert_no_traceback(page.text)
    assert _audit(dash_env, "dashboard.view", "vic")


def test_listing_follows_the_audience(dash_env: DashEnv, dash_service) -> None:
    slugs = {u: {d["slug"] for d in login(dash_env.hub, u).get(f"{dash_env.prefix_url}api/dashboards").json()
                 ["dashboards"]} for u in ("vic", "ana", "sue")}
    assert "data-health" not in slugs["vic"] and "data-health" not in slugs["ana"]
    assert "data-health" in slugs["sue"] and "executive-overview" in slugs["sue"]


def test_executive_cannot_open_a_dashboard_outside_their_audience(dash_env: DashEnv, dash_service) -> None:
    client = login(dash_env.hub, "vic")
    for path in ("d/data-health/", "live/data-health"):
        response = client.get(f"{dash_env.prefix_url}{path}")
        assert response.status_code == 403, path
        assert "salesforce" not in response.text
    assert _audit(dash_env, "dashboard.denied", "vic")


def test_a_person_in_no_sophia_group_is_refused(dash_env: DashEnv, dash_service) -> None:
    response = login(dash_env.hub, "nobody").get(dash_env.prefix_url)
    assert response.status_code == 403 and "no Sophia group" in response.text


def test_without_login_the_service_sends_you_to_the_hub(dash_env: DashEnv, dash_service) -> None:
    import httpx

    response = httpx.get(f"{dash_env.prefix_url}d/executive-overview/", follow_redirects=False)
    assert response.status_code == 302 and "/hub/api/oauth2/authorize" in response.headers["location"]


def test_each_viewer_gets_their_scope_s_page(dash_env: DashEnv, dash_service) -> None:
    vic = login(dash_env.hub, "vic").get(f"{dash_env.prefix_url}d/finance/")
    emea = login(dash_env.hub, "emea").get(f"{dash_env.prefix_url}d/finance/")
    assert vic.status_code == emea.status_code == 200
    assert vic.text.split('id="sophia-bar"')[1] != emea.text.split('id="sophia-bar"')[1]


def test_forged_identity_headers_change_nothing(dash_env: DashEnv, dash_service) -> None:
    client = login(dash_env.hub, "vic")
    forged = {"X-Forwarded-User": "sue", "X-Remote-User": "sue", "X-Sophia-Audience": "sophia-super-users",
              "X-Sophia-Viewer-Token": dash_env.tokens["sue"], "X-JupyterHub-User": "sue"}
    listing = client.get(f"{dash_env.prefix_url}api/dashboards", headers=forged).json()
    assert listing["user"] == "vic" and listing["role"] == "executive_viewer"
    assert client.get(f"{dash_env.prefix_url}d/data-health/", headers=forged).status_code == 403
    assert client.get(f"{dash_env.prefix_url}d/data-health/?user=sue&token={dash_env.tokens['sue']}").status_code \
        in (302, 403)


def test_a_scope_first_seen_is_rendered_on_demand(dash_env: DashEnv, dash_service) -> None:
    dash_env.hub.create_user("apac", ["sophia-executives", "sophia-region-apac"])
    client = login(dash_env.hub, "apac")
    assert client.get(dash_env.prefix_url).status_code == 200  # completes the OAuth dance
    first = client.get(f"{dash_env.prefix_url}d/sales/", follow_redirects=False)
    assert first.status_code == 202 and "Preparing" in first.text
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        page = client.get(f"{dash_env.prefix_url}d/sales/")
        if page.status_code == 200:
            break
        time.sleep(1)
    assert page.status_code == 200 and "plotly-graph-div" in page.text


def test_usage_counts_views_per_dashboard_and_viewer(dash_env: DashEnv, dash_service) -> None:
    client = login(dash_env.hub, "ana")
    for _ in range(3):
        assert client.get(f"{dash_env.prefix_url}d/marketing/").status_code == 200
    time.sleep(0.3)
    app_db = open_app_db(dash_env.config)
    try:
        rows = {(r["dashboard"], r["user"]): r["views"] for r in usage(app_db)}
    finally:
        app_db.close()
    assert rows[("marketing", "ana")] == 3


def test_snapshot_serving_is_fast(dash_env: DashEnv, dash_service) -> None:
    client = login(dash_env.hub, "vic")
    url = f"{dash_service.url}/services/dashboards/d/sales/"  # straight to the service, no hub proxy
    assert client.get(dash_env.prefix_url).status_code == 200  # completes the OAuth dance
    client.get(url)
    timings = []
    for _ in range(20):
        started = time.perf_counter()
        assert client.get(url).status_code == 200
        timings.append(time.perf_counter() - started)
    timings.sort()
    print(f"snapshot page p50 {timings[10] * 1000:.1f} ms, max {timings[-1] * 1000:.1f} ms")
    assert timings[10] < 0.25
