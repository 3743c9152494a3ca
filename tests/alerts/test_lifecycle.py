"""The alert lifecycle on a controlled clock, with real SMTP and Slack receivers and the real CLI:
fires once, is not re-sent while firing, sends "resolved" when it clears, stays quiet in its cooldown,
reminds until acknowledged, and a snoozed alert sends nothing."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import time_machine
from sqlalchemy import select
from typer.testing import CliRunner

from sophia_lib.alerts import evaluate_alerts, parse_rules
from sophia_lib.appdb import open_app_db
from sophia_lib.appdb.models import Alert, Delivery
from sophia_lib.cli import cli
from sophia_lib.config import load_config
from tests.alerts.support import Mailbox, Webhook, slack_receiver, smtp_server

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # a Monday


class DailySource:
    """A metric whose daily values the test sets (the lifecycle does not care where numbers come from)."""

    def __init__(self) -> None:
        self.values: dict[date, float] = {}

    def metric(self, name: str, by: Sequence[str] | None = None, grain: str | None = None,
               start: date | None = None, end: date | None = None,
               where: str | Mapping[str, Any] | None = None) -> pd.DataFrame:
        rows = [{"day": d, name: v} for d, v in sorted(self.values.items()) if start <= d <= end]
        return pd.DataFrame(rows, columns=["day", name])

    def table(self, name: str) -> pd.DataFrame:
        raise AssertionError("not used")


@dataclass
class World:
    box: Mailbox
    hook: Webhook
    source: DailySource
    traveller: Any

    def at(self, when: datetime) -> None:
        self.traveller.move_to(when)

    def evaluate(self, rule: dict[str, Any]):
        defaults = {"notify": ["email:ops@example.com", "slack:alerts"], "dashboard": "customer-success"}
        rules = parse_rules({"rules": [{**defaults, **rule}]})
        return evaluate_alerts(load_config(), rules=rules, source=self.source, sleep=lambda _: None)

    def subjects(self) -> list[str]:
        return [m["Subject"] for m in self.box.messages]


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with smtp_server() as box, slack_receiver() as hook:
        (tmp_path / "sophia.yaml").write_text(
            f"var_dir: {tmp_path / 'var'}\n"
            f"delivery:\n  smtp_host: {box.host}\n  smtp_port: {box.port}\n  smtp_security: none\n"
            "  backoff_s: 0\n  slack_webhooks:\n    alerts: {secret: SLACK_ALERTS}\n"
            "alerts:\n  dashboards_url: https://sophia.example.com/services/dashboards\n")
        monkeypatch.setenv("SOPHIA_CONFIG", str(tmp_path / "sophia.yaml"))
        monkeypatch.setenv("SOPHIA_SECRET_SLACK_ALERTS", hook.url)
        with time_machine.travel(START, tick=False) as traveller:
            yield World(box, hook, DailySource(), traveller)


TOO_MANY = {"name": "support_surge", "kind": "threshold", "metric": "support_conversations", "grain": "day",
            "op": ">", "value": 100, "cooldown": "2d"}


def test_fires_once_resolves_once_and_respects_the_cooldown(world: World) -> None:
    day = START.date()
    world.source.values[day - timedelta(days=1)] = 150
    report = world.evaluate(TOO_MANY)
    assert (report.count("firing"), report.count("resolved")) == (1, 0)
    world.box.wait_for(1)
    assert world.subjects() == ["[Sophia warning] FIRING: support_surge"]
    mail = world.box.messages[0].get_body(("plain",)).get_content()
    assert "support_conversations is 150" in mail and "(> 100)" in mail
    assert "https://sophia.example.com/services/dashboards/customer-success" in mail
    assert len(world.hook.posts) == 1 and "FIRING" in world.hook.posts[0]["text"]

    for minutes in (15, 30, 45):  # the refreshes of the same morning: still firing, nothing re-sent
        world.at(START + timedelta(minutes=minutes))
        report = world.evaluate(TOO_MANY)
        assert (report.count("firing"), report.still_firing, report.deliveries) == (0, 1, [])
    assert len(world.box.messages) == 1 and len(world.hook.posts) == 1

    world.source.values[day] = 40  # the next day's number is fine: resolved, one message per channel
    world.at(START + timedelta(days=1))
    report = world.evaluate(TOO_MANY)
    assert report.count("resolved") == 1
    world.box.wait_for(2)
    assert world.subjects()[1] == "[Sophia warning] RESOLVED: support_surge"
    assert "Last seen: support_conversations is 150" in world.box.messages[1].get_body(("plain",)).get_content()
    assert "RESOLVED" in world.hook.posts[1]["text"]

    world.source.values[day + timedelta(days=1)] = 300  # back above, inside the 2-day cooldown: quiet
    world.at(START + timedelta(days=2))
    report = world.evaluate(TOO_MANY)
    assert (report.count("firing"), report.cooling_down) == (0, 1)

    world.source.values[day + timedelta(days=2)] = 300  # cooldown over: a new episode fires
    world.at(START + timedelta(days=3, minutes=1))
    report = world.evaluate(TOO_MANY)
    assert report.count("firing") == 1
    world.box.wait_for(3)
    assert world.subjects() == ["[Sophia warning] FIRING: support_surge", "[Sophia warning] RESOLVED: support_surge",
                                "[Sophia warning] FIRING: support_surge"]
    with open_app_db(load_config()).session() as s:
        episodes = s.scalars(select(Alert).order_by(Alert.id)).all()
        assert [(a.state, a.kind, a.severity) for a in episodes] == [("resolved", "threshold", "warning"),
                                                                    ("firing", "threshold", "warning")]
        assert episodes[0].resolved_at == START + timedelta(days=1)
        assert episodes[1].link == "https://sophia.example.com/services/dashboards/customer-success"
        sent = s.scalars(select(Delivery.status)).all()
        assert sent == ["sent"] * 6  # 3 messages × (mail + Slack), each recorded


def test_reminders_until_acknowledged_through_the_cli(world: World) -> None:
    world.source.values[START.date() - timedelta(days=1)] = 150
    rule = {**TOO_MANY, "remind_every": "1h"}
    world.evaluate(rule)
    world.at(START + timedelta(minutes=30))
    assert world.evaluate(rule).count("reminder") == 0
    world.at(START + timedelta(hours=1))
    assert world.evaluate(rule).count("reminder") == 1
    world.box.wait_for(2)
    assert world.subjects()[1] == "[Sophia warning] STILL FIRING: support_surge"

    runner = CliRunner()
    listed = runner.invoke(cli, ["alerts", "list"])
    assert listed.exit_code == 0, listed.output
    assert "#1" in listed.output and "support_surge" in listed.output and "firing" in listed.output
    acked = runner.invoke(cli, ["alerts", "ack", "1", "--by", "dana"])
    assert acked.exit_code == 0 and "acknowledged by dana" in acked.output

    world.at(START + timedelta(hours=3))
    assert world.evaluate(rule).count("reminder") == 0
    assert "acked by dana" in runner.invoke(cli, ["alerts", "list"]).output
    missing = runner.invoke(cli, ["alerts", "ack", "99"])
    assert missing.exit_code != 0 and "there is no alert #99" in str(missing.exception)


def test_snoozed_alert_stays_silent_even_when_it_resolves_and_fires_again(world: World) -> None:
    day = START.date()
    world.source.values[day - timedelta(days=1)] = 150
    rule = {**TOO_MANY, "cooldown": "0s"}
    world.evaluate(rule)
    world.box.wait_for(1)
    runner = CliRunner()
    result = runner.invoke(cli, ["alerts", "snooze", "1", "--for", "3d"])
    assert result.exit_code == 0 and "snoozed until 2026-03-05 08:00" in result.output
    bad = runner.invoke(cli, ["alerts", "snooze", "1", "--for", "soon"])
    assert bad.exit_code == 2 and "not a duration" in bad.output

    world.source.values[day] = 10
    world.at(START + timedelta(days=1))
    assert world.evaluate(rule).count("resolved") == 1  # resolved, silently
    world.source.values[day + timedelta(days=1)] = 500
    world.at(START + timedelta(days=2))
    report = world.evaluate(rule)
    assert report.count("firing") == 1 and report.deliveries == []  # the new episode inherits the snooze
    assert len(world.box.messages) == 1 and len(world.hook.posts) == 1

    world.source.values[day + timedelta(days=2)] = 10
    world.at(START + timedelta(days=3, minutes=1))  # snooze over; never announced, so neither is its end
    assert world.evaluate(rule).count("resolved") == 1
    assert len(world.box.messages) == 1 and len(world.hook.posts) == 1
    with open_app_db(load_config()).session() as s:
        assert s.scalars(select(Alert.snoozed_until)).all()[1] == START + timedelta(days=3)

    world.source.values[day + timedelta(days=3)] = 500  # after the snooze, a new episode is announced again
    world.at(START + timedelta(days=4))
    assert world.evaluate(rule).count("firing") == 1
    assert len(world.box.wait_for(2)) == 2 and len(world.hook.posts) == 2


def test_a_rule_that_cannot_read_leaves_its_alerts_alone(world: World) -> None:
    world.source.values[START.date() - timedelta(days=1)] = 150
    world.evaluate(TOO_MANY)

    class Broken(DailySource):
        def metric(self, *args: Any, **kwargs: Any) -> pd.DataFrame:
            from sophia_lib.query.errors import ServiceUnavailableError

            raise ServiceUnavailableError("cannot reach the query service at http://127.0.0.1:9.",
                                          fix="start it")

    world.source = Broken()
    world.at(START + timedelta(hours=1))
    report = world.evaluate(TOO_MANY)
    assert report.errors == {"support_surge": "cannot reach the query service at http://127.0.0.1:9."}
    assert report.transitions == []  # not resolved just because the numbers could not be read
    with pytest.raises(Exception, match="support_surge: cannot reach the query service"):
        report.raise_for_errors()
