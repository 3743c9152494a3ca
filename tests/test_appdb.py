"""The application database on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, delete, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError, StatementError

from sophia_lib.appdb import AppDb, AppDbError, AppDbUnreachableError, head_revision, open_app_db, upgrade
from sophia_lib.appdb.models import (
    Alert,
    AuditEntry,
    Base,
    Delivery,
    JobRun,
    PublishedDashboard,
    QuarantineSummary,
    SchemaEvent,
    SyncRun,
    SyncStreamStat,
)
from sophia_lib.config import load_config
from tests.support.servers import free_port

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def app_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'app.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def app_db(app_db_url: str, tmp_path: Path) -> Iterator[AppDb]:
    config_file = tmp_path / "sophia.yaml"
    config_file.write_text(f"app_db:\n  url: '{app_db_url}'\n")
    db = open_app_db(load_config(config_file))
    yield db
    db.close()


def test_models_match_migrations(app_db_url: str) -> None:
    assert upgrade(app_db_url) == head_revision()
    engine = create_engine(app_db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert diff == [], f"models and migrations differ; add a migration for: {diff}"


def test_crud_on_every_table(app_db: AppDb) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    with app_db.session() as s:
        run = SyncRun(source="hubspot", status="running", started_at=now)
        s.add(run)
        s.flush()
        s.add(SyncStreamStat(run_id=run.id, stream="contacts", rows_inserted=10, pages=2, duration_s=1.5))
        s.add(QuarantineSummary(run_id=run.id, source="hubspot", stream="contacts", reason="bad_email",
                                records=3, sample_keys=["c1", "c2"]))
        s.add(SchemaEvent(source="hubspot", stream="contacts", column_name="phone", change="added",
                          new_type="text"))
        job = JobRun(job="weekly_report", scheduled_for=now, parameters={"week": "2026-W47", "n": 3})
        alert = Alert(rule="pipeline_drop", key="EMEA", payload={"drop_pct": 41.5})
        s.add_all([job, alert])
        s.flush()
        s.add(Delivery(kind="alert", alert_id=alert.id, channel="slack", recipient="#exec"))
        s.add(Delivery(kind="report", job_run_id=job.id, channel="email", recipient="ceo@example.com"))
        s.add(PublishedDashboard(slug="pipeline", title="Pipeline", author="ana",
                                 audience_groups=["executives", "sales"], notebook_path="dash/pipeline.ipynb"))
        run_id = run.id

    with app_db.session() as s:
        run = s.get(SyncRun, run_id)
        assert run is not None and run.started_at == now and run.started_at.tzinfo is not None
        run.status, run.finished_at = "succeeded", now + timedelta(seconds=5)
        stat = s.scalars(select(SyncStreamStat).where(SyncStreamStat.run_id == run_id)).one()
        assert (stat.stream, stat.rows_inserted, stat.rows_updated, stat.status) == ("contacts", 10, 0, "queued")
        assert s.scalars(select(JobRun.parameters)).one() == {"week": "2026-W47", "n": 3}
        assert s.scalars(select(PublishedDashboard.audience_groups)).one() == ["executives", "sales"]
        assert sorted(s.scalars(select(Delivery.kind))) == ["alert", "report"]

    with app_db.session() as s:
        assert s.scalars(select(SyncRun.status)).one() == "succeeded"
        s.execute(delete(SyncRun).where(SyncRun.id == run_id))
    with app_db.session() as s:  # stream stats go with their run; quarantine summaries stay, unlinked
        assert s.scalars(select(SyncStreamStat)).all() == []
        assert s.scalars(select(QuarantineSummary.run_id)).one() is None


def test_times_come_back_as_utc_and_naive_times_are_refused(app_db: AppDb) -> None:
    local = datetime(2026, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=2)))
    with app_db.session() as s:
        s.add(JobRun(job="j", scheduled_for=local))
    with app_db.session() as s:
        stored = s.scalars(select(JobRun.scheduled_for)).one()
    assert stored == local and stored.tzinfo == UTC and stored.hour == 7
    with pytest.raises(StatementError, match="naive datetime"), app_db.session() as s:
        s.add(JobRun(job="j", scheduled_for=datetime(2026, 3, 1, 9, 30)))


def test_status_values_are_checked(app_db: AppDb) -> None:
    with pytest.raises(IntegrityError), app_db.session() as s:
        s.add(SyncRun(source="hubspot", status="exploded"))


def test_audit_log_is_append_only(app_db: AppDb) -> None:
    with app_db.session() as s:
        s.add(AuditEntry(actor="ana", role="analyst", action="read", target="core.accounts",
                         detail={"rows": 5}, prev_hash="0" * 64, hash="a" * 64))
    with pytest.raises(DBAPIError, match="append-only"), app_db.session() as s:
        s.execute(update(AuditEntry).values(actor="mallory"))
    with pytest.raises(DBAPIError, match="append-only"), app_db.session() as s:
        s.execute(delete(AuditEntry))
    with app_db.session() as s:
        assert s.scalars(select(AuditEntry.actor)).all() == ["ana"]


def test_open_twice_is_idempotent(app_db_url: str, tmp_path: Path) -> None:
    config_file = tmp_path / "sophia.yaml"
    config_file.write_text(f"app_db:\n  url: '{app_db_url}'\n")
    for _ in range(2):
        db = open_app_db(load_config(config_file))
        with db.session() as s:
            assert s.execute(text("select version_num from alembic_version")).scalars().all() == [head_revision()]
        db.close()


def test_processes_opening_at_once_all_succeed(app_db_url: str, tmp_path: Path) -> None:
    code = (
        "import sys; from sophia_lib.appdb import upgrade; print(upgrade(sys.argv[1]))"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, app_db_url], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in results]
    assert {out.strip() for out, _ in results} == {head_revision()}


def test_default_sqlite_in_var_dir_with_wal() -> None:
    db = open_app_db(load_config())
    try:
        assert (Path.cwd() / "var" / "app.db").is_file()
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        db.close()


def test_unwritable_sqlite_folder_names_the_fix(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(AppDbError, match="cannot create the app database folder") as info:
        upgrade(f"sqlite:///{blocker / 'app.db'}")
    assert "app_db.url" in str(info.value)


def test_refused_postgres_names_host_port_and_fix() -> None:
    port = free_port()
    with pytest.raises(AppDbUnreachableError) as info:
        upgrade(f"postgresql+psycopg://sophia@127.0.0.1:{port}/app")
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "start PostgreSQL" in message and "SOPHIA_APP_DB__URL" in message


def test_silent_postgres_times_out_with_clear_error() -> None:
    """A server that accepts TCP but never answers (a hung host, a black-holing proxy) must not hang us."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        with pytest.raises(AppDbUnreachableError, match=f"127.0.0.1:{port}"):
            upgrade(f"postgresql+psycopg://sophia@127.0.0.1:{port}/app", connect_timeout=2)
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


@pytest.mark.postgres
def test_missing_postgres_database_says_createdb(postgres_base_url: str) -> None:
    with pytest.raises(AppDbError, match="createdb") as info:
        upgrade(f"{postgres_base_url}/no_such_db")
    assert "no_such_db" in str(info.value)


@pytest.mark.postgres
def test_password_comes_from_the_secret_store(postgres_url: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOPHIA_SECRET_APPDB_PW", "s3cret")
    config_file = tmp_path / "sophia.yaml"
    config_file.write_text(f"app_db:\n  url: '{postgres_url}'\n  password: {{secret: APPDB_PW}}\n")
    db = open_app_db(load_config(config_file))
    try:
        assert db.engine.url.password == "s3cret"
        assert "s3cret" not in db.url
    finally:
        db.close()
