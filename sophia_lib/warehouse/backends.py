"""Named registry of warehouse backends, chosen by the SQLAlchemy URL scheme.

Entries are ``"module:Class"`` strings, imported on first use, so a driver that is not installed
only matters to the URLs that need it. Add one with :func:`register_backend`.
"""

from __future__ import annotations

import importlib
from typing import Any

from sophia_lib.errors import ConfigError, MissingDependencyError
from sophia_lib.warehouse.base import Warehouse

BACKENDS: dict[str, str] = {
    "duckdb": "sophia_lib.warehouse.duckdb_backend:Backend",
    "postgresql": "sophia_lib.warehouse.postgres_backend:Backend",
}
DRIVERS = {"postgresql": ("psycopg[binary]", "postgres")}


def register_backend(scheme: str, target: str | type[Warehouse]) -> None:
    """Add or replace the backend for a URL scheme (``"module:Class"`` or the class itself)."""
    BACKENDS[scheme] = target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"


def scheme_of(url: str) -> str:
    """``postgresql+psycopg://…`` → ``postgresql``."""
    return url.split(":", 1)[0].split("+", 1)[0].lower()


def backend_class(url: str) -> type[Warehouse]:
    scheme = scheme_of(url)
    if scheme not in BACKENDS:
        raise ConfigError(
            f"no warehouse backend for URL scheme {scheme!r}; valid schemes: {', '.join(sorted(BACKENDS))}.",
            fix="set warehouse.url (or SOPHIA_WAREHOUSE__URL) to duckdb:////folder or "
                "postgresql+psycopg://user@host:5432/db",
        )
    module_name, _, class_name = BACKENDS[scheme].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if scheme in DRIVERS and exc.name and exc.name.split(".")[0] in ("psycopg", "psycopg_binary"):
            package, extra = DRIVERS[scheme]
            raise MissingDependencyError(package, f"the {scheme} warehouse", extra) from exc
        raise
    return getattr(module, class_name)


def connect(url: str, **options: Any) -> Warehouse:
    """Open the warehouse at ``url``; ``options`` go to the backend.

    Options: ``keep_snapshots``, ``password``, ``prune_grace_s``.
    """
    return backend_class(url)(url, **options)
