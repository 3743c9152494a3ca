"""Errors of the alerts package."""

from __future__ import annotations

from sophia_lib.errors import ConfigError, SophiaError


class AlertError(SophiaError):
    """An alert operation failed."""

    reason = "alert"


class AlertRuleError(AlertError, ConfigError):
    """alerts.yaml is malformed, or a rule names an unknown metric, dimension or grain."""

    reason = "alert_rule"


class AlertNotFoundError(AlertError, KeyError):
    """No alert with that id."""

    reason = "alert_not_found"

    def __str__(self) -> str:  # KeyError would repr() the message
        return SophiaError.__str__(self)


class AlertEvaluationError(AlertError):
    """One or more rules could not be evaluated (the others were)."""

    reason = "alert_evaluation"
