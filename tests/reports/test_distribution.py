"""Reports for real: papermill runs the notebooks against the query service (hub tokens, policy, masks),
Chromium prints the PDF, aiosmtpd receives the mail, a local receiver plays Slack's webhook."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select

from sophia_lib.appdb import open_app_db
from sophia_lib.appdb.models import Delivery
from sophia_lib.config import SophiaConfig
from sophia_lib.config.typing import ReportRecipient
from sophia_lib.errors import SophiaError
from sophia_lib.reports import TokenPerRole, distribute, get_report, render_copy
from sophia_lib.reports.distribution import Distribution
from sophia_lib.reports.narrative import Change
from tests.alerts.support import Webhook, slack_receiver, smtp_server
from tests.reports.conftest import ReportEnv, leaked


def _config(env: ReportEnv, tmp: Path, box, **reports: object) -> SophiaConfig:
    data = env.config.model_dump(mode="json")
    data["delivery"] = {"smtp_host": box.host, "smtp_port": box.port, "smtp_security": "none", "retries": 0,
                        "mail_from": "sophia@example.com", "slack_webhooks": {"exec": {"secret": "SLACK_EXEC"}}}
    data["reports"] = {"output_dir": str(tmp / "reports"), **reports}
    data["alerts"] = {"dashboards_url": "https://hub.example.com/services/dashboards"}
    data["app_db"] = {"url": f"sqlite:///{tmp / 'app.db'}"}
    return SophiaConfig(**data)


def _pdf_text(mail: EmailMessage) -> str:
    from pypdf import PdfReader

    pdf = next(a for a in mail.iter_attachments() if a.get_content_type() == "application/pdf")
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.get_content())).pages)


@dataclass
class Weekly:
    result: Distribution
    mails: dict[str, EmailMessage]
    hook: Webhook
    config: SophiaConfig


@pytest.fixture(scope="module")
def weekly(report_env: ReportEnv, tmp_path_factory: pytest.TempPathFactory) -> Weekly:
    tmp = tmp_path_factory.mktemp("weekly")
    mp = pytest.MonkeyPatch()
    with smtp_server() as box, slack_receiver() as hook:
        mp.setenv("SOPHIA_SECRET_SLACK_EXEC", hook.url)
        try:
            config = _config(report_env, tmp, box)
            recipients = [ReportRecipient(to="email:ceo@example.com", role="executive_viewer"),
                          ReportRecipient(to="email:ops@example.com", role="super_user"),
                          ReportRecipient(to="slack:exec", role="executive_viewer")]
            result = distribute(config, "weekly_exec_summary", recipients=recipients,
                                auth=TokenPerRole(report_env.url, report_env.tokens))
            mails = {m["To"]: m for m in box.wait_for(2)}
        finally:
            mp.undo()
    return Weekly(result, mails, hook, config)


def _expected_pipeline_sentence(env: ReportEnv) -> str:
    """The pipeline sentence computed from the warehouse itself: the last complete week's open pipeline
    (marts.pipeline at the week's end) against the week before."""
    from sophia_lib.warehouse import open_warehouse

    today = env.company.now.date()
    week = today - timedelta(days=today.weekday()) - timedelta(days=7)
    wh = open_warehouse(env.config)
    try:
        with wh.reader() as r:
            rows = r.query("SELECT week, sum(amount) AS amount FROM marts.pipeline WHERE week IN (:a, :b) GROUP BY 1",
                           {"a": week, "b": week - timedelta(days=7)}).to_pydict()
    finally:
        wh.close()
    values = {(w.date() if hasattr(w, "date") else w): a for w, a in zip(rows["week"], rows["amount"], strict=True)}
    change = Change("open pipeline", values.get(week), values.get(week - timedelta(days=7)), "currency",
                    f"in the week of {week.day} {week:%b}")
    assert isinstance(week, date) and change.value
    return change.sentence()


def test_each_role_gets_its_own_copy_by_mail_with_the_narrative_in_the_pdf(weekly: Weekly,
                                                                           report_env: ReportEnv) -> None:
    result = weekly.result
    assert sorted(role for role, _ in result.copies) == ["executive_viewer", "super_user"]
    assert [d.status for d in result.deliveries] == ["sent", "sent", "sent"]
    expected = _expected_pipeline_sentence(report_env)  # e.g. "Open pipeline rose 1.2 % to $1.4M in the week of …"
    for address, role in (("ceo@example.com", "executive_viewer"), ("ops@example.com", "super_user")):
        mail = weekly.mails[address]
        copy = result.copies[(role, None)]
        assert copy.role == role and len(copy.sentences) == 6
        assert mail["Subject"].startswith("Weekly executive summary (data as of ")
        body = mail.get_body(("plain",)).get_content()
        assert expected in body and "https://hub.example.com/services/dashboards/executive-overview" in body
        text = " ".join(_pdf_text(mail).split())
        assert expected in text, text[:600]
        assert f"prepared for the {role.replace('_', ' ')} role" in text
        for sentence in copy.sentences:
            assert sentence in text
        html = next(a for a in mail.iter_attachments() if a.get_content_type() == "text/html").get_content()
        assert expected in html and "plotly" in html
        assert "from sophia_lib" not in html and "report.change(" not in html  # code hidden


def test_the_viewer_copy_has_no_contact_pii_while_the_super_user_copy_does(weekly: Weekly,
                                                                         contact_pii: dict[str, set[str]]) -> None:
    viewer = _pdf_text(weekly.mails["ceo@example.com"])
    admin = _pdf_text(weekly.mails["ops@example.com"])
    assert leaked(admin, contact_pii).get("email"), "the super user's copy should list contacts (the check can fail)"
    assert leaked(viewer, contact_pii) == {}
    assert "Not included: the executive viewer role does not read these details" in " ".join(viewer.split())
    viewer_html = weekly.result.copies[("executive_viewer", None)].html.read_text()
    assert leaked(viewer_html, contact_pii) == {}


def test_slack_gets_the_summary_and_the_dashboard_link(weekly: Weekly) -> None:
    [post] = weekly.hook.posts
    copy = weekly.result.copies[("executive_viewer", None)]
    assert "*Weekly executive summary (data as of" in post["text"]
    for sentence in copy.sentences:
        assert sentence in post["text"]
    assert post["blocks"][-1]["elements"][0]["url"] == "https://hub.example.com/services/dashboards/executive-overview"


def test_every_delivery_is_recorded_as_a_report(weekly: Weekly) -> None:
    db = open_app_db(weekly.config)
    try:
        with db.session() as s:
            rows = list(s.scalars(select(Delivery).order_by(Delivery.id)))
    finally:
        db.close()
    assert [(r.kind, r.channel, r.recipient, r.status) for r in rows] == [
        ("report", "email", "ceo@example.com", "sent"), ("report", "email", "ops@example.com", "sent"),
        ("report", "slack", "exec", "sent")]
    assert rows[0].message["attachments"][0]["filename"] == "weekly_exec_summary.pdf"


def test_an_analyst_scorecard_masks_contacts(report_env: ReportEnv, tmp_path: Path,
                                            contact_pii: dict[str, set[str]]) -> None:
    env = TokenPerRole(report_env.url, report_env.tokens).env("analyst")
    copy = render_copy(report_env.config, get_report("monthly_scorecard"), env, tmp_path, department="customer_success")
    assert copy.title == "Monthly scorecard: customer success" and copy.role == "analyst"
    from pypdf import PdfReader

    text = "\n".join(p.extract_text() for p in PdfReader(copy.pdf).pages)
    assert "Customers to call" in text and "***" in text  # the table is there, masked (partial names and phones)
    assert not leaked(text, contact_pii).get("email") and not leaked(text, contact_pii).get("phone")
    assert any("CSAT" in s for s in copy.sentences)


def test_bad_input_names_the_problem(report_env: ReportEnv, tmp_path: Path) -> None:
    config = SophiaConfig(var_dir=tmp_path / "var")
    with pytest.raises(SophiaError, match="no report 'weekly_summary' — did you mean 'weekly_exec_summary'"):
        distribute(config, "weekly_summary")
    with pytest.raises(SophiaError, match=r"reports.audiences.quarterly_business_review"):
        distribute(config, "quarterly_business_review")
    with pytest.raises(SophiaError, match="reports.tokens.analyst") as caught:
        distribute(config, "quarterly_business_review",
                   recipients=[ReportRecipient(to="email:a@example.com", role="analyst")],
                   auth=TokenPerRole(report_env.url, {}))
    assert "0 copies rendered" in str(caught.value)
    with pytest.raises(SophiaError, match="not made per department"):
        render_copy(config, get_report("weekly_exec_summary"), {}, tmp_path, department="sales")
