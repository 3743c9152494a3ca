"""Alembic environment for the app database, configured in code by ``sophia_lib.appdb.engine``.

The caller passes an open connection in ``config.attributes["connection"]``; there is no
alembic.ini. New migration: ``python -m sophia_lib.appdb revision -m "what changed"``.
"""

from __future__ import annotations

from typing import Any

from alembic import context

from sophia_lib.appdb.models import Base, UTCDateTime


def _render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    # Migrations must not import the models (they change later); write the plain type instead.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=Base.metadata,
        compare_type=True,
        render_item=_render_item,
        # pysqlite's transaction handling is replaced in engine.py, so SQLite DDL is transactional too.
        transactional_ddl=True,
        **kwargs,
    )


connection = context.config.attributes.get("connection")
if connection is None:
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("run migrations through sophia_lib.appdb (open_app_db or upgrade), not bare alembic")
    _configure(url=url, literal_binds=True, render_as_batch=url.startswith("sqlite"))
else:
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")

with context.begin_transaction():
    context.run_migrations()
