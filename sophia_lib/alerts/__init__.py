"""Alerts: rules in ``pipelines/alerts.yaml``, evaluated after each refresh, with a lifecycle.

Kinds: ``threshold``, ``change`` and ``anomaly`` on a metric (read through the query door), ``customer_health_drop``
and ``project_deadline_risk`` on the marts, and data alerts from the app DB (``sync_failure``, ``freshness``,
``schema_change``, ``quarantine``, ``job_failure``). Each firing episode is one row of the app DB's ``alerts``
table: firing → resolved, de-duplicated while firing, a cooldown before it can fire again, snooze and
acknowledge (``sophia alerts``); messages go out by mail and Slack (:mod:`sophia_lib.delivery`) and link to
the dashboard that explains them. See docs/alerts.md.
"""

from __future__ import annotations

from sophia_lib.alerts.engine import EvaluationReport, after_job, after_refresh, evaluate_alerts
from sophia_lib.alerts.errors import AlertError, AlertEvaluationError, AlertNotFoundError, AlertRuleError
from sophia_lib.alerts.manage import acknowledge, list_alerts, snooze
from sophia_lib.alerts.rules import load_rules, parse_rules
from sophia_lib.alerts.source import MetricSource, QueryDoorSource

__all__ = [
    "AlertError",
    "AlertEvaluationError",
    "AlertNotFoundError",
    "AlertRuleError",
    "EvaluationReport",
    "MetricSource",
    "QueryDoorSource",
    "acknowledge",
    "after_job",
    "after_refresh",
    "evaluate_alerts",
    "list_alerts",
    "load_rules",
    "parse_rules",
    "snooze",
]
