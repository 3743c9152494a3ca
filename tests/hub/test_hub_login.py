"""The real hub, the real authorization-code flow against the sandbox identity provider: who gets in,
with exactly which groups and scopes, what each role lands on, and what an executive is refused."""

from __future__ import annotations

import httpx
import pytest

from tests.hub.flows import api, login
from tests.hub.harness import RunningHub

ANALYST = ["access:servers!user={u}", "access:services!service=dashboards", "access:services!service=query",
           "custom:sophia:dashboards:publish", "delete:servers!user={u}", "read:servers!user={u}",
           "read:users!user={u}", "read:users:activity!user={u}", "read:users:groups!user={u}",
           "read:users:name!user={u}", "servers!user={u}", "start:servers!user={u}", "users:activity!user={u}"]
DEVELOPER = sorted([*ANALYST, "custom:sophia:sources:read", "read:tokens!user={u}", "tokens!user={u}"])
EXPECTED = {
    "erin": (["sophia-executives"], ["access:services!service=dashboards", "read:users!user={u}",
                                     "read:users:activity!user={u}", "read:users:groups!user={u}",
                                     "read:users:name!user={u}"]),
    "alan": (["sophia-analysts"], ANALYST),
    "dev": (["sophia-developers"], DEVELOPER),
    "grace": (["sophia-analysts", "sophia-developers"], DEVELOPER),  # the most privileged role's set, no more
}


@pytest.mark.parametrize("user", sorted(EXPECTED))
def test_a_demo_user_signs_in_with_exactly_their_groups_and_scopes(hub: RunningHub, user: str) -> None:
    client, page = login(hub.url, user)
    assert page.status_code == 200 and page.url.path == "/hub/home"
    model = api(client, hub.url, "GET", "/user").json()
    groups, scopes = EXPECTED[user]
    assert model["name"] == user and model["admin"] is False
    assert model["groups"] == groups
    assert sorted(model["scopes"]) == sorted(s.format(u=user) for s in scopes)


def test_the_super_user_is_an_admin_with_the_sophia_scopes(hub: RunningHub) -> None:
    client, _ = login(hub.url, "ada")
    model = api(client, hub.url, "GET", "/user").json()
    assert model["admin"] is True and model["groups"] == ["sophia-super-users"]
    assert {"admin-ui", "admin:users", "admin:servers", "tokens", "read:metrics", "custom:sophia:health:read",
            "custom:sophia:sources:read", "custom:sophia:dashboards:publish"} <= set(model["scopes"])
    users = api(client, hub.url, "GET", "/users").json()
    assert {"ada"} <= {u["name"] for u in users}


def test_a_user_in_no_sophia_group_is_refused_with_a_readable_page(hub: RunningHub) -> None:
    client, page = login(hub.url, "nobody")
    assert page.status_code == 403
    assert "Access not granted" in page.text
    assert "none of the Sophia groups" in page.text and "sophia-analysts" in page.text
    assert "Traceback" not in page.text
    assert api(client, hub.url, "GET", "/user").status_code == 403  # and no session was made


def test_an_executive_can_spawn_nothing_reach_no_server_and_make_no_token(hub: RunningHub) -> None:
    client, _ = login(hub.url, "erin")
    assert api(client, hub.url, "POST", "/users/erin/server", json={}).status_code == 403
    assert api(client, hub.url, "POST", "/users/erin/tokens", json={"note": "x"}).status_code == 403
    assert api(client, hub.url, "GET", "/users").status_code == 403
    assert api(client, hub.url, "GET", "/users/alan").status_code in (403, 404)
    assert client.get(f"{hub.url}/hub/spawn/erin").status_code == 403
    for path in ("/user/erin/", "/user/alan/lab"):  # no server behind them: the hub does not even say whose
        refused = client.get(f"{hub.url}{path}")
        assert refused.status_code in (403, 404) and "JupyterLab" not in refused.text, path
    # with a running server behind /user/<name>/ the refusal is a 403: see test_hub_spawn.py


def test_each_role_lands_somewhere_useful(hub: RunningHub) -> None:
    _, erin = login(hub.url, "erin")
    assert "Executive viewer" in erin.text and "Revenue overview" in erin.text
    assert "/services/dashboards/revenue/" in erin.text
    assert "Pipeline QA" not in erin.text  # published for analysts only
    assert "Open workbench" not in erin.text and "Start My Server" not in erin.text
    assert "/hub/token" not in erin.text  # no Token link for a role without the tokens scope

    _, alan = login(hub.url, "alan")
    assert "Open workbench" in alan.text and "Revenue overview" in alan.text and "Pipeline QA" in alan.text
    assert "Data health" not in alan.text and "sophia-admin" not in alan.text

    _, ada = login(hub.url, "ada")
    assert "Data health" in ada.text and 'id="sophia-admin"' in ada.text and "Open workbench" in ada.text


def test_prometheus_metrics_are_on_and_need_the_metrics_scope(hub: RunningHub) -> None:
    assert httpx.get(f"{hub.url}/hub/metrics").status_code == 403
    erin, _ = login(hub.url, "erin")
    assert erin.get(f"{hub.url}/hub/metrics").status_code == 403
    ada, _ = login(hub.url, "ada")
    metrics = ada.get(f"{hub.url}/hub/metrics")
    assert metrics.status_code == 200 and "jupyterhub_" in metrics.text
