"""Reports end to end: the small sandbox published with the real transforms (as of the company's "now"), a
real JupyterHub issuing tokens to one report user per role, and the query service in front of it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sophia_lib.config import SophiaConfig
from sophia_lib.sandbox.company import Company
from tests.query.conftest import QUERY_TOKEN, hub_config
from tests.support.hub import start_hub

REPORT_USERS = {"report-exec": ("executive_viewer", "sophia-executives"),
                "report-analyst": ("analyst", "sophia-analysts"),
                "report-admin": ("super_user", "sophia-super-users")}


@dataclass
class ReportEnv:
    config: SophiaConfig
    company: Company
    url: str
    tokens: dict[str, str]  # role → hub token of that role's report user


@pytest.fixture(scope="session")
def report_env(synced_sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReportEnv]:
    import sophia_lib.transforms  # noqa: F401  (registers the transform chain as the warehouse's builder)
    from sophia_lib.query.identity import HubIdentity
    from sophia_lib.query.service import start_in_thread
    from sophia_lib.warehouse import build_all, open_warehouse

    config = synced_sandbox.copy_to(Path(tmp_path_factory.mktemp("reports")) / "var")
    wh = open_warehouse(config)
    try:
        wh.publish(build_all, as_of=synced_sandbox.company.now.to_pydatetime(), timeout=120)
    finally:
        wh.close()
    with start_hub(hub_config()) as hub:
        for user, (_role, group) in REPORT_USERS.items():
            hub.create_user(user, [group])
        identifier = HubIdentity(hub.api_url, QUERY_TOKEN, config.hub.group_roles, config.query.required_scope,
                                 cache_s=30.0)
        running = start_in_thread(config, identifier=identifier)
        try:
            tokens = {role: hub.token_for(user) for user, (role, _group) in REPORT_USERS.items()}
            yield ReportEnv(config, synced_sandbox.company, running.url, tokens)
        finally:
            running.stop()


@pytest.fixture(scope="session")
def contact_pii(report_env: ReportEnv) -> dict[str, set[str]]:
    """Every contact email, phone and full name in the snapshot (core.people)."""
    from sophia_lib.warehouse import open_warehouse

    wh = open_warehouse(report_env.config)
    try:
        with wh.reader() as r:
            rows = r.query("SELECT email, phone, full_name FROM core.people").to_pydict()
    finally:
        wh.close()
    return {"email": {v.lower() for v in rows["email"] if v}, "phone": {v for v in rows["phone"] if v},
            "name": {v.lower() for v in rows["full_name"] if v and len(v) > 5}}


def leaked(text: str, pii: dict[str, set[str]]) -> dict[str, list[str]]:
    """The contact PII that appears in ``text`` (case-insensitive, line breaks ignored)."""
    flat = " ".join(text.lower().split())
    squashed = flat.replace(" ", "")
    found: dict[str, list[str]] = {}
    for kind, values in pii.items():
        hits = sorted(v for v in values if (v.lower() in flat or v.lower().replace(" ", "") in squashed))
        if hits:
            found[kind] = hits[:3]
    return found
