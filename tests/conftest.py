"""Shared fixtures. Real servers come from tests/support/servers.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.servers import create_database, postgres_server


@pytest.fixture(scope="session")
def postgres_base_url() -> Iterator[str]:
    """One real PostgreSQL server for the session (skipped/failed per SOPHIA_REQUIRE_SERVERS if absent)."""
    with postgres_server() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_base_url: str) -> str:
    """A fresh empty database on the session's server: SQLAlchemy URL (postgresql+psycopg://…/db)."""
    return create_database(postgres_base_url)


@pytest.fixture(autouse=True)
def _isolated_config(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Tests never read the developer's sophia.yaml or SOPHIA_* variables, and never write ./var."""
    import os

    for key in list(os.environ):
        if key.startswith("SOPHIA_") and key != "SOPHIA_REQUIRE_SERVERS":
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def synced_sandbox(tmp_path_factory: pytest.TempPathFactory):
    """The small sandbox company synced by every connector into a DuckDB raw store (see tests/support/raw.py)."""
    from tests.support.raw import synced_sandbox as sync

    return sync(tmp_path_factory.mktemp("synced") / "var")
