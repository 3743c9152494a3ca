"""The scheduled path: the scheduler runs the report job's notebook as the job's audience (its report token
from reports.tokens, a secret), then the after-job hook sends each recipient's copy."""

from __future__ import annotations

from pathlib import Path

import pytest

from sophia_lib.appdb import open_app_db
from sophia_lib.config import SophiaConfig
from sophia_lib.scheduler.runner import JobRunner
from sophia_lib.scheduler.schedule import load_schedule
from tests.alerts.support import slack_receiver
from tests.reports.conftest import ReportEnv


def test_the_quarterly_job_runs_as_its_audience_and_its_hook_posts_the_summary(
        report_env: ReportEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOPHIA_QUERY_URL", report_env.url)
    monkeypatch.setenv("SOPHIA_SECRET_REPORT_EXEC", report_env.tokens["executive_viewer"])
    with slack_receiver() as hook:
        monkeypatch.setenv("SOPHIA_SECRET_SLACK_BOARD", hook.url)
        data = report_env.config.model_dump(mode="json")
        data.update(
            app_db={"url": f"sqlite:///{tmp_path / 'app.db'}"},
            scheduler={"runs_dir": str(tmp_path / "runs")},
            delivery={"slack_webhooks": {"board": {"secret": "SLACK_BOARD"}}, "retries": 0},
            reports={"output_dir": str(tmp_path / "reports"), "tokens": {"executive_viewer": {"secret": "REPORT_EXEC"}},
                     "audiences": {"quarterly_business_review": [{"to": "slack:board", "role": "executive_viewer"}]}})
        config = SophiaConfig(**data)
        job = load_schedule(config).job("quarterly_business_review")
        assert job.enabled and job.audience == "executive_viewer"
        db = open_app_db(config)
        try:
            [outcome] = JobRunner(config, db).run(job.model_copy(update={"retries": 0}))
        finally:
            db.close()
        assert outcome.succeeded, outcome.error
        [post] = hook.posts
    assert "*Quarterly business review (data as of" in post["text"]
    assert "Bookings" in post["text"] and " in Q" in post["text"]  # e.g. "Bookings fell 47 % to $393.1k in Q3 2026."
    copies = list((tmp_path / "reports" / "quarterly_business_review").glob("*/executive_viewer/*.pdf"))
    assert len(copies) == 1
    executed = outcome.output_path.read_text()
    assert "prepared for the executive viewer role" in executed  # the job's own run queried as its audience
