"""Build the synthetic company from a seed: ``generate("medium", 42)``.

Deterministic: every part draws from its own PCG64 stream derived from the seed, times are measured from a
fixed ``now`` (default 2026-11-02 09:00 UTC), and ids come from those streams — never from the wall clock,
``uuid4``, ``hash()`` or set order. The tables and their columns follow ``sophia_lib.sandbox.company``.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from sophia_lib.sandbox.company import SCHEMA, Company
from sophia_lib.sandbox.gen import (
    accounts,
    deals,
    docs,
    finance,
    marketing,
    org,
    presence,
    slack,
    support,
    work,
)
from sophia_lib.sandbox.gen.sizes import check_seed, size_of
from sophia_lib.sandbox.gen.support import COLLAPSE_DAYS
from sophia_lib.sandbox.gen.util import DEFAULT_NOW, Timeline, canonical_ids, stream

__all__ = ["DEFAULT_NOW", "generate"]

OUTAGE_SYSTEMS = ["hubspot", "salesforce", "intercom", "netsuite", "gong"]


def generate(size: str = "small", seed: int = 42, now: pd.Timestamp | None = None) -> Company:
    """The company of ``size`` (small | medium | large) for ``seed``, as it stands at ``now``."""
    spec = size_of(size)
    seed = check_seed(seed)
    now = DEFAULT_NOW if now is None else pd.Timestamp(now)
    if now.tzinfo is None:
        now = now.tz_localize("UTC")
    now = now.tz_convert("UTC").as_unit("ns")
    tl = Timeline(now)

    emp = org.employees(stream(seed, "employees"), spec.employees, tl)
    acc, traits = accounts.accounts(stream(seed, "accounts"), spec, tl, emp)
    ppl = accounts.people(stream(seed, "people"), spec, tl, acc, traits)
    d = deals.build(stream(seed, "deals"), spec, tl, acc, traits, ppl, emp)
    opps = d.opportunities
    inv, lines = finance.invoices(stream(seed, "invoices"), spec, tl, acc, traits, opps)
    budgets = finance.budgets(stream(seed, "budgets"), tl, len(emp))
    conv = support.conversations(stream(seed, "support"), spec, tl, acc, traits, ppl, emp, d.collapse)
    touches = marketing.touchpoints(stream(seed, "touchpoints"), spec, tl, acc, traits, ppl, d.collapse)
    n_ext = max(2, spec.accounts // 100)
    chans = slack.channels(stream(seed, "channels"), tl, acc, n_ext)
    msgs = slack.messages(stream(seed, "messages"), spec, tl, chans, emp, acc)
    proj_raw, slip = work.projects(stream(seed, "projects"), spec, tl, emp)
    cyc = work.cycles(stream(seed, "cycles"), tl)
    proj, tasks, slip_anomalies, loads = work.tasks(stream(seed, "tasks"), spec, tl, proj_raw, slip, emp, cyc)
    dbs, pages = docs.notion(stream(seed, "notion"), spec, tl, emp, acc)
    looks = docs.looks(stream(seed, "looks"), tl)
    pres, link_labels, missing_ns = presence.build(
        stream(seed, "presence"), tl, acc, ppl, emp, opps, conv, d.activities, d.calls
    )
    # Accounts planted as missing in NetSuite were never invoiced there (billed through a reseller).
    drop_inv = inv["account_id"].isin(acc["account_id"].iloc[missing_ns])
    lines = lines[~lines["invoice_id"].isin(inv.loc[drop_inv, "invoice_id"])].reset_index(drop=True)
    inv = inv[~drop_inv].reset_index(drop=True)

    _lifecycle(ppl, acc, opps)
    tables = {
        "employees": emp,
        "accounts": acc,
        "people": ppl,
        "presence": pres,
        "opportunities": opps,
        "opportunity_history": d.history,
        "activities": d.activities,
        "calls": d.calls,
        "invoices": inv,
        "invoice_lines": lines,
        "budgets": budgets,
        "conversations": conv,
        "channels": chans,
        "messages": msgs,
        "projects": proj,
        "cycles": cyc,
        "tasks": tasks,
        "notion_databases": dbs,
        "pages": pages,
        "looks": looks,
        "touchpoints": touches,
    }
    _deletes(stream(seed, "deletes"), tl, tables)
    anomalies = d.anomalies + slip_anomalies + _collapse_anomalies(tl, acc, conv, touches, d.collapse)
    anomalies.append(_outage(stream(seed, "outage"), tl))
    tables["anomalies"] = _anomaly_frame(anomalies, tl)
    tables["labels"] = _label_frame([*d.labels, link_labels, loads, _collapse_labels(acc, d.collapse)], tl)
    company = Company(seed=seed, size=spec.name, now=now, tables={k: finalize(v) for k, v in tables.items()})
    company.tables = {name: company.tables[name] for name in SCHEMA}
    return company


def finalize(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns holding text become the ``str`` dtype (what parquet gives back); lists stay objects."""
    frame = frame.reset_index(drop=True)
    for col in frame.columns:
        if frame[col].dtype == object:
            sample = frame[col].dropna()
            if len(sample) and isinstance(sample.iloc[0], list):
                continue
            frame[col] = frame[col].astype("str")
    return frame


def _lifecycle(ppl: pd.DataFrame, acc: pd.DataFrame, opps: pd.DataFrame) -> None:
    status = ppl["account_id"].map(acc.set_index("account_id")["status"])
    open_accts = set(opps.loc[~opps["is_closed"], "account_id"])
    had = set(opps["account_id"])
    stage = ppl["lifecycle_stage"].to_numpy(dtype=object).copy()
    stage[ppl["account_id"].isin(had).to_numpy()] = "salesqualifiedlead"
    stage[ppl["account_id"].isin(open_accts).to_numpy()] = "opportunity"
    stage[(status == "customer").to_numpy()] = "customer"
    stage[(status == "churned").to_numpy()] = "other"
    ppl["lifecycle_stage"] = stage


DELETE_RATES = {
    "people": 0.02,
    "opportunities": 0.015,
    "tasks": 0.02,
    "messages": 0.007,
    "activities": 0.01,
    "pages": 0.01,
}


def _deletes(rng: np.random.Generator, tl: Timeline, tables: dict[str, pd.DataFrame]) -> None:
    """Soft-delete a few % of rows (the row stays; deleted_at and updated_at are set)."""
    h = tl.horizon
    for name, rate in DELETE_RATES.items():
        frame = tables[name]
        ok = np.ones(len(frame), dtype=bool)
        if name == "opportunities":  # only deals that never produced revenue
            ok = ~frame["is_won"].to_numpy() & (frame["type"] == "new_business").to_numpy()
        sel = np.flatnonzero(ok & (rng.random(len(frame)) < rate))
        upd = tl.days(frame["updated_at"].iloc[sel])
        when = upd + rng.random(len(sel)) * np.maximum(h - upd, 0.0)
        stamp = tl.ts(np.minimum(when + 1e-4, h - 1e-5))
        frame.loc[frame.index[sel], "deleted_at"] = stamp
        frame.loc[frame.index[sel], "updated_at"] = stamp
    # presence rows of deleted people vanish from the systems at the same moment
    ppl, pres = tables["people"], tables["presence"]
    gone = ppl.loc[ppl["deleted_at"].notna(), ["person_id", "deleted_at"]].set_index("person_id")[
        "deleted_at"
    ]
    mask = (pres["entity"] == "person") & pres["entity_id"].isin(gone.index)
    stamp = np.maximum(
        pres.loc[mask, "entity_id"].map(gone), pres.loc[mask, "created_at"] + pd.Timedelta(seconds=1)
    )
    stamp = np.minimum(stamp, tl.now - pd.Timedelta(seconds=1))
    pres.loc[mask, "deleted_at"] = stamp.to_numpy()
    pres.loc[mask, "updated_at"] = stamp.to_numpy()


def _collapse_anomalies(
    tl: Timeline, acc: pd.DataFrame, conv: pd.DataFrame, touches: pd.DataFrame, collapse: np.ndarray
) -> list[dict]:
    out = []
    for a in collapse:
        aid = acc["account_id"].iat[a]
        churn = acc["churned_at"].iat[a]
        start = churn - pd.Timedelta(days=COLLAPSE_DAYS)
        before = start - pd.Timedelta(days=COLLAPSE_DAYS)
        c = conv[conv["account_id"] == aid]
        in_w = c[(c["created_at"] >= start) & (c["created_at"] < churn)]
        prior = c[(c["created_at"] >= before) & (c["created_at"] < start)]
        t = touches[(touches["account_id"] == aid) & (touches["channel"] == "direct")]
        use_w = t[(t["occurred_at"] >= start) & (t["occurred_at"] < churn)]["page_views"].mean()
        use_b = t[(t["occurred_at"] >= before) & (t["occurred_at"] < start)]["page_views"].mean()
        detail = {
            "conversations_in_window": len(in_w),
            "conversations_prior_window": len(prior),
            "avg_csat_in_window": _r(in_w["csat_rating"].astype("float").mean()),
            "avg_csat_prior": _r(prior["csat_rating"].astype("float").mean()),
            "weekly_usage_in_window": _r(use_w),
            "weekly_usage_prior": _r(use_b),
            "churned_at": str(churn),
        }
        out.append(
            {
                "kind": "health_collapse",
                "entity": "account",
                "entity_id": aid,
                "system": None,
                "starts_at": start,
                "ends_at": churn,
                "detail": json.dumps(detail),
            }
        )
    return out


def _r(x: float) -> float | None:
    return None if pd.isna(x) else round(float(x), 2)


def _outage(rng: np.random.Generator, tl: Timeline) -> dict:
    system = OUTAGE_SYSTEMS[int(rng.integers(0, len(OUTAGE_SYSTEMS)))]
    start = tl.ts(tl.horizon - rng.uniform(3, 12))[0].floor("h")
    hours = int(rng.integers(3, 9))
    detail = {
        "effect": "API answers 503 for every request in the window; records changed then arrive late",
        "hours": hours,
    }
    return {
        "kind": "sync_outage",
        "entity": None,
        "entity_id": None,
        "system": system,
        "starts_at": start,
        "ends_at": start + pd.Timedelta(hours=hours),
        "detail": json.dumps(detail),
    }


def _anomaly_frame(rows: list[dict], tl: Timeline) -> pd.DataFrame:
    frame = pd.DataFrame(
        rows, columns=["kind", "entity", "entity_id", "system", "starts_at", "ends_at", "detail"]
    )
    frame["starts_at"] = pd.to_datetime(frame["starts_at"], utc=True).dt.as_unit("ns")
    frame["ends_at"] = pd.to_datetime(frame["ends_at"], utc=True).dt.as_unit("ns")
    frame.insert(0, "anomaly_id", canonical_ids("anm_", 1, len(frame)))
    frame["created_at"] = frame["updated_at"] = tl.now
    frame["deleted_at"] = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]")
    return frame


def _collapse_labels(acc: pd.DataFrame, collapse: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "entity": "account",
            "entity_id": acc["account_id"].to_numpy(dtype=object)[collapse],
            "label": "health_collapse",
            "value": "true",
        }
    )


def _label_frame(parts: list[pd.DataFrame], tl: Timeline) -> pd.DataFrame:
    frame = pd.concat(parts, ignore_index=True)
    frame["value"] = frame["value"].astype(str)
    frame["created_at"] = frame["updated_at"] = tl.now
    frame["deleted_at"] = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]")
    return frame
