"""The warehouse contract on every engine: write raw, publish, read, roll back, prune, bad input."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from sophia_lib.config import load_config
from sophia_lib.errors import ConfigError, SnapshotError, WarehouseError, WriterBusyError
from sophia_lib.warehouse import (
    SnapshotBuilder,
    Warehouse,
    build_all,
    connect,
    open_warehouse,
    register_builder,
    registered_builders,
    result_snapshot,
    unregister_builder,
)
from tests.support.servers import free_port


@pytest.fixture(params=["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path / 'warehouse'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def wh(url: str) -> Iterator[Warehouse]:
    warehouse = connect(url, keep_snapshots=3, prune_grace_s=0)
    yield warehouse
    warehouse.close()


def _raw(wh: Warehouse) -> None:
    contacts = pa.table({
        "id": pa.array([1, 2, 3], pa.int64()),
        "email": ["A@x.com", "", None],
        "score": [1.5, None, 3.0],
        "active": [True, False, None],
        "updated": pa.array([datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), None,
                             datetime(2025, 2, 1, tzinfo=UTC)], pa.timestamp("us", tz="UTC")),
    })
    with wh.raw_writer() as w:
        assert w.write_table("raw_hubspot", "contacts", contacts) == 3
        w.write_table("raw_stripe", "invoices", pd.DataFrame({"id": [10, 11], "amount": [5.0, 7.0]}))
        w.write_table("raw_stripe", "invoices", pd.DataFrame({"id": [12], "amount": [8.0]}), mode="append")


def _build(b: SnapshotBuilder) -> None:
    b.execute("CREATE TABLE core.contacts AS SELECT id, lower(email) AS email FROM raw_hubspot.contacts")
    total = b.query("SELECT sum(amount) AS total FROM raw_stripe.invoices").column("total")[0].as_py()
    b.write_table("marts", "revenue", pa.table({"total": [total], "snapshot_id": [b.snapshot_id]}))


def test_publish_then_read_one_snapshot(wh: Warehouse) -> None:
    _raw(wh)
    as_of = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    info = wh.publish(_build, as_of=as_of)
    assert info.as_of == as_of and info.current
    with wh.reader() as r:
        assert r.snapshot.id == info.id and r.snapshot.as_of == as_of
        revenue = r.query("SELECT total, snapshot_id FROM marts.revenue")
        assert revenue.to_pylist() == [{"total": 20.0, "snapshot_id": info.id}]
        assert result_snapshot(revenue) == (info.id, as_of.isoformat())
        emails = r.query("SELECT email FROM core.contacts ORDER BY id").column("email").to_pylist()
        assert emails == ["a@x.com", "", None]  # '' and NULL stay distinct
        raw = r.query("SELECT * FROM raw_hubspot.contacts WHERE id = :id", {"id": 1}).to_pylist()
        assert raw[0]["updated"] == datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
        assert raw[0]["active"] is True and raw[0]["score"] == 1.5
    assert wh.current().id == info.id
    status = wh.status()
    assert status.raw == {"raw_hubspot": {"contacts": 3}, "raw_stripe": {"invoices": 3}}
    assert status.current.id == info.id and status.problem is None


def test_reader_before_any_publish_says_what_to_run(wh: Warehouse) -> None:
    with pytest.raises(SnapshotError, match="no snapshot published yet") as err, wh.reader():
        pass
    assert "sophia warehouse publish" in str(err.value) and "sophia demo" in str(err.value)
    assert wh.snapshots() == [] and wh.current() is None


def test_failed_build_leaves_the_current_snapshot_serving(wh: Warehouse) -> None:
    _raw(wh)
    good = wh.publish(_build)

    def broken(b: SnapshotBuilder) -> None:
        b.write_table("marts", "revenue", pa.table({"total": [-1.0], "snapshot_id": ["bad"]}))
        raise RuntimeError("transform bug")

    with pytest.raises(RuntimeError, match="transform bug"):
        wh.publish(broken)
    with pytest.raises(WarehouseError, match="SQL failed"):
        wh.publish(lambda b: b.execute("SELECT * FROM no_such_schema.nothing"))
    assert [s.id for s in wh.snapshots()] == [good.id]
    with wh.reader() as r:
        assert r.snapshot.id == good.id
        assert r.query("SELECT total FROM marts.revenue").column("total").to_pylist() == [20.0]


def test_rollback_to_previous_and_to_id(wh: Warehouse) -> None:
    ids = [wh.publish(lambda b, k=k: b.write_table("marts", "k", pa.table({"k": [k]}))).id for k in range(3)]
    assert wh.rollback().id == ids[1]
    with wh.reader() as r:
        assert r.query("SELECT k FROM marts.k").column("k").to_pylist() == [1]
    assert wh.rollback(to=ids[0]).id == ids[0]
    with wh.reader() as r:
        assert r.snapshot.id == ids[0] and r.query("SELECT k FROM marts.k").column("k").to_pylist() == [0]
    with pytest.raises(SnapshotError, match="nothing older"):
        wh.rollback()
    with pytest.raises(SnapshotError, match="not kept"):
        wh.rollback(to="19990101_000000_000000")
    assert wh.rollback(to=ids[2]).id == ids[2]
    assert [s.id for s in wh.snapshots() if s.current] == [ids[2]]


def test_publish_prunes_to_keep_snapshots(wh: Warehouse) -> None:
    ids = [wh.publish(lambda b, k=k: b.write_table("marts", "k", pa.table({"k": [k]}))).id for k in range(5)]
    assert [s.id for s in wh.snapshots()] == ids[-3:]
    wh.rollback(to=ids[2])  # the oldest kept one still restores
    with wh.reader() as r:
        assert r.query("SELECT k FROM marts.k").column("k").to_pylist() == [2]
    newer = [wh.publish().id for _ in range(2)]
    assert [s.id for s in wh.snapshots()] == [ids[4], *newer]
    assert wh.current().id == newer[-1]


def test_one_writer_at_a_time(wh: Warehouse) -> None:
    with wh.raw_writer() as w:
        w.write_table("raw_x", "t", pa.table({"a": [1]}))
        with pytest.raises(WriterBusyError, match="another process is writing"):
            connect(wh.url, keep_snapshots=3).publish(timeout=0.2)
    assert wh.publish().current  # lock released on exit


def test_bad_names_are_refused(wh: Warehouse) -> None:
    with wh.raw_writer() as w, pytest.raises(WarehouseError, match="raw_<vendor>"):
        w.write_table("core", "t", pa.table({"a": [1]}))
    with pytest.raises(WarehouseError, match="writes only core, marts"):
        wh.publish(lambda b: b.write_table("raw_x", "t", pa.table({"a": [1]})))
    with wh.raw_writer() as w, pytest.raises(WarehouseError, match="invalid table name"):
        w.write_table("raw_x", 'x"; drop', pa.table({"a": [1]}))


def test_registered_builders_run_in_registration_order(tmp_path: Path) -> None:
    register_builder("t_one", lambda b: b.write_table("marts", "one", pa.table({"n": [1]})))
    register_builder("t_two", lambda b: b.execute("CREATE TABLE marts.two AS SELECT n + 1 AS n "
                                                  "FROM marts.one"))
    try:
        with pytest.raises(WarehouseError, match="already registered"):
            register_builder("t_one", lambda b: None)
        names = list(registered_builders())
        assert names.index("t_one") < names.index("t_two")
        wh = connect(f"duckdb:///{tmp_path / 'wh'}")
        wh.publish(build_all)
        with wh.reader() as r:
            assert r.query("SELECT n FROM marts.two").column("n").to_pylist() == [2]
    finally:
        unregister_builder("t_one")
        unregister_builder("t_two")


def test_unknown_scheme_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="valid schemes: duckdb, postgresql"):
        connect("mysql://u@h/db")


def test_open_warehouse_from_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SOPHIA_VAR_DIR", str(tmp_path / "v"))
    wh = open_warehouse(load_config())
    assert wh.name == "duckdb" and wh.location == str(tmp_path / "v" / "warehouse")
    assert wh.publish().current


# ---- DuckDB files: the pointer and the folder --------------------------------------------------


def test_duckdb_corrupted_or_dangling_pointer_says_rollback(tmp_path: Path) -> None:
    wh = connect(f"duckdb:///{tmp_path / 'wh'}", keep_snapshots=3)
    first = wh.publish()
    second = wh.publish()
    pointer = tmp_path / "wh" / "CURRENT"
    pointer.write_text("{not json")
    with pytest.raises(SnapshotError, match="corrupted") as err, wh.reader():
        pass
    assert "sophia warehouse rollback" in str(err.value)
    assert wh.status().problem is not None
    pointer.write_text(json.dumps({"id": "gone", "file": "gone.duckdb"}))
    with pytest.raises(SnapshotError, match="does not exist") as err, wh.reader():
        pass
    assert "sophia warehouse rollback" in str(err.value)
    assert [s.id for s in wh.snapshots()] == [first.id, second.id]  # untouched
    assert wh.rollback().id == second.id  # repairs to the newest good snapshot
    with wh.reader() as r:
        assert r.snapshot.id == second.id
    pointer.unlink()
    with pytest.raises(SnapshotError, match="pointer .* is missing"), wh.reader():
        pass


def test_duckdb_unwritable_folder_names_the_fix(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    wh = connect(f"duckdb:///{blocker / 'warehouse'}")
    with pytest.raises(WarehouseError, match="not writable") as err:
        wh.publish()
    assert "SOPHIA_VAR_DIR" in str(err.value)
    if os.geteuid() != 0:  # root ignores permission bits
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            with pytest.raises(WarehouseError, match="not writable"):
                connect(f"duckdb:///{ro / 'warehouse'}").publish()
        finally:
            ro.chmod(0o700)


def test_duckdb_readers_need_no_write_access(tmp_path: Path) -> None:
    wh = connect(f"duckdb:///{tmp_path / 'wh'}")
    wh.publish(lambda b: b.write_table("marts", "a", pa.table({"a": [1]})))
    with wh.reader() as r:
        with pytest.raises(WarehouseError, match="read-only|read only"):
            r.query("CREATE TABLE marts.b AS SELECT 1")
        assert r.query("SELECT a FROM marts.a").num_rows == 1


# ---- PostgreSQL --------------------------------------------------------------------------------


def test_postgres_unreachable_names_host_port_and_fix() -> None:
    port = free_port()  # nothing listens there
    wh = connect(f"postgresql+psycopg://sophia@127.0.0.1:{port}/nowhere")
    with pytest.raises(WarehouseError, match=f"cannot connect .* 127.0.0.1:{port}") as err, wh.reader():
        pass
    assert "SOPHIA_WAREHOUSE__URL" in str(err.value)


@pytest.mark.postgres
def test_postgres_readers_are_read_only(postgres_url: str) -> None:
    wh = connect(postgres_url)
    wh.publish(lambda b: b.write_table("marts", "a", pa.table({"a": [1]})))
    with wh.reader() as r:
        with pytest.raises(WarehouseError, match="read-only"):
            r.query("CREATE TABLE marts.b AS SELECT 1")
        assert r.query("SELECT a FROM marts.a").num_rows == 1  # the reader survives a failed statement


def test_string_column_with_an_empty_first_chunk_round_trips(wh: Warehouse) -> None:
    """pandas string columns concatenated with an empty frame arrive as chunked large_string; on PostgreSQL the
    CSV COPY once got NUL bytes for them."""
    names = pa.chunked_array([pa.array([], pa.large_string()), pa.array(["a", None], pa.large_string())])
    wh.publish(lambda b: b.write_table("marts", "names", pa.table({"name": names})))
    with wh.reader() as r:
        assert r.query("SELECT name FROM marts.names").column("name").to_pylist() == ["a", None]
