"""Dashboards end to end: a snapshot built by the real transforms from the synced small sandbox, a real
JupyterHub (DummyAuthenticator; the OAuth flow between hub and service is the real one), the query
service and the dashboards service on free ports, and pages rendered once per policy scope."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from sophia_lib.config import SophiaConfig
from sophia_lib.sandbox.background import free_port
from tests.support.hub import RunningHub, minimal_config, start_hub

QUERY_TOKEN = secrets.token_hex(24)
DASH_TOKEN = secrets.token_hex(24)
USERS = {
    "vic": ["sophia-executives"],
    "emea": ["sophia-executives", "sophia-region-emea"],
    "ana": ["sophia-analysts"],
    "dev": ["sophia-developers"],
    "sue": ["sophia-super-users"],
    "nobody": ["some-other-team"],
}


@dataclass
class DashEnv:
    config: SophiaConfig
    hub: RunningHub
    query_url: str
    tokens: dict[str, str]
    dash_port: int

    @property
    def prefix_url(self) -> str:
        return f"{self.hub.url}/services/dashboards/"


@pytest.fixture(scope="session")
def dash_config(synced_sandbox, tmp_path_factory: pytest.TempPathFactory) -> SophiaConfig:
    """The real transforms published over a private copy of the synced small sandbox."""
    import sophia_lib.transforms
    from sophia_lib.warehouse import open_warehouse

    config = synced_sandbox.copy_to(tmp_path_factory.mktemp("dash") / "var")
    wh = open_warehouse(config)
    try:
        wh.publish(sophia_lib.transforms.build)
    finally:
        wh.close()
    return config


def hub_config(dash_port: int, hub_port_hint: str = "") -> str:
    return minimal_config(
        services=[{"name": "query", "api_token": QUERY_TOKEN},
                  {"name": "dashboards", "api_token": DASH_TOKEN, "url": f"http://127.0.0.1:{dash_port}",
                   "oauth_no_confirm": True, "display": True}],
        roles=[{"name": "sophia-query-service", "scopes": ["read:users:name", "read:users:groups"],
                "services": ["query"]},
               {"name": "sophia-dashboards-service",
                "scopes": ["read:users:name", "read:users:groups", "access:services!service=query"],
                "services": ["dashboards"]},
               {"name": "user", "scopes": ["self", "access:services!service=dashboards"]},
               {"name": "sophia-analyst", "scopes": ["access:services!service=query"],
                "groups": ["sophia-analysts", "sophia-developers", "sophia-super-users"]}])


@pytest.fixture(scope="session")
def dash_env(dash_config: SophiaConfig) -> Iterator[DashEnv]:
    from sophia_lib.query.identity import HubIdentity
    from sophia_lib.query.service import start_in_thread

    dash_port = free_port()
    with start_hub(hub_config(dash_port)) as hub:
        for user, groups in USERS.items():
            hub.create_user(user, groups)
        identifier = HubIdentity(hub.api_url, QUERY_TOKEN, dash_config.hub.group_roles,
                                 dash_config.query.required_scope, cache_s=2.0)
        running = start_in_thread(dash_config, identifier=identifier)
        tokens = {user: hub.token_for(user) for user in USERS}
        _wait_for_proxy(hub)
        try:
            yield DashEnv(dash_config, hub, running.url, tokens, dash_port)
        finally:
            running.stop()


def _wait_for_proxy(hub: RunningHub, timeout_s: float = 120) -> None:
    """The hub adds its proxy routes only after checking its external services (ours start later)."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{hub.url}/hub/login", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the hub's proxy never routed /hub/:\n{hub.log()[-3000:]}")


def scope_auth(env: DashEnv):
    """The production path: the dashboards service's own token, each scope declared as its audience."""
    from sophia_lib.dashboards.snapshots import ServiceAudience

    return ServiceAudience(env.query_url, DASH_TOKEN)


@pytest.fixture(scope="session")
def rendered(dash_env: DashEnv):
    """Every built-in dashboard rendered for every scope with viewers (the EMEA executive was seen)."""
    from sophia_lib.dashboards.snapshots import SnapshotStore, render_all

    store = SnapshotStore.from_config(dash_env.config)
    store.record_viewer(USERS["emea"])
    return render_all(dash_env.config, scope_auth(dash_env))


@pytest.fixture(scope="session")
def dash_service(dash_env: DashEnv, rendered) -> Iterator[str]:
    from sophia_lib.dashboards.service import HubSettings, start_in_thread

    prefix = "/services/dashboards/"
    hub = HubSettings(dash_env.hub.api_url, DASH_TOKEN, prefix, "service-dashboards", prefix + "oauth_callback",
                      access_scopes={"access:services!service=dashboards"})
    running = start_in_thread(dash_env.config, hub, port=dash_env.dash_port, render_auth=scope_auth(dash_env),
                              query_url=dash_env.query_url)
    try:
        yield running
    finally:
        running.stop()


XSRF = re.compile(r'name="_xsrf" value="([^"]+)"')


def login(hub: RunningHub, user: str) -> httpx.Client:
    """Sign in at the hub (DummyAuthenticator) and return a client holding the hub's cookies."""
    hub_url = hub.url
    client = httpx.Client(follow_redirects=True, timeout=120)
    page = client.get(f"{hub_url}/hub/login")
    match = XSRF.search(page.text)
    data = {"username": user, "password": "x"}
    if match:
        data["_xsrf"] = match.group(1)
    response = client.post(f"{hub_url}/hub/login", data=data, follow_redirects=False)
    assert response.status_code in (302, 303), f"{response.status_code} {page.status_code}\n{hub.log()[-3000:]}"
    return client


def page_text(html: str) -> str:
    return re.sub(r"<[^>]+>", " ", re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", html, flags=re.S))


def assert_no_traceback(html: str) -> None:
    text = page_text(html)
    for marker in ("Traceback", "most recent call last", "Error:", "Exception"):
        assert marker not in text, f"{marker!r} in page: …{text[max(0, text.find(marker) - 200):][:400]}"

