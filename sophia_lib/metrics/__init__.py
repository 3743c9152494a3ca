"""The metric layer: metrics.yaml (dbt MetricFlow style) and a compiler from metric requests to SQL.

    catalog = load_catalog(config)                    # validated at load; cached until the file changes
    catalog.get("pipline")                            # MetricNotFoundError: … did you mean 'pipeline_value'?
    q = catalog.compile("pipeline_value", by=["stage"], grain="week", start="2025-01-01",
                        where={"region": "EMEA"}, dialect="duckdb")
    q.sql, q.params                                   # one statement, ':name' parameters

Nothing here opens a warehouse connection: the query door (``sophia_lib.query``) runs compiled
queries under the caller's policy. See docs/metrics.md for every metric.
"""

from __future__ import annotations

from sophia_lib.metrics.catalog import DEFAULT_PATH, MetricCatalog, load_catalog
from sophia_lib.metrics.compiler import CompiledQuery
from sophia_lib.metrics.errors import MetricDefinitionError, MetricError, MetricNotFoundError, MetricQueryError
from sophia_lib.metrics.spec import (
    GRAINS,
    CumulativeMetric,
    DerivedMetric,
    Metric,
    Model,
    RatioMetric,
    SimpleMetric,
)

__all__ = [
    "DEFAULT_PATH",
    "GRAINS",
    "CompiledQuery",
    "CumulativeMetric",
    "DerivedMetric",
    "Metric",
    "MetricCatalog",
    "MetricDefinitionError",
    "MetricError",
    "MetricNotFoundError",
    "MetricQueryError",
    "Model",
    "RatioMetric",
    "SimpleMetric",
    "load_catalog",
]
