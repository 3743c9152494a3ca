"""Errors of the metric layer: a bad definition in metrics.yaml, an unknown metric, a bad query."""

from __future__ import annotations

from sophia_lib.errors import ConfigError, SophiaError, TerminalError


class MetricError(SophiaError):
    """Base of the metric layer's errors."""

    reason = "metric"


class MetricDefinitionError(MetricError, ConfigError):
    """metrics.yaml is malformed or refers to something that does not exist."""

    reason = "metric_definition"


class MetricNotFoundError(MetricError, TerminalError, KeyError):
    """No metric of that name (the message suggests the closest names)."""

    reason = "metric_not_found"


class MetricQueryError(MetricError, TerminalError, ValueError):
    """A metric was asked for with a bad dimension, grain, time range or filter."""

    reason = "metric_query"
