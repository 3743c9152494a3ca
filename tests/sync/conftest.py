"""Fixtures for sync tests: the toy vendors served by the sandbox, their connectors, a config."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import sophia_lib.connectors as connectors_registry
from sophia_lib.config import SecretRef, SophiaConfig, SourceConfig
from sophia_lib.sandbox.company import Company
from sophia_lib.sandbox.simulator.app import Sandbox
from sophia_lib.sandbox.simulator.server import SandboxServer
from tests.sync import toy

FAST_SYNC = {"parallelism": 2, "max_retry_s": 3.0, "request_timeout_s": 2.0}
"""Quick retries for tests: backoff scales down with max_retry_s; a 2 s read timeout."""


@pytest.fixture
def toy_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[SandboxServer]:
    """The sandbox serving the toy vendors, with their connectors registered for the test."""
    import sophia_lib.sandbox.vendors as vendors

    monkeypatch.setattr(vendors, "vendor_classes", lambda: {"toy": toy.ToyVendor, "toy2": toy.Toy2Vendor})
    registry: dict[str, Any] = connectors_registry._REGISTRY
    for name in ("toy", "toy2"):
        monkeypatch.delitem(registry, name, raising=False)
    saved = dict(registry)
    toy.register_connectors()
    for name in ("toy", "toy2"):
        monkeypatch.setitem(registry, name, registry[name])  # removed again after the test
    assert set(registry) - set(saved) == {"toy", "toy2"}
    with SandboxServer(Sandbox(Company(seed=1, size="small", now=pd.Timestamp(toy.T0)))) as server:
        yield server


def toy_sources(server: SandboxServer, names: tuple[str, ...] = ("toy", "toy2")) -> dict[str, dict[str, Any]]:
    return {name: {"base_url": server.url(name), "credentials": {"refresh_token": {"secret": f"{name.upper()}_RT"}},
                   "options": {"client_id": toy.CLIENT_ID}} for name in names}


@pytest.fixture
def make_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., SophiaConfig]:
    """``make_config(server, warehouse_url=None, names=("toy", "toy2"), **sync)``: a config whose sources are
    the toy vendors, with their refresh tokens in the (file) credential store under var_dir."""
    from cryptography.fernet import Fernet

    monkeypatch.setenv("SOPHIA_SECRETS_KEY", Fernet.generate_key().decode())

    def make(server: SandboxServer, warehouse_url: str | None = None, names: tuple[str, ...] = ("toy", "toy2"),
             var_dir: Path | None = None, **sync: Any) -> SophiaConfig:
        from sophia_lib.secrets import open_store

        warehouse = {"url": warehouse_url} if warehouse_url else {}
        config = SophiaConfig(var_dir=var_dir or tmp_path / "var", warehouse=warehouse, sync={**FAST_SYNC, **sync})
        store = open_store(config)
        for name, source in toy_sources(server, names).items():
            config.sources[name] = SourceConfig(**source)  # type: ignore[index]  # test vendors: not in TSourceName
            if source["credentials"]["refresh_token"]["secret"] not in store.names():
                store.set(source["credentials"]["refresh_token"]["secret"], toy.REFRESH_TOKEN)
        return config

    return make


def secret_ref(name: str) -> SecretRef:
    return SecretRef(secret=name)
