"""Source health from recorded runs, and the `sophia sync` / `sophia sources status` commands."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import typer
from typer.testing import CliRunner

from sophia_lib.cli import sources_cmd, sync_cmd
from sophia_lib.config import SophiaConfig
from sophia_lib.sandbox.simulator.server import SandboxServer
from sophia_lib.sync import SourceRunResult, StreamResult, run_sync, source_health

TConfig = Callable[..., SophiaConfig]


def test_health_lag_failures_rows_and_last_error(toy_server: SandboxServer, make_config: TConfig) -> None:
    config = make_config(toy_server)
    run_sync(config, progress=False)
    toy_server.faults.add("toy2", "server_error", "/v1/things", count=None, message="down for repairs")
    run_sync(config, progress=False)
    run_sync(config, sources=["toy2"], progress=False)
    later = datetime.now(UTC) + timedelta(hours=30)
    health = {h.source: h for h in source_health(config, now=later)}

    ok = health["toy"]
    assert ok.consecutive_failures == 0 and ok.last_error is None
    assert ok.state == "stale" and ok.lag is not None and ok.lag > timedelta(hours=29)
    assert (ok.rows_inserted, ok.rows_updated, ok.rows_deleted) == (0, 0, 0)  # the last run found no changes

    bad = health["toy2"]
    assert bad.state == "failing" and bad.consecutive_failures == 2 and bad.last_run_status == "failed"
    assert "Toy says: down for repairs" in bad.last_error and bad.last_error_reason == "source_unavailable"
    assert bad.last_success_at is not None and bad.rows_last_run == 56 + 25  # the first, full sync

    fresh = {h.source: h for h in source_health(config)}
    assert fresh["toy"].state == "ok"
    config.sources["toy"].enabled = False  # type: ignore[index]
    assert {h.source: h.state for h in source_health(config)}["toy"] == "disabled"


def test_health_of_a_configured_source_never_synced(toy_server: SandboxServer, make_config: TConfig) -> None:
    [never, _] = source_health(make_config(toy_server))
    assert (never.source, never.state, never.last_success_at, never.lag) == ("toy", "never", None, None)


# --- CLI (the library call patched, as in papermill's CLI tests) ------------------------------------------


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command("sync")(sync_cmd.sync)
    app.add_typer(sources_cmd.app, name="sources")
    return app


def result(source: str, status: str, **kw: object) -> SourceRunResult:
    now = datetime.now(UTC)
    return SourceRunResult(source, status, started_at=now, finished_at=now + timedelta(seconds=2), **kw)  # type: ignore[arg-type]


def test_sync_command_passes_options_prints_summary_and_exits_1_on_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, object]] = []

    def fake(config: object, sources: list[str] | None = None, full_refresh: bool = False,
             progress: bool = True) -> list[SourceRunResult]:
        calls.append({"sources": sources, "full_refresh": full_refresh, "progress": progress})
        return [result("hubspot", "succeeded", streams={"contacts": StreamResult("contacts", rows_inserted=5,
                                                                                   pages=2, quarantined=1)}),
                result("slack", "failed", error="invalid_auth", fix="re-authorize slack")]

    monkeypatch.setattr(sync_cmd, "run_sync", fake)
    out = CliRunner().invoke(cli(), ["sync", "--source", "hubspot", "-s", "slack", "--full-refresh", "--no-progress"])
    assert out.exit_code == 1
    assert calls == [{"sources": ["hubspot", "slack"], "full_refresh": True, "progress": False}]
    assert "hubspot: succeeded (2.0s) +5 ~0 -0 rows, 2 pages, 0 retries, 1 quarantined" in out.output
    assert "slack: failed (2.0s) — invalid_auth" in out.output and "fix: re-authorize slack" in out.output

    monkeypatch.setattr(sync_cmd, "run_sync", lambda *a, **k: [result("hubspot", "succeeded")])
    out = CliRunner().invoke(cli(), ["sync", "--json"])
    assert out.exit_code == 0 and json.loads(out.output)[0]["status"] == "succeeded"


def test_sources_status_table_and_json(toy_server: SandboxServer, make_config: TConfig,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    config = make_config(toy_server)
    run_sync(config, sources=["toy"], progress=False)
    monkeypatch.setattr(sources_cmd, "load_config", lambda: config)
    out = CliRunner().invoke(cli(), ["sources", "status"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].split() == ["SOURCE", "STATE", "LAST", "SUCCESS", "(UTC)", "LAG", "FAILURES", "ROWS", "LAST",
                                "ERROR"]
    assert lines[1].split()[:2] == ["toy", "ok"] and lines[1].split()[-1] == "81"
    assert lines[2].split()[:3] == ["toy2", "never", "never"]
    body = json.loads(CliRunner().invoke(cli(), ["sources", "status", "--json"]).output)
    assert [(h["source"], h["state"], h["rows_inserted"]) for h in body] == [("toy", "ok", 81), ("toy2", "never", 0)]
