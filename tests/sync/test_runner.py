"""run_sync against the toy vendors over real HTTP: run records, stats, failures, locks, quarantine, drift."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta

import pytest
from filelock import FileLock

from sophia_lib.appdb.models import QuarantineSummary, SchemaEvent, SyncRun, SyncStreamStat
from sophia_lib.config import SophiaConfig
from sophia_lib.sandbox.simulator.server import SandboxServer
from sophia_lib.sync import UnknownSourceError, run_sync, runner
from sophia_lib.sync.configuration import SyncSettings
from tests.sync import toy
from tests.sync.helpers import app_rows, raw_keys, raw_rows

TConfig = Callable[..., SophiaConfig]
LIVE_THINGS = toy.THINGS - len([i for i in range(toy.THINGS) if i % 13 == 12])


def vendor(server: SandboxServer, name: str = "toy") -> toy.ToyVendor:
    return server.sandbox.vendors[name]  # type: ignore[return-value]


def later(i: int, version: int = 1, **changes: object) -> dict[str, object]:
    return {**toy.thing(i, version), **changes}


def test_sync_records_runs_stats_and_exact_row_counts(toy_server: SandboxServer, make_config: TConfig) -> None:
    config = make_config(toy_server)
    first = {r.source: r for r in run_sync(config, progress=False)}
    assert {name: r.status for name, r in first.items()} == {"toy": "succeeded", "toy2": "succeeded"}
    things = first["toy"].streams["things"]
    assert (things.rows_inserted, things.rows_updated, things.rows_deleted) == (LIVE_THINGS, 0, 0)
    assert things.pages == toy.THINGS // toy.PAGE
    assert raw_keys(config, "toy", "things") == sorted(vendor(toy_server).live("things"))
    assert raw_keys(config, "toy", "widgets") == sorted(vendor(toy_server).live("widgets"))

    # the vendor changes: 3 updates, 2 deletes, 1 create
    vendor(toy_server).change("things", [later(1), later(2), later(3), later(4, deleted=True),
                                         later(5, deleted=True), {**toy.thing(100, 1)}])
    second = {r.source: r for r in run_sync(config, sources=["toy"], progress=False)}
    things = second["toy"].streams["things"]
    assert (things.rows_inserted, things.rows_updated, things.rows_deleted) == (1, 3, 2)
    assert raw_keys(config, "toy", "things") == sorted(vendor(toy_server).live("things"))
    assert {r["id"]: r["label"] for r in raw_rows(config, "toy", "things")}["t001"] == "thing 1 v1"

    runs = app_rows(config, SyncRun)
    assert sorted((r.source, r.status) for r in runs) == [("toy", "succeeded"), ("toy", "succeeded"),
                                                          ("toy2", "succeeded")]
    stats = {(s.run_id, s.stream): s for s in app_rows(config, SyncStreamStat)}
    last = stats[(second["toy"].run_id, "things")]
    assert (last.status, last.rows_inserted, last.rows_updated, last.rows_deleted) == ("succeeded", 1, 3, 2)
    assert last.pages == 1 and last.duration_s is not None
    assert stats[(first["toy2"].run_id, "widgets")].rows_inserted == toy.WIDGETS

    # the vendor rotated the refresh token on every run; the store holds the live one
    from sophia_lib.secrets import open_store

    assert open_store(config).get("TOY_RT") not in ("", toy.REFRESH_TOKEN)


def test_failing_source_is_recorded_with_the_vendors_words_while_the_other_succeeds(
        toy_server: SandboxServer, make_config: TConfig) -> None:
    config = make_config(toy_server)
    toy_server.faults.add("toy2", "server_error", "/v1/widgets", count=None, message="maintenance window")
    toy_server.faults.add("toy", "server_error", "/v1/things", count=2)  # a burst: retried, then fine
    results = {r.source: r for r in run_sync(config, progress=False)}
    assert results["toy"].status == "succeeded"
    assert results["toy"].retries == 2 and results["toy"].streams["things"].retries == 2
    failed = results["toy2"]
    assert failed.status == "failed" and failed.error_reason == "source_unavailable"
    assert "Toy says: maintenance window" in failed.error
    run = app_rows(config, SyncRun, source="toy2")[0]
    assert (run.status, run.error_reason) == ("failed", "source_unavailable")
    assert "Toy says: maintenance window" in run.error
    streams = {s.stream: s for s in app_rows(config, SyncStreamStat, run_id=run.id)}
    assert streams["widgets"].status == "failed" and "maintenance window" in streams["widgets"].error
    assert streams["things"].status == "failed" and streams["things"].error.startswith("not loaded")
    assert app_rows(config, SyncStreamStat, run_id=results["toy"].run_id, stream="things")[0].retries == 2

    toy_server.faults.clear()  # the outage ends: the next sync gets everything (no cursor moved past it)
    again = run_sync(config, sources=["toy2"], progress=False)[0]
    assert again.status == "succeeded"
    assert raw_keys(config, "toy2", "widgets") == sorted(vendor(toy_server, "toy2").live("widgets"))
    assert raw_keys(config, "toy2", "things") == sorted(vendor(toy_server, "toy2").live("things"))


def test_missing_credential_names_the_yaml_key(toy_server: SandboxServer, make_config: TConfig) -> None:
    config = make_config(toy_server)
    config.sources["toy"].credentials.clear()  # type: ignore[index]
    result = {r.source: r for r in run_sync(config, progress=False)}["toy"]
    assert result.status == "failed" and result.error_reason == "source_config"
    assert "sources.toy.credentials.refresh_token" in result.error
    assert "sophia credentials set" in result.fix


def test_unknown_source_lists_the_valid_ones(toy_server: SandboxServer, make_config: TConfig) -> None:
    config = make_config(toy_server)
    with pytest.raises(UnknownSourceError, match=r"unknown source 'nope'; valid: toy, toy2"):
        run_sync(config, sources=["nope"], progress=False)


def test_a_source_syncs_once_at_a_time(toy_server: SandboxServer, make_config: TConfig,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    config = make_config(toy_server)
    settings = SyncSettings.from_config(config)
    monkeypatch.setattr(SyncSettings, "from_config",
                        classmethod(lambda cls, c: dataclasses.replace(settings, lock_wait_s=0.2)))
    settings.locks_dir.mkdir(parents=True)
    (settings.locks_dir / "toy.lock.info").write_text('{"pid": 4242, "host": "elsewhere", "since": "2026-01-01"}')
    with FileLock(settings.locks_dir / "toy.lock"):  # another process's sync of toy
        results = {r.source: r for r in run_sync(config, progress=False)}
    assert results["toy"].status == "skipped"
    assert "already running (pid 4242 on elsewhere" in results["toy"].error
    assert results["toy2"].status == "succeeded"
    assert [r.source for r in app_rows(config, SyncRun)] == ["toy2"]
    assert run_sync(config, sources=["toy"], progress=False)[0].status == "succeeded"  # released


def test_quarantined_rows_are_written_and_summarized(toy_server: SandboxServer, make_config: TConfig) -> None:
    config = make_config(toy_server, names=("toy",))
    toy_server.faults.add("toy", "schema_drift", "/v1/things", change="removed_field", field="updated_at")
    result = run_sync(config, progress=False)[0]
    assert result.status == "succeeded" and result.streams["things"].quarantined == toy.PAGE
    rows = raw_rows(config, "toy", "_sophia_quarantine")
    assert len(rows) == toy.PAGE
    assert {(r["stream"], r["reason"], r["run_id"]) for r in rows} == {
        ("things", "required field(s) ['updated_at'] missing", result.run_id)}
    assert '"id": "t000"' in rows[0]["record"] and rows[0]["quarantined_at"] is not None
    [summary] = app_rows(config, QuarantineSummary)
    assert (summary.run_id, summary.stream, summary.records) == (result.run_id, "things", toy.PAGE)
    assert summary.location.startswith("raw_toy._sophia_quarantine")
    assert summary.sample_keys[0] == '["t000"]'
    quarantined = {f"t{i:03d}" for i in range(toy.PAGE)}
    assert set(raw_keys(config, "toy", "things")) == set(vendor(toy_server).live("things")) - quarantined


def test_schema_drift_is_recorded_as_schema_events(toy_server: SandboxServer, make_config: TConfig) -> None:
    config = make_config(toy_server, names=("toy",))
    assert run_sync(config, progress=False)[0].schema_changes == []  # a first sync is not drift
    v = vendor(toy_server)
    v.change("things", [later(1, colour="red"), later(2, colour="blue")])  # a new field
    v.change("widgets", [{"id": "w001", "size": "large", "updated_at": (toy.T0 + timedelta(days=2)).isoformat()}])
    result = run_sync(config, progress=False)[0]
    changes = {(c.stream, c.column, c.change, c.old_type, c.new_type) for c in result.schema_changes}
    assert ("things", "colour", "added", None, "text") in changes
    assert ("widgets", "size", "retyped", "bigint", "text") in changes
    assert len(changes) == 2, changes

    day3 = (toy.T0 + timedelta(days=3)).isoformat()
    v.change("widgets", [{"id": "w001", "updated_at": day3}, {"id": "w002", "updated_at": day3}])  # no size
    result = run_sync(config, progress=False)[0]
    assert [(c.stream, c.column, c.change) for c in result.schema_changes] == [("widgets", "size", "removed")]
    events = app_rows(config, SchemaEvent, source="toy")
    assert [(e.stream, e.column_name, e.change) for e in events] == [
        ("things", "colour", "added"), ("widgets", "size", "retyped"), ("widgets", "size", "removed")]

    day4 = (toy.T0 + timedelta(days=4)).isoformat()
    v.change("widgets", [{"id": "w001", "updated_at": day4}, {"id": "w003", "updated_at": day4}])
    assert run_sync(config, progress=False)[0].schema_changes == []  # still gone: reported once


def test_full_refresh_rereads_everything(toy_server: SandboxServer, make_config: TConfig) -> None:
    config = make_config(toy_server, names=("toy",))
    run_sync(config, progress=False)
    result = run_sync(config, full_refresh=True, progress=False)[0]
    things = result.streams["things"]
    assert things.pages == toy.THINGS // toy.PAGE
    assert (things.rows_inserted, things.rows_updated, things.rows_deleted) == (0, LIVE_THINGS, 0)
    assert raw_keys(config, "toy", "things") == sorted(vendor(toy_server).live("things"))


def test_raw_writes_wait_for_the_warehouse_writer(toy_server: SandboxServer, make_config: TConfig,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """While a publish holds the writer lock the sync cannot load: it says so instead of corrupting anything."""
    from sophia_lib.warehouse import open_warehouse

    config = make_config(toy_server, names=("toy",))
    settings = SyncSettings.from_config(config)
    monkeypatch.setattr(SyncSettings, "from_config",
                        classmethod(lambda cls, c: dataclasses.replace(settings, writer_wait_s=0.3)))
    wh = open_warehouse(config)
    with wh.raw_writer():
        result = run_sync(config, progress=False)[0]
    wh.close()
    assert result.status == "failed" and result.error_reason == "writer_busy"
    assert run_sync(config, progress=False)[0].status == "succeeded"
    assert raw_keys(config, "toy", "things") == sorted(vendor(toy_server).live("things"))


def test_progress_bars_render_records_and_pages(toy_server: SandboxServer, make_config: TConfig,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from rich.console import Console

    from sophia_lib.sync.progress import SyncProgress

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    monkeypatch.setattr(runner, "SyncProgress", lambda enabled: SyncProgress(enabled, console=console))
    run_sync(make_config(toy_server, names=("toy",)), progress=True)
    text = out.getvalue()
    assert "toy" in text and f"{toy.THINGS + toy.WIDGETS} records" in text and "9 pages" in text
    assert SyncProgress(True).enabled is False  # pytest's stderr is not a terminal: no bars


def test_a_refused_load_does_not_skip_its_window(toy_server: SandboxServer, make_config: TConfig) -> None:
    """The raw table was changed behind dlt's back: the load fails for good. Once repaired, the next
    run reads the same changes again (the cursor was not left past data that never loaded)."""
    import duckdb

    from sophia_lib.warehouse import open_warehouse

    config = make_config(toy_server, names=("toy",))
    run_sync(config, progress=False)
    vendor(toy_server).change("things", [later(7), later(8, deleted=True)])
    wh = open_warehouse(config)
    raw = str(wh.raw_path)  # type: ignore[attr-defined]
    with duckdb.connect(raw) as con:
        con.execute("ALTER TABLE raw_toy.things DROP COLUMN label")
    failed = run_sync(config, progress=False)[0]
    assert failed.status == "failed" and "label" in failed.error
    with duckdb.connect(raw) as con:
        con.execute("ALTER TABLE raw_toy.things ADD COLUMN label VARCHAR")
    repaired = run_sync(config, progress=False)[0]
    assert repaired.status == "succeeded", repaired.error
    assert repaired.recovered_loads == 1  # dlt kept the refused package; the next run finished it first
    assert raw_keys(config, "toy", "things") == sorted(vendor(toy_server).live("things"))
    assert {r["id"]: r["label"] for r in raw_rows(config, "toy", "things")}["t007"] == "thing 7 v1"


def test_frozen_schema_fails_on_drift_and_loses_nothing(toy_server: SandboxServer, make_config: TConfig) -> None:
    config = make_config(toy_server, names=("toy",))
    config.sources["toy"].schema_changes = "freeze"
    assert run_sync(config, progress=False)[0].status == "succeeded"  # new tables are fine when frozen
    v = vendor(toy_server)
    v.change("things", [later(1, colour="red")])  # a new field
    frozen = run_sync(config, progress=False)[0]
    assert frozen.status == "failed"
    assert "colour" in (frozen.error or "")
    config.sources["toy"].schema_changes = "evolve"  # someone looked, and accepts the new field
    evolved = run_sync(config, progress=False)[0]
    assert evolved.status == "succeeded"
    assert ("things", "colour", "added") in {(c.stream, c.column, c.change) for c in evolved.schema_changes}


def test_dlt_telemetry_is_off_in_a_fresh_process(tmp_path) -> None:
    """dlt would post anonymous usage events to its vendor; a sync must not (nothing leaves the machine)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNTIME__")}
    for first in ("import sophia_lib; import dlt", "import dlt; import sophia_lib"):  # either import order
        code = (
            f"{first}\n"
            "from sophia_lib.sync.runner import _configure_dlt, _no_telemetry; _configure_dlt()\n"
            f"p = dlt.pipeline('telemetry_probe', destination='duckdb', pipelines_dir={str(tmp_path)!r})\n"
            "_no_telemetry()\n"
            "p.run([{'a': 1}], table_name='t')\n"
            "from dlt.common.runtime import anon_tracker\n"
            "print('endpoint', anon_tracker._ANON_TRACKER_ENDPOINT)\n"
        )
        out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        assert "endpoint None" in out.stdout, first
