"""The shipped metrics.yaml matches the marts the transforms publish: every metric compiles (DuckDB and
PostgreSQL SQL) and runs against a snapshot built from the synced small sandbox, and key metrics
agree with the sandbox's ground truth."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sophia_lib.metrics import load_catalog
from sophia_lib.metrics.catalog import render_markdown

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sandbox_wh(synced_sandbox, tmp_path_factory):
    import sophia_lib.transforms  # noqa: F401 - registers the transforms builder
    from sophia_lib.warehouse import build_all, open_warehouse

    wh = open_warehouse(synced_sandbox.copy_to(tmp_path_factory.mktemp("metrics-sandbox") / "var"))
    wh.publish(build_all)
    return wh


def test_every_shipped_metric_compiles_and_runs(sandbox_wh) -> None:
    empty = []
    with sandbox_wh.reader() as r:
        catalog = load_catalog(reader=r)  # models checked against the snapshot's tables and columns
        for metric in catalog:
            load_catalog().compile(metric.name, dialect="postgres")
            for grain in {metric.default_grain, metric.grains[-1]}:
                dims = catalog.dimensions(metric.name)[:1]
                q = catalog.compile(metric.name, grain=grain, by=dims)
                frame = r.query(q.sql, q.params).to_pandas()
                assert list(frame.columns) == list(q.output_columns)
                if frame.empty:
                    empty.append(f"{metric.name}@{grain}")
    assert len(catalog) >= 50
    assert not empty, f"metrics with no rows on the sandbox: {empty}"


def _truth_opps(company) -> pd.DataFrame:
    opps = company.tables["opportunities"]
    opps = opps[opps.deleted_at.isna()].copy()  # deleted in Salesforce: gone from raw and marts
    opps["quarter"] = pd.to_datetime(opps.close_date).dt.to_period("Q").dt.start_time.dt.date
    return opps


def test_bookings_per_quarter_match_the_ground_truth(sandbox_wh, synced_sandbox) -> None:
    opps = _truth_opps(synced_sandbox.company)
    truth = opps[opps.is_won.astype(bool)].groupby("quarter").amount.sum()
    q = load_catalog().compile("bookings", grain="quarter")
    with sandbox_wh.reader() as r:
        got = r.query(q.sql, q.params).to_pandas()
    got = got.set_index(pd.to_datetime(got.quarter).dt.date).bookings
    pd.testing.assert_series_equal(got.sort_index(), truth.sort_index().astype(float), check_names=False,
                                   check_index_type=False, rtol=1e-9)


def test_win_rate_per_quarter_matches_the_ground_truth(sandbox_wh, synced_sandbox) -> None:
    opps = _truth_opps(synced_sandbox.company)
    closed = opps[opps.is_closed.astype(bool)]
    truth = closed.groupby("quarter").is_won.mean()
    q = load_catalog().compile("win_rate", grain="quarter")
    with sandbox_wh.reader() as r:
        got = r.query(q.sql, q.params).to_pandas()
    got = got.set_index(pd.to_datetime(got.quarter).dt.date).win_rate
    pd.testing.assert_series_equal(got.sort_index(), truth.sort_index().astype(float), check_names=False,
                                   check_index_type=False, rtol=1e-9)


def test_docs_metrics_is_generated_from_metrics_yaml() -> None:
    assert (ROOT / "docs" / "metrics.md").read_text() == render_markdown(), (
        "docs/metrics.md is stale: run `python -m sophia_lib.metrics.catalog > docs/metrics.md`")


def test_cli_lists_and_shows(tmp_path) -> None:
    from typer.testing import CliRunner

    from sophia_lib.cli import cli

    runner = CliRunner()
    listed = runner.invoke(cli, ["metrics", "list"])
    assert listed.exit_code == 0 and "pipeline_value" in listed.output and "currency" in listed.output
    shown = runner.invoke(cli, ["metrics", "show", "win_rate", "--sql", "--by", "region", "--grain", "quarter"])
    assert shown.exit_code == 0, shown.output
    assert "deals_won / deals_closed" in shown.output and 'DATE_TRUNC(\'QUARTER\'' in shown.output
    missing = runner.invoke(cli, ["metrics", "show", "pipline"])
    assert missing.exit_code != 0 and "did you mean 'pipeline_value'" in str(missing.exception)
