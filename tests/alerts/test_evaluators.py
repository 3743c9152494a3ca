"""Metric evaluators on hand-made series: robust z-score with weekday seasonality, change with a volume
floor and per-dimension keys, threshold."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sophia_lib.alerts import parse_rules
from sophia_lib.alerts.evaluators import EvalContext, evaluate
from sophia_lib.alerts.stats import robust_z
from sophia_lib.appdb import open_app_db
from sophia_lib.config import SophiaConfig


class FrameSource:
    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    def metric(self, name: str, by: Sequence[str] | None = None, grain: str | None = None,
               start: date | None = None, end: date | None = None,
               where: str | Mapping[str, Any] | None = None) -> pd.DataFrame:
        rows = self.frame[(self.frame[grain] >= start) & (self.frame[grain] <= end)]
        return rows[[grain, *(by or []), name]]

    def table(self, name: str) -> pd.DataFrame:
        raise AssertionError


def _run(tmp_path: Path, rule: dict[str, Any], frame: pd.DataFrame, as_of: datetime) -> list:
    config = SophiaConfig(var_dir=tmp_path / "var")
    [parsed] = parse_rules({"rules": [rule]})
    db = open_app_db(config)
    try:
        return evaluate(parsed, EvalContext(config, as_of, as_of, FrameSource(frame), db))
    finally:
        db.close()


def _daily(values: dict[date, float]) -> pd.DataFrame:
    return pd.DataFrame({"day": list(values), "support_conversations": list(values.values())})


def test_robust_z_ignores_the_outliers_it_looks_for() -> None:
    history = [10, 11, 9, 10, 12, 10, 500, 9, 11]
    z, median, _ = robust_z(40, history)
    assert median == 10 and z > 10  # a standard deviation inflated by the 500 would hide this
    assert robust_z(10, [10, 10, 10])[0] == 0 and robust_z(11, [10, 10, 10])[0] == float("inf")
    assert abs(robust_z(12, [10, 10, 10, 10, 14])[0]) > 0  # MAD 0: mean absolute deviation stands in


def test_anomaly_with_weekday_seasonality(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    start = date(2026, 1, 5)  # a Monday
    values = {start + timedelta(days=i): float((100 if (start + timedelta(days=i)).weekday() == 0 else 10)
                                               + rng.integers(-2, 3)) for i in range(84)}
    monday = start + timedelta(days=84)
    values[monday] = 101.0  # an ordinary Monday
    as_of = datetime.combine(monday + timedelta(days=1), datetime.min.time(), UTC)
    seasonal = {"name": "surge", "kind": "anomaly", "metric": "support_conversations", "grain": "day",
                "lookback": 84, "z": 4}
    assert _run(tmp_path, {**seasonal, "seasonality": "weekday"}, _daily(values), as_of) == []
    [plain] = _run(tmp_path, seasonal, _daily(values), as_of)  # without seasonality every Monday looks odd
    assert "robust z" in plain.summary

    tuesday = monday + timedelta(days=1)
    values[tuesday] = 60.0
    as_of = as_of + timedelta(days=1)
    [hit] = _run(tmp_path, {**seasonal, "seasonality": "weekday"}, _daily(values), as_of)
    assert hit.details["history_points"] == 12 and hit.details["z"] > 4
    assert "unusual against the last 12 Tuesdays" in hit.summary
    assert _run(tmp_path, {**seasonal, "seasonality": "weekday", "direction": "down"}, _daily(values), as_of) == []


def test_change_per_dimension_with_volume_floor(tmp_path: Path) -> None:
    weeks = [date(2026, 6, 1) + timedelta(weeks=i) for i in range(3)]
    frame = pd.DataFrame({
        "week": weeks * 3,
        "region": ["EMEA"] * 3 + ["NA"] * 3 + ["APAC"] * 3,
        "pipeline_value": [1e6, 1e6, 0.8e6, 2e6, 2e6, 2.1e6, 1e4, 1e4, 2e3]})
    rule = {"name": "wow", "kind": "change", "metric": "pipeline_value", "grain": "week", "by": ["region"],
            "threshold_pct": 10, "min_volume": 100000}
    as_of = datetime(2026, 6, 22, 9, tzinfo=UTC)  # the week of 06-15 is the last complete one
    [hit] = _run(tmp_path, rule, frame, as_of)  # NA moved 5 %, APAC -80 % but under the floor
    assert hit.key == "region=EMEA" and hit.details["change_pct"] == -20.0
    assert hit.summary.startswith("pipeline_value [region=EMEA] fell 20.0 % to $800.0k in the week of 2026-06-15")
    assert _run(tmp_path, {**rule, "direction": "up"}, frame, as_of) == []
    missing_week = frame[frame["week"] != weeks[2]]  # no row at all for the last week: it counts as 0
    keys = {f.key for f in _run(tmp_path, rule, missing_week, as_of)}
    assert keys == {"region=EMEA", "region=NA"}


def test_threshold(tmp_path: Path) -> None:
    frame = pd.DataFrame({"month": [date(2026, 4, 1), date(2026, 5, 1)], "arr": [5e6, 4.2e6]})
    rule = {"name": "arr_low", "kind": "threshold", "metric": "arr", "grain": "month", "op": "<", "value": 4.5e6}
    [hit] = _run(tmp_path, rule, frame, datetime(2026, 6, 3, tzinfo=UTC))
    assert hit.summary == "arr is $4.2M in May 2026 (< $4.5M)"
    assert _run(tmp_path, rule, frame, datetime(2026, 5, 3, tzinfo=UTC)) == []
