"""Small hand-made marts (deals, pipeline snapshots) published to DuckDB and PostgreSQL, and a pandas
oracle that computes what each metric must return."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sophia_lib.metrics import MetricCatalog, load_catalog
from sophia_lib.warehouse import Warehouse, connect

ENGINE_METRICS = Path(__file__).with_name("engine_metrics.yaml")
GRAIN_FREQ = {"day": "D", "week": "W-SUN", "month": "M", "quarter": "Q", "year": "Y"}


def make_deals(seed: int = 7, n: int = 160) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    created = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 180 * 24, n), unit="h")
    stage = rng.choice(["won", "lost", "open"], n, p=[0.4, 0.35, 0.25])
    closed = created + pd.to_timedelta(rng.integers(3, 90, n), unit="D")
    region = rng.choice(["EMEA", "AMER", "APAC", None], n, p=[0.35, 0.35, 0.2, 0.1])
    return pd.DataFrame({
        "deal_id": [f"d{i:03d}" for i in range(n)],
        "created_at": created,
        "closed_at": pd.Series(closed).where(stage != "open"),
        "amount": rng.integers(1, 100, n) * 1000.0,
        "stage": stage,
        "region": pd.Series(region, dtype=object),
        "owner": rng.choice(["ann", "bob", "cyd", "dee", "eve"], n),
        "is_won": stage == "won",
        "is_closed": stage != "open",
    })


def make_pipeline(deals: pd.DataFrame) -> pd.DataFrame:
    """Open deals twice a week (Monday and Thursday), as a pipeline snapshot mart would hold them."""
    days = [d for d in pd.date_range("2024-01-01", "2024-05-31", freq="D").date if d.weekday() in (0, 3)]
    rows = []
    for day in days:
        at = pd.Timestamp(day, tz="UTC")
        open_ = deals[(deals.created_at <= at) & (deals.closed_at.isna() | (deals.closed_at > at))]
        if len(open_):  # (an empty first chunk trips pyarrow's CSV writer, used by the PostgreSQL backend)
            rows.append(pd.DataFrame({"snapshot_date": day, "stage": np.where(open_.amount > 50000, "late", "early"),
                                      "region": open_.region.values, "amount": open_.amount.values}))
    return pd.concat(rows, ignore_index=True)


def period(values: pd.Series, grain: str) -> pd.Series:
    """The period start (a date) of each timestamp or date, weeks starting on Monday."""
    ts = pd.to_datetime(values)
    if getattr(ts.dt, "tz", None) is not None:
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    return ts.dt.to_period(GRAIN_FREQ[grain]).dt.start_time.dt.date


def monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


@pytest.fixture(scope="session")
def deals() -> pd.DataFrame:
    return make_deals()


@pytest.fixture(scope="session")
def pipeline(deals: pd.DataFrame) -> pd.DataFrame:
    return make_pipeline(deals)


@pytest.fixture(scope="session")
def engine_catalog() -> MetricCatalog:
    return load_catalog(path=ENGINE_METRICS)


def _publish(wh: Warehouse, deals: pd.DataFrame, pipeline: pd.DataFrame) -> Warehouse:
    def build(b) -> None:
        b.write_table("marts", "deals", deals)
        b.write_table("marts", "pipeline_snapshots", pipeline)
    wh.publish(build)
    return wh


@pytest.fixture(scope="session")
def duckdb_wh(tmp_path_factory: pytest.TempPathFactory, deals: pd.DataFrame, pipeline: pd.DataFrame) -> Warehouse:
    return _publish(connect(f"duckdb:///{tmp_path_factory.mktemp('metrics') / 'warehouse'}"), deals, pipeline)


@pytest.fixture(scope="session")
def postgres_wh(postgres_base_url: str, deals: pd.DataFrame, pipeline: pd.DataFrame) -> Warehouse:
    from tests.support.servers import create_database

    return _publish(connect(create_database(postgres_base_url)), deals, pipeline)


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request: pytest.FixtureRequest) -> tuple[Warehouse, str]:
    """Each engine with the same marts, and the dialect to compile for."""
    return request.getfixturevalue(f"{request.param}_wh"), request.param
