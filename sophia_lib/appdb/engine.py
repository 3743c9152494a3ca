"""Open the application database: engine, sessions, and schema kept at the newest migration.

SQLite (default, a file under ``var_dir``) or PostgreSQL (production). Opening upgrades the schema
with Alembic when it is behind; two processes opening at once is safe: a file lock beside the SQLite
file, an advisory lock on PostgreSQL (whose DDL is transactional too).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from filelock import FileLock, Timeout
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

from sophia_lib.config import SophiaConfig, load_config
from sophia_lib.errors import AppDbError, AppDbUnreachableError, ConfigError, MissingDependencyError, SophiaError

MIGRATIONS = Path(__file__).parent / "migrations"
CONNECT_TIMEOUT_S = 3
SQLITE_BUSY_TIMEOUT_MS = 10_000
MIGRATION_LOCK_TIMEOUT_S = 120
# pg_advisory_lock key shared by every Sophia process migrating the same database.
PG_MIGRATION_LOCK_KEY = 0x50F1A_A9DB
CONFIG_FIX = "set app_db.url in sophia.yaml (or SOPHIA_APP_DB__URL); leave it out for the embedded SQLite default"


@dataclass
class AppDb:
    """An open application database: ``with app_db.session() as s: ...`` commits on success."""

    engine: Engine
    sessions: sessionmaker[Session]

    @property
    def url(self) -> str:
        """The URL with any password hidden (safe to log)."""
        return self.engine.url.render_as_string(hide_password=True)

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions.begin() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()


def open_app_db(config: SophiaConfig | None = None, *, connect_timeout: int = CONNECT_TIMEOUT_S) -> AppDb:
    """Open the app database named by the config, creating or upgrading its schema first when needed."""
    config = config or load_config()
    engine = make_engine(_configured_url(config), connect_timeout=connect_timeout)
    try:
        _upgrade_if_behind(engine)
    except BaseException:
        engine.dispose()
        raise
    return AppDb(engine=engine, sessions=sessionmaker(engine, expire_on_commit=False))


def upgrade(url: str | URL, *, password: str | None = None, connect_timeout: int = CONNECT_TIMEOUT_S) -> str:
    """Upgrade the schema at ``url`` to the newest migration (no-op when current); returns the revision."""
    url = make_url(url)
    if password is not None:
        url = url.set(password=password)
    engine = make_engine(url, connect_timeout=connect_timeout)
    try:
        _upgrade_if_behind(engine)
        return head_revision()
    finally:
        engine.dispose()


@dataclass(frozen=True)
class SchemaState:
    """Where a database stands against the migrations shipped with this version of Sophia."""

    current: str | None
    head: str

    @property
    def at_head(self) -> bool:
        return self.current == self.head


def schema_state(config: SophiaConfig, *, connect_timeout: int = CONNECT_TIMEOUT_S) -> SchemaState:
    """Connect (without creating or changing anything) and report the schema revision."""
    url = _configured_url(config)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        return SchemaState(current=None, head=head_revision())
    engine = make_engine(url, connect_timeout=connect_timeout, create_folder=False)
    try:
        with _connect(engine) as conn:
            return SchemaState(current=MigrationContext.configure(conn).get_current_revision(),
                               head=head_revision())
    finally:
        engine.dispose()


def _configured_url(config: SophiaConfig) -> URL:
    from sophia_lib.secrets import resolve

    url = make_url(config.app_db.url or f"sqlite:///{config.var_dir / 'app.db'}")
    if config.app_db.password is not None:
        url = url.set(password=resolve(config.app_db.password, config))
    return url


def make_engine(url: str | URL, *, connect_timeout: int = CONNECT_TIMEOUT_S, create_folder: bool = True) -> Engine:
    """An engine with Sophia's settings: WAL, busy timeout and foreign keys on SQLite; a connect
    timeout on PostgreSQL so an unreachable server fails in seconds instead of hanging."""
    url = make_url(url)
    backend = url.get_backend_name()
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if backend == "sqlite":
        if url.database and url.database != ":memory:":
            folder = Path(url.database).parent
            if create_folder:
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise AppDbError(f"cannot create the app database folder {folder}: {exc.strerror}.",
                                     fix=f"make {folder} writable, or {CONFIG_FIX}") from None
    elif backend == "postgresql":
        kwargs["connect_args"] = {"connect_timeout": connect_timeout}
    else:
        raise ConfigError(f"unsupported app database URL scheme {url.drivername!r}; valid: sqlite, postgresql.",
                          fix=CONFIG_FIX)
    try:
        engine = create_engine(url, **kwargs)
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        raise MissingDependencyError("psycopg", f"the app database URL {url.drivername}://…", "postgres") from exc
    except ArgumentError as exc:
        raise ConfigError(f"bad app database URL: {exc}.", fix=CONFIG_FIX) from None
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Hand transaction control to SQLAlchemy (pysqlite's own is broken for DDL and SAVEPOINT):
    # migrations become atomic and "begin" below starts every transaction explicitly.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")  # readers never block the writer, nor it them
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN")


@contextlib.contextmanager
def _connect(engine: Engine) -> Iterator[Connection]:
    """engine.connect(), turning connection failures into messages that name the server and the fix."""
    try:
        conn = engine.connect()
    except DBAPIError as exc:
        raise _explain_connect_error(engine.url, exc) from None
    with conn:
        yield conn


def _explain_connect_error(url: URL, exc: DBAPIError) -> SophiaError:
    detail = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
    if url.get_backend_name() == "sqlite":
        return AppDbError(f"cannot open the SQLite app database {url.database}: {detail}.",
                          fix=f"check that the file and its folder are readable and writable, or {CONFIG_FIX}")
    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    database = url.database or "(default)"
    lowered = detail.lower()
    if "does not exist" in lowered and "database" in lowered:
        return AppDbError(f"the PostgreSQL server at {where} has no database {database!r} for the app database.",
                          fix=f"create it (createdb -h {url.host or 'localhost'} -p {url.port or 5432} {database}) "
                          f"or {CONFIG_FIX}")
    if "password" in lowered or "authentication" in lowered:
        return AppDbError(f"the PostgreSQL server at {where} refused user {url.username!r}: {detail}.",
                          fix="set app_db.password: {secret: NAME} in sophia.yaml and export SOPHIA_SECRET_NAME, "
                          "or check the user name in app_db.url")
    return AppDbUnreachableError(
        f"cannot reach the app database's PostgreSQL server at {where} (database {database!r}): {detail}.",
        fix=f"start PostgreSQL on {where} (or open the firewall to it), or {CONFIG_FIX}",
    )


def alembic_config(connection: Connection | None = None) -> AlembicConfig:
    """Alembic's configuration built in code: the migrations ship inside the package, no alembic.ini."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise AppDbError(f"no migration found in {MIGRATIONS / 'versions'}.", fix="reinstall sophia")
    return head


def _current_revision(conn: Connection) -> str | None:
    revision = MigrationContext.configure(conn).get_current_revision()
    conn.rollback()
    return revision


def _upgrade_if_behind(engine: Engine) -> None:
    with _connect(engine) as conn:
        if _current_revision(conn) == head_revision():
            return
        with _migration_lock(engine, conn):
            if _current_revision(conn) != head_revision():  # another process may have just done it
                command.upgrade(alembic_config(conn), "head")
                conn.commit()


@contextlib.contextmanager
def _migration_lock(engine: Engine, conn: Connection) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": PG_MIGRATION_LOCK_KEY})
        conn.commit()
        try:
            yield
        finally:
            conn.rollback()
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": PG_MIGRATION_LOCK_KEY})
            conn.commit()
        return
    database = engine.url.database
    if not database or database == ":memory:":
        yield
        return
    lock = FileLock(f"{database}.migrate.lock")
    try:
        lock.acquire(timeout=MIGRATION_LOCK_TIMEOUT_S)
    except Timeout:
        raise AppDbError(f"waited {MIGRATION_LOCK_TIMEOUT_S} s for another process to finish migrating {database}.",
                         fix=f"stop the stuck process holding {lock.lock_file}, then retry") from None
    try:
        yield
    finally:
        lock.release()
