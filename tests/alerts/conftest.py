"""Fixtures of the alerts tests: one published snapshot of the synced small sandbox, as of the company's
own "now" (so the marts agree with the sandbox's ground truth), shared by the session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from sophia_lib.config import SophiaConfig
from sophia_lib.sandbox.company import Company


@dataclass
class PublishedSandbox:
    config: SophiaConfig
    company: Company


@pytest.fixture(scope="session")
def published_sandbox(synced_sandbox, tmp_path_factory: pytest.TempPathFactory) -> PublishedSandbox:
    import sophia_lib.transforms  # noqa: F401  (registers the transform chain as the warehouse's builder)
    from sophia_lib.warehouse import build_all, open_warehouse

    config = synced_sandbox.copy_to(Path(tmp_path_factory.mktemp("alerts")) / "var")
    wh = open_warehouse(config)
    try:
        wh.publish(build_all, as_of=synced_sandbox.company.now.to_pydatetime(), timeout=120)
    finally:
        wh.close()
    return PublishedSandbox(config, synced_sandbox.company)
