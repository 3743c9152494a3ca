"""Run one connector against the sandbox simulator into a private DuckDB raw store (connector tests).

The production path (locks, run records, progress) is ``sophia_lib.sync``; this harness is the
smallest real thing: the connector's dlt source, a dlt pipeline, a DuckDB file, real HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dlt
import duckdb

from sophia_lib.connectors import connector
from sophia_lib.connectors._http import RetrySettings
from sophia_lib.connectors.spec import SourceContext, batch_pages

FAULT_MATRIX: list[tuple[str, dict[str, Any]]] = [
    ("throttle", {"retry_after": 0}),
    ("server_error", {"count": 3}),
    ("slow", {"delay_s": 3}),
    ("reset", {}),
    ("malformed_json", {}),
    ("truncated_page", {}),
    ("duplicate_record", {}),
    ("schema_drift", {"change": "new_field"}),
]
"""(fault kind, fault params) every connector is tested against; ``count`` defaults to 1."""

FAST_RETRY = RetrySettings(max_attempts=6, max_elapsed_s=20.0, backoff_base_s=0.01, backoff_cap_s=0.05,
                           timeout=(2.0, 2.0))
"""Retries for tests: quick backoff, and a read timeout shorter than the sandbox's ``slow`` fault."""


@dataclass
class ConnectorRun:
    """A connector pointed at a sandbox vendor, syncing into ``folder/raw.duckdb``."""

    name: str
    base_url: str
    credentials: dict[str, str]
    folder: Path
    retry: RetrySettings = field(default_factory=lambda: FAST_RETRY)
    options: dict[str, Any] = field(default_factory=dict)
    saved_secrets: dict[str, str] = field(default_factory=dict)
    last_context: SourceContext | None = None

    @classmethod
    def against(cls, server: Any, name: str, folder: Path, **options: Any) -> ConnectorRun:
        """Use the simulator's demo credentials for vendor ``name`` (as `sophia sandbox serve` prints them)."""
        creds = dict(server.sandbox.vendors[name].credentials())
        return cls(name, server.url(name), creds, folder, options={**creds, **options})

    def context(self, full_refresh: bool = False) -> SourceContext:
        def secret(key: str) -> str:
            if key in self.saved_secrets:
                return self.saved_secrets[key]
            if key not in self.credentials:
                raise KeyError(f"no sandbox credential {key!r} for {self.name}; have {sorted(self.credentials)}")
            return self.credentials[key]

        def save(key: str, value: str) -> None:
            self.saved_secrets[key] = value

        ctx = SourceContext(name=self.name, base_url=self.base_url, options=dict(self.options), secret=secret,
                            save_secret=save, full_refresh=full_refresh, retry=self.retry)
        self.last_context = ctx
        return ctx

    def pipeline(self) -> dlt.Pipeline:
        return dlt.pipeline(pipeline_name=f"test_{self.name}", pipelines_dir=str(self.folder / "dlt"),
                            destination=dlt.destinations.duckdb(str(self.folder / "raw.duckdb")),
                            dataset_name=f"raw_{self.name}")

    def sync(self, full_refresh: bool = False) -> Any:
        """One sync; raises what the pipeline raises (dlt wraps connector errors in PipelineStepFailed)."""
        source = batch_pages(connector(self.name).source(self.context(full_refresh)))  # as the sync runs it
        return self.pipeline().run(source, refresh="drop_sources" if full_refresh else None)

    def rows(self, table: str, columns: str = "*") -> list[tuple]:
        with duckdb.connect(str(self.folder / "raw.duckdb"), read_only=True) as con:
            return con.sql(f'select {columns} from raw_{self.name}."{table}"').fetchall()

    def count(self, table: str) -> int:
        return self.rows(table, "count(*)")[0][0]

    def keys(self, table: str, key: str = "id") -> list[Any]:
        return sorted(r[0] for r in self.rows(table, f'"{key}"'))

    def requests_sent(self) -> int:
        """HTTP requests the last sync sent (retries included)."""
        assert self.last_context is not None, "sync first"
        return sum(s.requests_sent for s in self.last_context.sessions)


def error_in_chain(error: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The first exception of ``kind`` in the chain dlt wrapped around a connector's error."""
    seen: BaseException | None = error
    while seen is not None and not isinstance(seen, kind):
        seen = seen.__cause__ or seen.__context__
    return seen
