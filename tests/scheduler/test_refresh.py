"""The refresh: sync → publish → after-refresh hooks, in-process, by `sophia refresh`, and as the scheduled
job running notebooks/pipelines/refresh.ipynb against the small sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from sophia_lib.appdb import open_app_db
from sophia_lib.cli import cli
from sophia_lib.config import SophiaConfig
from sophia_lib.scheduler.errors import RefreshError
from sophia_lib.scheduler.loop import Scheduler
from sophia_lib.scheduler.refresh import RefreshResult, run_refresh
from sophia_lib.scheduler.runner import JobRunner
from sophia_lib.scheduler.schedule import Schedule, check_schedule
from sophia_lib.warehouse import open_warehouse

REFRESH_NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "pipelines" / "refresh.ipynb"


def _current_snapshot(config: SophiaConfig) -> str | None:
    wh = open_warehouse(config)
    try:
        current = wh.current()
        return current.id if current else None
    finally:
        wh.close()


def test_every_hook_runs_and_a_failing_one_fails_the_refresh(synced_sandbox, tmp_path: Path) -> None:
    config = synced_sandbox.copy_to(tmp_path / "var")
    seen: list[RefreshResult] = []

    def dashboards(config: SophiaConfig, result: RefreshResult) -> str:
        seen.append(result)
        return f"3 snapshots of {result.snapshot.id}"

    def alerts(config: SophiaConfig, result: RefreshResult) -> None:
        raise RuntimeError("alert store unreachable")

    def after(config: SophiaConfig, result: RefreshResult) -> None:
        seen.append(result)

    result = run_refresh(config, sync=False, after_refresh=[dashboards, alerts, after])

    assert result.snapshot is not None and result.snapshot.id == _current_snapshot(config)
    assert "transforms" in result.build_steps and not result.synced
    assert len(seen) == 2 and seen[0].snapshot == result.snapshot  # hooks see the new snapshot; all ran
    assert result.errors == [f"after-refresh hook {__name__}:test_every_hook_runs_and_a_failing_one_fails_the_refresh"
                             ".<locals>.alerts: RuntimeError: alert store unreachable"]
    report = result.report()
    assert "sync: skipped" in report and f"publish: snapshot {result.snapshot.id}" in report
    assert f"3 snapshots of {result.snapshot.id}" in report and "refresh FAILED" in report
    with pytest.raises(RefreshError, match="alert store unreachable"):
        result.raise_for_errors()


def test_sophia_refresh_without_sync(synced_sandbox, tmp_path: Path) -> None:
    config = synced_sandbox.copy_to(tmp_path / "var")
    (tmp_path / "sophia.yaml").write_text(yaml.safe_dump({"var_dir": str(config.var_dir)}))
    result = CliRunner().invoke(cli, ["refresh", "--no-sync"])
    assert result.exit_code == 0, result.output
    snapshot = _current_snapshot(config)
    assert "sync: skipped" in result.output and f"publish: snapshot {snapshot}" in result.output
    assert "refresh succeeded" in result.output


def test_the_refresh_job_end_to_end(synced_sandbox, tmp_path: Path) -> None:
    from sophia_lib.sandbox.services import store_demo_credentials
    from sophia_lib.sandbox.simulator.app import Sandbox
    from sophia_lib.sandbox.simulator.server import SandboxServer

    config = synced_sandbox.copy_to(tmp_path / "var")
    schedule = Schedule(jobs={"refresh": {"notebook": REFRESH_NOTEBOOK, "every": "15m", "timeout": "5m",
                                          "audience": "super_user", "parameters": {"sync": True}}})
    check_schedule(schedule)
    before = _current_snapshot(config)
    app_db = open_app_db(config)
    try:
        with SandboxServer(Sandbox(synced_sandbox.company), "127.0.0.1", config.sandbox.port) as server:
            store_demo_credentials(config, server.sandbox)
            scheduler = Scheduler(config, schedule=schedule, app_db=app_db)
            try:
                [outcome] = scheduler.run_once()
            finally:
                scheduler.close()
            assert outcome.status == "succeeded", outcome.error
            after = _current_snapshot(config)
            assert after is not None and after != before
            html = outcome.html_path.read_text()
            assert "sync: 11 source(s), 11 succeeded, 0 failed" in html
            assert f"publish: snapshot {after}" in html and "refresh succeeded" in html

            # A failed stage fails the notebook loudly: the last cell raises with every stage's error.
            runner = JobRunner(config, app_db)
            with runner.lock("refresh"):
                [failed] = runner.run(schedule.job("refresh"), parameters={"sources": ["nope"]})
    finally:
        app_db.close()
    assert failed.status == "failed" and failed.failed_cell_index == 3  # result.raise_for_errors()
    assert failed.error.startswith("RefreshError: the refresh failed:") and "unknown source 'nope'" in failed.error
