"""The warehouse: raw_<vendor> tables written by the sync, core and marts published as snapshots.

One writer (the refresh), any number of reader processes. Readers never block, never error because
a refresh is running and never see half a refresh::

    wh = open_warehouse(load_config())
    with wh.raw_writer() as w:                      # sync side, holds the writer lock
        w.write_table("raw_hubspot", "contacts", arrow_or_pandas, mode="append")
    info = wh.publish(build)                        # build(b): b.write_table("marts", "x", df) …
    with wh.reader() as r:                          # pinned to one snapshot for the block
        table = r.query("select * from marts.x where k = :k", {"k": 1})
        r.snapshot.id, r.snapshot.as_of             # also in table.schema.metadata
    wh.snapshots(); wh.current(); wh.rollback(); wh.status()

The engine follows the URL scheme (see :mod:`.backends`): DuckDB files under a folder
(:mod:`.duckdb_backend`) or one PostgreSQL database (:mod:`.postgres_backend`); the contract is in
:mod:`.base`. Snapshot build steps register by name in :mod:`.builders`.
"""

from __future__ import annotations

from sophia_lib.config import SophiaConfig
from sophia_lib.warehouse.backends import BACKENDS, backend_class, connect, register_backend
from sophia_lib.warehouse.base import (
    RawWriter,
    Reader,
    SnapshotBuilder,
    SnapshotInfo,
    Warehouse,
    WarehouseStatus,
    result_snapshot,
)
from sophia_lib.warehouse.builders import build_all, register_builder, registered_builders, unregister_builder

__all__ = [
    "BACKENDS",
    "RawWriter",
    "Reader",
    "SnapshotBuilder",
    "SnapshotInfo",
    "Warehouse",
    "WarehouseStatus",
    "backend_class",
    "build_all",
    "connect",
    "open_warehouse",
    "register_backend",
    "register_builder",
    "registered_builders",
    "result_snapshot",
    "unregister_builder",
]


def open_warehouse(config: SophiaConfig) -> Warehouse:
    """The configured warehouse (URL scheme picks the backend; password resolved from the secret store)."""
    from sophia_lib.secrets import resolve

    settings = config.warehouse
    url = settings.url or f"duckdb:///{config.var_dir / 'warehouse'}"  # SophiaConfig fills this in
    password = resolve(settings.password, config) if settings.password is not None else None
    return connect(url, keep_snapshots=settings.keep_snapshots, password=password)
