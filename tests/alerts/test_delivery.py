"""Mail and Slack delivery against real servers: an aiosmtpd SMTP server and a local webhook receiver."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from sqlalchemy import select

from sophia_lib.appdb import open_app_db
from sophia_lib.appdb.models import Delivery
from sophia_lib.config import SophiaConfig, load_config
from sophia_lib.delivery import Attachment, DeliveryConfigError, Message, deliver, parse_target, retry_failed
from sophia_lib.errors import ConfigError
from tests.alerts.support import slack_receiver, smtp_server, tiny_pdf
from tests.support.servers import free_port


def _config(tmp_path: Path, **delivery: object) -> SophiaConfig:
    settings = {"smtp_security": "none", "retries": 2, "backoff_s": 0.01, "timeout_s": 3,
                "mail_from": "sophia@example.com", "slack_webhooks": {"alerts": {"secret": "SLACK_ALERTS"}}}
    return SophiaConfig(var_dir=tmp_path / "var", delivery={**settings, **delivery})


def _rows(config: SophiaConfig) -> list[Delivery]:
    db = open_app_db(config)
    try:
        with db.session() as s:
            return list(s.scalars(select(Delivery).order_by(Delivery.id)))
    finally:
        db.close()


def test_mail_arrives_with_html_body_and_pdf_attachment(tmp_path: Path) -> None:
    from pypdf import PdfReader

    with smtp_server() as box:
        config = _config(tmp_path, smtp_host=box.host, smtp_port=box.port)
        pdf = tiny_pdf("Weekly executive summary: pipeline rose 12 %")
        message = Message("Weekly summary", "Pipeline rose 12 % to $4.1M.", html="<h1>Pipeline</h1><p>rose 12 %</p>",
                          link="http://hub/services/dashboards/sales-pipeline",
                          attachments=[Attachment("summary.pdf", pdf)])
        outcomes = deliver(config, message, ["email:ceo@example.com"], kind="report")
        mails = box.wait_for(1)
    assert [o.status for o in outcomes] == ["sent"]
    assert len(mails) == 1
    mail = mails[0]
    assert mail["Subject"] == "Weekly summary" and mail["To"] == "ceo@example.com"
    assert mail["From"] == "sophia@example.com"
    assert "rose 12 %" in mail.get_body(("html",)).get_content()
    text = mail.get_body(("plain",)).get_content()
    assert "Pipeline rose 12 % to $4.1M." in text and "sales-pipeline" in text
    attachment = next(mail.iter_attachments())
    assert attachment.get_filename() == "summary.pdf" and attachment.get_content_type() == "application/pdf"
    pages = PdfReader(io.BytesIO(attachment.get_content())).pages
    assert "pipeline rose 12 %" in pages[0].extract_text()
    [row] = _rows(config)
    assert (row.kind, row.channel, row.recipient, row.status, row.attempts) == ("report", "email", "ceo@example.com",
                                                                               "sent", 1)
    assert row.sent_at is not None and row.subject == "Weekly summary"


def test_slack_webhook_gets_text_and_dashboard_link(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with slack_receiver() as hook:
        monkeypatch.setenv("SOPHIA_SECRET_SLACK_ALERTS", hook.url)
        config = _config(tmp_path)
        outcomes = deliver(config, Message("Pipeline fell", "pipeline_value fell 14 %", link="http://x/d/p"),
                           ["slack:alerts"])
    assert [o.status for o in outcomes] == ["sent"]
    [post] = hook.posts
    assert "*Pipeline fell*" in post["text"] and "pipeline_value fell 14 %" in post["text"]
    assert post["blocks"][1]["elements"][0]["url"] == "http://x/d/p"


def test_failing_webhook_is_retried_and_every_attempt_recorded(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    with slack_receiver() as hook:
        monkeypatch.setenv("SOPHIA_SECRET_SLACK_ALERTS", hook.url)
        hook.fail = 2
        config = _config(tmp_path, backoff_s=1.5)
        [outcome] = deliver(config, Message("s", "t"), ["slack:alerts"], sleep=waits.append)
    assert (outcome.status, outcome.attempts) == ("sent", 3)
    assert waits == [1.5, 3.0]  # backoff doubles
    assert len(hook.posts) == 1
    [row] = _rows(config)
    assert row.status == "sent" and row.attempts == 3
    assert row.error.count("HTTP 500") == 2 and "attempt 1" in row.error and "attempt 2" in row.error


def test_webhook_down_for_good_ends_failed_and_is_retried_later(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    with slack_receiver() as hook:
        monkeypatch.setenv("SOPHIA_SECRET_SLACK_ALERTS", hook.url)
        hook.fail = 3
        config = _config(tmp_path)
        [outcome] = deliver(config, Message("s", "lost?"), ["slack:alerts"], sleep=lambda _: None)
        assert (outcome.status, outcome.attempts) == ("failed", 3)
        [row] = _rows(config)
        assert row.status == "failed" and "Slack answered HTTP 500" in row.error
        [again] = retry_failed(config, sleep=lambda _: None)  # the next evaluation picks it up
    assert (again.status, again.attempts) == ("sent", 4)
    assert [p["text"].splitlines()[1] for p in hook.posts] == ["lost?"]
    [row] = _rows(config)
    assert row.status == "sent" and "attempt 3" in row.error


def test_unreachable_smtp_server_fails_after_retries_with_a_clear_error(tmp_path: Path) -> None:
    port = free_port()
    config = _config(tmp_path, smtp_host="127.0.0.1", smtp_port=port)
    [outcome] = deliver(config, Message("s", "t"), ["email:ops@example.com"], sleep=lambda _: None)
    assert (outcome.status, outcome.attempts) == ("failed", 3)
    assert f"cannot reach the SMTP server at 127.0.0.1:{port}" in outcome.error
    assert "delivery.smtp_host" in outcome.error


def test_temporary_smtp_refusal_is_retried(tmp_path: Path) -> None:
    with smtp_server() as box:
        box.refuse = 1
        config = _config(tmp_path, smtp_host=box.host, smtp_port=box.port)
        [outcome] = deliver(config, Message("s", "t"), ["email:ops@example.com"], sleep=lambda _: None)
        assert len(box.wait_for(1)) == 1
    assert (outcome.status, outcome.attempts) == ("sent", 2)
    assert "451" in outcome.error


@pytest.mark.parametrize(("target", "setup", "expected"), [
    ("email:ops@example.com", {}, "no SMTP server is configured"),
    ("slack:exec", {}, "no Slack webhook is configured for channel 'exec' (configured: alerts)"),
    ("pager:ops", {}, "delivery target 'pager:ops' is not channel:address"),
    ("email:not-an-address", {}, "is not an email address"),
])
def test_misconfiguration_is_not_retried_and_names_the_key(tmp_path: Path, target: str, setup: dict,
                                                          expected: str) -> None:
    config = _config(tmp_path, **setup)
    [outcome] = deliver(config, Message("s", "t"), [target], sleep=lambda _: pytest.fail("retried"))
    assert outcome.status == "failed" and outcome.attempts <= 1
    assert expected in outcome.error
    [row] = _rows(config)
    assert row.status == "failed" and expected in row.error


def test_parse_target() -> None:
    assert str(parse_target("slack:#alerts")) == "slack:alerts"
    assert parse_target("EMAIL: a@b.co").address == "a@b.co"
    with pytest.raises(DeliveryConfigError, match="channel:address"):
        parse_target("alerts")


def test_delivery_config_keys_and_secrets(tmp_path: Path) -> None:
    file = tmp_path / "sophia.yaml"
    file.write_text("delivery:\n  smtp_host: mail.example.com\n  smtp_port: 465\n  smtp_security: ssl\n"
                    "  smtp_password: {secret: SMTP_PASSWORD}\n  slack_webhooks:\n    alerts: {secret: SLACK_A}\n"
                    "alerts:\n  rules: rules/alerts.yaml\n")
    config = load_config(file)
    assert config.delivery.smtp_port == 465 and config.delivery.slack_webhooks["alerts"].secret == "SLACK_A"
    assert config.alerts.rules == tmp_path / "rules" / "alerts.yaml"
    file.write_text("delivery:\n  slack_webhooks:\n    alerts: https://hooks.slack.com/services/T/B/X\n")
    with pytest.raises(ConfigError, match="inline secret value is not allowed"):
        load_config(file)
    file.write_text("delivery:\n  smtp_hots: x\n")
    with pytest.raises(ConfigError, match="did you mean 'smtp_host'"):
        load_config(file)
