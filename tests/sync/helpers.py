"""Reading what a sync left behind: raw tables (DuckDB or PostgreSQL) and app DB rows."""

from __future__ import annotations

from typing import Any

import duckdb
from sqlalchemy import select

from sophia_lib.appdb import open_app_db
from sophia_lib.appdb.models import Base
from sophia_lib.config import SophiaConfig
from sophia_lib.warehouse import open_warehouse


def raw_rows(config: SophiaConfig, source: str, table: str) -> list[dict[str, Any]]:
    """Every row of raw_<source>.<table> without dlt's bookkeeping columns, sorted by id."""
    wh = open_warehouse(config)
    try:
        if wh.name == "duckdb":
            with duckdb.connect(str(wh.raw_path), read_only=True) as con:  # type: ignore[attr-defined]
                arrow = con.sql(f'select * from raw_{source}."{table}"').to_arrow_table()
        else:
            with wh.raw_writer() as writer:
                arrow = writer.query(f'select * from raw_{source}."{table}"')
    finally:
        wh.close()
    rows = [{k: v for k, v in row.items() if not k.startswith("_dlt_")} for row in arrow.to_pylist()]
    return sorted(rows, key=lambda r: str(r.get("id") or r.get("record_key")))


def raw_keys(config: SophiaConfig, source: str, table: str) -> list[str]:
    return [r["id"] for r in raw_rows(config, source, table)]


def app_rows(config: SophiaConfig, model: type[Base], **where: Any) -> list[Any]:
    db = open_app_db(config)
    try:
        with db.session() as s:
            query = select(model).filter_by(**where).order_by(model.id)  # type: ignore[attr-defined]
            return list(s.scalars(query))
    finally:
        db.close()
