"""The shipped rules (pipelines/alerts.yaml) scored against the sandbox's planted anomalies.

The small company's published snapshot is walked week by week over its last 100 weeks (each week's end
is an evaluation, its own "now", reading only periods complete by then; the clock of the lifecycle is
that week's end), the project rule at the snapshot's as-of (marts.project_status keeps no history), and
the planted sync outage is replayed for real: the sandbox's HubSpot API answers 503 during the outage
window while `sophia sync` runs under a controlled clock.

Every planted anomaly must be caught, and at most one false alarm may fall in any simulated month.
Alerts of the "pipeline moved more than 10 % week over week" rule are the seed's requested business
notifications, not anomaly detections: they are checked one by one against marts.pipeline instead.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pandas as pd
import time_machine
from sqlalchemy import select

from sophia_lib.alerts import evaluate_alerts, load_rules
from sophia_lib.alerts.engine import DATA_KINDS
from sophia_lib.appdb import open_app_db
from sophia_lib.appdb.models import Alert
from sophia_lib.config import SecretRef
from sophia_lib.config.typing import SyncConfig
from sophia_lib.warehouse import open_warehouse
from tests.alerts.conftest import PublishedSandbox
from tests.alerts.support import WarehouseSource, slack_receiver

WEEKS = 100
BUSINESS_RULES = {"pipeline_wow"}
DETECTS = {"pipeline_drop": {"new_business_pipeline_drop"}, "health_collapse": {"customer_health_drop"},
           "project_slip": {"project_deadline_risk"}, "sync_outage": {"sync_failure", "source_freshness"}}


def test_shipped_rules_catch_every_planted_anomaly(published_sandbox: PublishedSandbox, monkeypatch) -> None:
    config, company = published_sandbox.config, published_sandbox.company
    now = company.now.to_pydatetime()
    rules = [r.model_copy(update={"notify": []}) for r in load_rules(config)]
    weekly = [r for r in rules if r.kind not in DATA_KINDS and r.kind != "project_deadline_risk"]
    at_as_of = [r for r in rules if r.kind == "project_deadline_risk"]
    db = open_app_db(config)
    with open_warehouse(config).reader() as reader:
        source = WarehouseSource(config, reader)
        for k in range(WEEKS - 1, -1, -1):
            when = now - timedelta(weeks=k)
            report = evaluate_alerts(config, now=when, rules=weekly + (at_as_of if k == 0 else []),
                                     source=source, app_db=db, send=False)
            assert report.errors == {}, report.errors
        truth = _truth_maps(reader)
        weekly_pipeline = _weekly_pipeline(reader)

    posts = _replay_sync_outage(published_sandbox, rules, db, monkeypatch)

    with db.session() as s:
        alerts = s.scalars(select(Alert).order_by(Alert.id)).all()
    anomalies = company.tables["anomalies"]
    caught: dict[str, list[int]] = {a: [] for a in anomalies["anomaly_id"]}
    verdicts: dict[int, str] = {}
    churned = company.tables["accounts"].set_index("account_id")["churned_at"]
    for alert in alerts:
        matched = [a.anomaly_id for a in anomalies.itertuples() if _matches(alert, a, truth, company)]
        for anomaly_id in matched:
            caught[anomaly_id].append(alert.id)
        if matched:
            verdicts[alert.id] = "planted"
        elif alert.rule in BUSINESS_RULES:
            period = pd.Timestamp(alert.payload["period"])
            change = weekly_pipeline.loc[period, "change_pct"]
            assert abs(change) >= 10 and weekly_pipeline.loc[period, "volume"] >= 250_000, alert.summary
            assert abs(change - alert.payload["change_pct"]) < 0.01
            verdicts[alert.id] = "requested"
        elif alert.rule == "customer_health_drop" and _churned_near(churned, truth, alert, company):
            verdicts[alert.id] = "churned"
        else:
            verdicts[alert.id] = "false"

    counts = Counter(verdicts.values())
    months = pd.period_range(pd.Timestamp(now - timedelta(weeks=WEEKS - 1)).tz_localize(None), now.replace(
        tzinfo=None), freq="M")
    false_by_month = Counter(pd.Timestamp(a.first_fired_at).tz_localize(None).to_period("M")
                             for a in alerts if verdicts[a.id] == "false")
    detections = counts["planted"] + counts["churned"] + counts["false"]
    recall = sum(bool(v) for v in caught.values()) / len(caught)
    print(f"\nalerts scored over {WEEKS} weeks ({len(months)} simulated months) of the small sandbox:")
    for anomaly in anomalies.itertuples():
        print(f"  planted {anomaly.kind:<16} {str(anomaly.entity_id or anomaly.system):<14} "
              f"{anomaly.starts_at:%Y-%m-%d}…{anomaly.ends_at:%Y-%m-%d}: caught by alert(s) "
              f"{caught[anomaly.anomaly_id]}")
    for alert in alerts:
        if verdicts[alert.id] != "requested":
            print(f"  #{alert.id:<3} {verdicts[alert.id]:<8} {alert.first_fired_at:%Y-%m-%d} {alert.rule}: "
                  f"{alert.summary[:110]}")
    print(f"  recall {recall:.2f} ({sum(bool(v) for v in caught.values())}/{len(caught)} planted anomalies caught)")
    print(f"  precision {counts['planted'] / detections:.2f} against the planted anomalies only; "
          f"{(counts['planted'] + counts['churned']) / detections:.2f} counting health alerts on customers that "
          f"really churned ({counts['churned']})")
    print(f"  false alarms: {counts['false']} in {len(months)} months (worst month: "
          f"{max(false_by_month.values(), default=0)}); pipeline ±10 % WoW notifications: {counts['requested']}, "
          f"each verified against marts.pipeline")

    assert recall == 1.0, caught
    assert max(false_by_month.values(), default=0) <= 1, false_by_month
    assert [p["text"].split("\n")[0] for p in posts] == [  # the outage's Slack messages: once each, then resolved
        "*[Sophia critical] FIRING: sync_failure — hubspot*",
        "*[Sophia warning] FIRING: source_freshness — hubspot*",
        "*[Sophia critical] RESOLVED: sync_failure — hubspot*",
        "*[Sophia warning] RESOLVED: source_freshness — hubspot*"]
    db.close()


def _truth_maps(reader) -> dict[str, dict[str, str]]:
    xref = reader.query("SELECT account_key, system, system_id FROM core.account_xref").to_pandas()
    projects = reader.query("SELECT project_key, system, system_id FROM core.projects").to_pandas()
    return {"accounts": {(r.system, str(r.system_id)): r.account_key for r in xref.itertuples()},
            "projects": {(r.system, str(r.system_id)): r.project_key for r in projects.itertuples()}}


def _keys_of(company_table: pd.DataFrame, entity_col: str, entity_id: str, mapping: dict) -> set[str]:
    rows = company_table[company_table[entity_col] == entity_id]
    return {mapping[(r.system, str(r.system_id))] for r in rows.itertuples() if (r.system, str(r.system_id)) in mapping}


def _matches(alert: Alert, anomaly, truth, company) -> bool:
    if alert.rule not in DETECTS.get(anomaly.kind, set()):
        return False
    fired = pd.Timestamp(alert.first_fired_at)
    if anomaly.kind == "pipeline_drop":
        return anomaly.starts_at <= pd.Timestamp(alert.payload["period"], tz="UTC") < anomaly.ends_at
    if anomaly.kind == "sync_outage":
        return alert.key == anomaly.system and anomaly.starts_at <= fired <= anomaly.ends_at
    if anomaly.kind == "health_collapse":
        presence = company.tables["presence"]
        keys = _keys_of(presence[presence["entity"] == "account"], "entity_id", anomaly.entity_id, truth["accounts"])
        return alert.key in keys and anomaly.starts_at <= fired <= anomaly.ends_at + timedelta(days=45)
    if anomaly.kind == "project_slip":
        keys = _keys_of(company.tables["projects"], "project_id", anomaly.entity_id, truth["projects"])
        return alert.key in keys and anomaly.starts_at <= fired <= anomaly.ends_at
    return False


def _churned_near(churned: pd.Series, truth, alert: Alert, company) -> bool:
    """A health alert on a customer whose churn the ground truth records within 90 days of the alert."""
    presence = company.tables["presence"]
    ids = {eid for eid in churned.dropna().index
           if alert.key in _keys_of(presence[presence["entity"] == "account"], "entity_id", eid, truth["accounts"])}
    fired = pd.Timestamp(alert.first_fired_at)
    return any(abs(churned[eid] - fired) <= timedelta(days=90) for eid in ids)


def _weekly_pipeline(reader) -> pd.DataFrame:
    frame = reader.query("SELECT week, sum(amount) AS amount FROM marts.pipeline GROUP BY week").to_pandas()
    weeks = pd.to_datetime(frame["week"])
    series = pd.Series(frame["amount"].to_numpy(dtype="float64"), index=weeks).sort_index()
    series = series.reindex(pd.date_range(series.index.min(), series.index.max(), freq="W-MON"), fill_value=0.0)
    previous = series.shift(1)
    return pd.DataFrame({"change_pct": (series / previous - 1) * 100,
                         "volume": pd.concat([series, previous], axis=1).max(axis=1)})


def _replay_sync_outage(published: PublishedSandbox, rules, db, monkeypatch) -> list[dict]:
    """Serve the company; sync the outage's system before, during (the API answers 503) and after the planted
    window, each under a clock set to that time, evaluating the data rules after each sync as a refresh does."""
    from sophia_lib.sandbox.simulator.app import Sandbox
    from sophia_lib.sandbox.simulator.server import SandboxServer
    from sophia_lib.sync import run_sync

    anomalies = published.company.tables["anomalies"]
    outage = anomalies[anomalies["kind"] == "sync_outage"].iloc[0]
    data_rules = [r.model_copy(update={"notify": ["slack:alerts"]}) for r in rules
                  if r.kind in ("sync_failure", "freshness")]
    with slack_receiver() as hook:
        monkeypatch.setenv("SOPHIA_SECRET_SLACK_ALERTS", hook.url)
        config = published.config.model_copy(update={
            "sync": SyncConfig(parallelism=1, max_retry_s=1.0, request_timeout_s=5.0),
            "delivery": published.config.delivery.model_copy(update={
                "slack_webhooks": {"alerts": SecretRef(secret="SLACK_ALERTS")}, "backoff_s": 0.0})})
        steps = [(outage.starts_at - timedelta(hours=1), False), (outage.starts_at + timedelta(hours=1), True),
                 (outage.starts_at + timedelta(hours=1, minutes=15), True),
                 (outage.ends_at + timedelta(minutes=15), False)]
        with SandboxServer(Sandbox(published.company), "127.0.0.1", config.sandbox.port) as server:
            for when, failing in steps:
                server.faults.clear()
                if failing:
                    server.faults.add(outage.system, "server_error", count=None)
                with time_machine.travel(when.to_pydatetime(), tick=True):
                    [result] = run_sync(config, sources=[outage.system], progress=False)
                    assert result.status == ("failed" if failing else "succeeded"), result.error
                    report = evaluate_alerts(config, rules=data_rules, app_db=db, sleep=lambda _: None)
                    assert report.errors == {}
        return list(hook.posts)
