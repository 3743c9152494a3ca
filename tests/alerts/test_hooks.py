"""Alerts as the scheduler's hooks: after each refresh (on the new snapshot) and after each job run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from sophia_lib.alerts import AlertEvaluationError, after_refresh
from sophia_lib.appdb import open_app_db
from sophia_lib.appdb.models import Alert, JobRun
from sophia_lib.config import SophiaConfig
from sophia_lib.config.typing import AppDbConfig
from sophia_lib.scheduler import hooks
from sophia_lib.scheduler.refresh import RefreshResult
from sophia_lib.warehouse import open_warehouse
from tests.alerts.conftest import PublishedSandbox
from tests.alerts.support import WarehouseSource
from tests.support.servers import free_port


def _own_app_db(config: SophiaConfig, tmp_path: Path) -> SophiaConfig:
    return config.model_copy(update={"app_db": AppDbConfig(url=f"sqlite:///{tmp_path / 'app.db'}")})


def _refresh(as_of: datetime) -> RefreshResult:
    return RefreshResult(started_at=as_of, snapshot=SimpleNamespace(as_of=as_of))  # type: ignore[arg-type]


def test_alerts_are_a_registered_after_refresh_and_after_job_hook() -> None:
    assert hooks.resolve("sophia_lib.alerts.engine:after_refresh") is after_refresh
    assert "sophia_lib.alerts.engine:after_refresh" in hooks.AFTER_REFRESH
    assert "sophia_lib.alerts.engine:after_job" in hooks.AFTER_JOB


def test_after_refresh_evaluates_every_rule_on_the_snapshot(published_sandbox: PublishedSandbox,
                                                             tmp_path: Path) -> None:
    config = _own_app_db(published_sandbox.config, tmp_path)
    as_of = published_sandbox.company.now.to_pydatetime()
    with open_warehouse(config).reader() as reader:
        summary = after_refresh(config, _refresh(as_of), source=WarehouseSource(config, reader))
    assert summary.startswith("10 rule(s): ") and "FAILED" not in summary
    with open_app_db(config).session() as s:
        fired = {(a.rule, a.kind) for a in s.scalars(select(Alert))}
    assert ("project_deadline_risk", "project_deadline_risk") in fired  # the planted slip, as of the snapshot


def test_after_refresh_without_a_hub_token_runs_the_data_rules_and_says_so(published_sandbox: PublishedSandbox,
                                                                          tmp_path: Path) -> None:
    config = _own_app_db(published_sandbox.config, tmp_path)
    summary = after_refresh(config, _refresh(datetime.now(UTC)))
    assert summary.startswith("5 rule(s): ") and "metric and marts rules skipped: no hub token" in summary


def test_after_refresh_fails_naming_the_rules_when_the_query_door_is_down(
        published_sandbox: PublishedSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("SOPHIA_QUERY_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("SOPHIA_QUERY_TOKEN", "a-hub-token")
    config = _own_app_db(published_sandbox.config, tmp_path)
    with pytest.raises(AlertEvaluationError) as info:
        after_refresh(config, _refresh(datetime.now(UTC)))
    message = str(info.value)
    assert f"- pipeline_wow: cannot reach the query service at http://127.0.0.1:{port}" in message
    assert "- customer_health_drop: cannot reach" in message and "sync_failure" not in message


def test_a_failed_job_is_an_alert_until_a_run_succeeds(tmp_path: Path) -> None:
    config = SophiaConfig(var_dir=tmp_path / "var")
    db = open_app_db(config)
    start = datetime.now(UTC) - timedelta(minutes=5)
    with db.session() as s:
        s.add(JobRun(job="weekly_exec_summary", status="failed", started_at=start, error="KeyError: 'arr'",
                     failed_cell_index=4))
    hooks.run_after_job(config, SimpleNamespace(name="weekly_exec_summary"), SimpleNamespace(run_id=1))
    with db.session() as s:
        [alert] = s.scalars(select(Alert)).all()
        assert (alert.rule, alert.key, alert.state) == ("job_failure", "weekly_exec_summary", "firing")
        assert "failed at cell 4: KeyError: 'arr'" in alert.summary and alert.link.endswith("/data-health")
        s.add(JobRun(job="weekly_exec_summary", status="succeeded", started_at=start + timedelta(minutes=1)))
    hooks.run_after_job(config, SimpleNamespace(name="weekly_exec_summary"), SimpleNamespace(run_id=2))
    with db.session() as s:
        assert s.scalars(select(Alert.state)).all() == ["resolved"]
    db.close()
