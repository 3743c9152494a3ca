"""Customer health score and retention cohorts, checked against the sandbox's churn labels and planted health
collapses: accounts that churned or collapsed must score clearly lower, and scores taken in the two months
before a churn must rank churners below the others (AUC printed)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from sophia_lib.sandbox.store import truth
from sophia_lib.transforms.marts_customers import WEIGHTS
from tests.transforms.test_finance import Built, built_at_company_now, entity_of


@pytest.fixture(scope="module")
def built(transformed: Any) -> Built:
    return built_at_company_now(transformed)


def auc(positive: pd.Series, negative: pd.Series) -> float:
    """P(a random positive scores above a random negative), ties counting half (Mann–Whitney U)."""
    scores = pd.concat([positive, negative], ignore_index=True).rank()
    n1, n0 = len(positive), len(negative)
    return float((scores[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def labelled(built: Built, frame: pd.DataFrame) -> pd.DataFrame:
    ctx, company = built
    labels = truth(company)["churn_labels"].set_index("account_id")
    anomalies = company.tables["anomalies"]
    collapsed = set(anomalies.loc[anomalies["kind"] == "health_collapse", "entity_id"])
    out = frame.assign(entity=entity_of(ctx, company, frame["account_key"]))
    out["churned"] = out["entity"].map(labels["churned"]).eq("true")
    out["collapsed"] = out["entity"].isin(collapsed)
    out["churned_at"] = out["entity"].map(labels["churned_at"]).dt.tz_localize(None)
    return out


def test_health_score_shape(built: Built) -> None:
    ctx, _ = built
    health = ctx.table("marts.customer_health")
    assert health["account_key"].is_unique and len(health) > 10
    assert health["health_score"].between(0, 100).all()
    parts = sum(w * health[f"{name}_score"] for name, w in WEIGHTS.items())
    assert np.allclose(parts, health["health_score"], atol=0.1)
    assert set(health["band"]) <= {"healthy", "watch", "at risk"}
    assert (health.loc[health["health_score"] >= 70, "band"] == "healthy").all()
    assert (health.loc[health["health_score"] < 45, "band"] == "at risk").all()
    both = health["health_score_30d_ago"].notna()
    assert np.allclose(health.loc[both, "health_change_30d"],
                       health.loc[both, "health_score"] - health.loc[both, "health_score_30d_ago"], atol=0.11)


def test_churned_and_collapsing_accounts_score_lower(built: Built) -> None:
    health = labelled(built, built.ctx.table("marts.customer_health"))
    bad = health["churned"] | health["collapsed"]
    assert bad.sum() >= 2 and (~bad).sum() >= 10
    gap = health.loc[~bad, "health_score"].mean() - health.loc[bad, "health_score"].mean()
    score_auc = auc(health.loc[~bad, "health_score"], health.loc[bad, "health_score"])
    print(f"health now: churned/collapsed mean {health.loc[bad, 'health_score'].mean():.1f} vs rest "
          f"{health.loc[~bad, 'health_score'].mean():.1f}, AUC {score_auc:.3f}")
    assert gap >= 20 and score_auc >= 0.9
    assert (health.loc[bad, "band"] != "healthy").all()


def test_scores_fall_before_churn(built: Built) -> None:
    history = labelled(built, built.ctx.table("marts.customer_health_history"))
    window = (history["scored_at"] < history["churned_at"]) & (
        history["scored_at"] >= history["churned_at"] - pd.Timedelta(days=60))
    before = history[history["churned"] & window]
    peers = history[~history["churned"] & ~history["is_churned"] & history["scored_at"].isin(before["scored_at"])]
    assert len(before) >= 3 and len(peers) >= 10
    early_auc = auc(peers["health_score"], before["health_score"])
    print(f"health in the 60 days before churn: churners {before['health_score'].mean():.1f} vs active peers "
          f"{peers['health_score'].mean():.1f} at the same month ends, AUC {early_auc:.3f}")
    assert early_auc >= 0.65
    last_before = before[before["collapsed"]].sort_values("scored_at").drop_duplicates("account_key", keep="last")
    assert len(last_before) > 0 and (last_before["health_score"] < 60).all(), last_before["health_score"]


def test_retention_cohorts_from_revenue(built: Built) -> None:
    ctx, _ = built
    cohorts, rev = ctx.table("marts.retention_cohorts"), ctx.table("core.revenue")
    start = cohorts[cohorts["months_since_start"] == 0]
    assert (start["active_customers"] == start["cohort_customers"]).all()
    assert start["cohort_customers"].sum() == rev.loc[rev["is_active"], "account_key"].nunique()
    assert cohorts["logo_retention"].between(0, 1).all()
    assert np.allclose(start["net_revenue_retention"], 1.0)
    by_cohort = cohorts.groupby(["cohort_month", "segment"])["cohort_customers"].nunique()
    assert (by_cohort == 1).all()
