"""Settings of the sync stage, derived once from ``sophia.yaml`` (``sync:`` and ``var_dir``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sophia_lib.config import SophiaConfig
from sophia_lib.connectors._http import RetrySettings

LOCK_WAIT_S = 5.0
"""How long a sync waits for another process's sync of the same source before reporting it busy."""
WRITER_WAIT_S = 900.0
"""How long a load waits for the warehouse writer lock (a publish or another process's load)."""
STALE_AFTER = timedelta(hours=26)
"""A source whose last success is older than this is reported ``stale`` (daily schedule plus slack)."""


@dataclass(frozen=True)
class SyncSettings:
    """Where the sync keeps its state and how hard it tries."""

    parallelism: int
    retry: RetrySettings
    pipelines_dir: Path
    locks_dir: Path
    lock_wait_s: float = LOCK_WAIT_S
    writer_wait_s: float = WRITER_WAIT_S

    @classmethod
    def from_config(cls, config: SophiaConfig) -> SyncSettings:
        return cls(parallelism=config.sync.parallelism,
                   retry=retry_settings(config.sync.max_retry_s, config.sync.request_timeout_s),
                   pipelines_dir=config.var_dir / "dlt",
                   locks_dir=config.var_dir / "sync")


def retry_settings(max_retry_s: float, request_timeout_s: float) -> RetrySettings:
    """HTTP retry bounds from ``sync.max_retry_s`` and ``sync.request_timeout_s``.

    Backoff scales with the retry budget (base 1 %, cap 10 %, at most 0.5 s and 30 s), so a small
    budget (tests, interactive runs) still gets several attempts instead of one long sleep.
    """
    return RetrySettings(max_attempts=8, max_elapsed_s=max_retry_s,
                         backoff_base_s=min(0.5, max_retry_s / 100), backoff_cap_s=min(30.0, max_retry_s / 10),
                         timeout=(min(10.0, request_timeout_s), request_timeout_s))


def with_sandbox_sources(config: SophiaConfig) -> SophiaConfig:
    """With ``sandbox.feeds_sources`` (the demo), every source not configured under ``sources:`` whose demo
    credentials the sandbox stored when it started (`sophia sandbox serve`, `sophia demo`) syncs from the
    sandbox simulator, with those credentials and options. Before the sandbox first starts, none does."""
    if not config.sandbox.feeds_sources:
        return config
    from sophia_lib.config import SecretRef, SourceConfig
    from sophia_lib.connectors import connectors
    from sophia_lib.secrets import open_store, sandbox_secret_name

    store = open_store(config)
    stored = set(store.names())
    sources = dict(config.sources)
    for name, spec in connectors().items():
        if name in sources or not all(sandbox_secret_name(name, key) in stored for key in spec.credentials):
            continue
        base = f"http://{config.sandbox.host}:{config.sandbox.port}/{name}"
        credentials = {key: SecretRef(secret=sandbox_secret_name(name, key)) for key in spec.credentials}
        options = {key: store.get(sandbox_secret_name(name, key)) for key in spec.options
                   if sandbox_secret_name(name, key) in stored}
        sources[name] = SourceConfig(base_url=base, credentials=credentials, options=options)
    return config.model_copy(update={"sources": sources})
