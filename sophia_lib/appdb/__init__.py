"""The application database: sync runs, job runs, alerts, dashboards, audit log (SQLite or PostgreSQL).

``open_app_db(config)`` gives an :class:`AppDb` whose schema is at the newest migration;
``upgrade(url)`` migrates explicitly. Models are in :mod:`sophia_lib.appdb.models`.
"""

from sophia_lib.appdb.engine import (
    AppDb,
    AppDbError,
    AppDbUnreachableError,
    SchemaState,
    head_revision,
    open_app_db,
    schema_state,
    upgrade,
)

__all__ = [
    "AppDb",
    "AppDbError",
    "AppDbUnreachableError",
    "SchemaState",
    "head_revision",
    "open_app_db",
    "schema_state",
    "upgrade",
]
