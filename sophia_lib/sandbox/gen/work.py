"""Asana projects/tasks and Linear teams/cycles/issues, with slippage driven by team load.

A team's load is open work per active member; tasks of heavily loaded teams finish later relative to
their due dates. One Linear project is planted to slip badly (its due date moves and work piles up).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from sophia_lib.sandbox.gen import ids
from sophia_lib.sandbox.gen.org import ENGINEERING_TEAMS
from sophia_lib.sandbox.gen.sizes import Size
from sophia_lib.sandbox.gen.util import Timeline, canonical_ids, pick, stamp_frame

ASANA_TEAMS = {  # team → project name stems
    "Demand Gen": ["Q{q} Webinar Series", "Website Refresh", "Paid Social Test", "Nurture Revamp"],
    "Product Marketing": ["Launch: {f}", "Competitive Battlecards", "Customer Stories"],
    "CSM": ["Onboarding Playbook", "QBR Program", "Renewal Risk Review"],
    "Support": ["Help Center Overhaul", "Macros Cleanup"],
    "Finance": ["FY Close", "Audit Prep", "Billing System Migration"],
    "SDR": ["Outbound Sequence {q}", "Territory Planning"],
    "Product": ["Roadmap {y}", "Customer Advisory Board"],
}
LINEAR_STEMS = ["{f} v2", "Connector: {f}", "Performance: {f}", "Migrate {f}", "{f} GA", "Hardening: {f}"]
FEATURES = [
    "Dashboards",
    "Alerts",
    "Notebooks",
    "SSO",
    "Metrics Layer",
    "Scheduler",
    "Exports",
    "Audit Log",
    "Warehouse Sync",
    "Permissions",
    "Search",
    "Billing",
]
TASK_VERBS = [
    "Implement",
    "Fix",
    "Design",
    "Write tests for",
    "Refactor",
    "Document",
    "Review",
    "Investigate",
    "Plan",
    "Ship",
]
PRIORITIES = np.array(["none", "urgent", "high", "medium", "low"], dtype=object)


def _fill(stem: str, rng: np.random.Generator, day: float, tl: Timeline) -> str:
    t = tl.start + pd.Timedelta(days=day)
    return stem.format(q=f"Q{t.quarter} {t.year}", y=t.year, f=FEATURES[int(rng.integers(0, len(FEATURES)))])


def projects(
    rng: np.random.Generator, size: Size, tl: Timeline, emp: pd.DataFrame
) -> tuple[pd.DataFrame, dict]:
    h = tl.horizon
    scale = max(1, size.tasks // 5000)
    rows = []
    for system, teams in (("asana", ASANA_TEAMS), ("linear", {t: LINEAR_STEMS for t in ENGINEERING_TEAMS})):
        for team, stems in teams.items():
            members = np.flatnonzero((emp["team"] == team).to_numpy())
            k = 1 + int(rng.poisson(1.2 * scale if system == "asana" else 2.5 * scale))
            for _ in range(k):
                start = float(rng.uniform(-30, h - 20))
                length = float(rng.uniform(30, 150))
                owner = members[int(rng.integers(0, len(members)))] if len(members) else 0
                rows.append(
                    (
                        system,
                        team,
                        _fill(stems[int(rng.integers(0, len(stems)))], rng, start, tl),
                        emp["employee_id"].iat[owner],
                        start,
                        start + length,
                    )
                )
    frame = pd.DataFrame(rows, columns=["system", "team", "name", "owner_id", "start", "due"])
    frame = frame.sort_values(["start", "system", "team"], kind="stable", ignore_index=True)
    n = len(frame)
    sys_id = np.empty(n, dtype=object)
    asana = (frame["system"] == "asana").to_numpy()
    sys_id[asana] = ids.numeric(rng, int(asana.sum()), 1_204_000_000_000_000, 10**9)
    sys_id[~asana] = ids.uuids(rng, int((~asana).sum()))
    frame["project_id"] = canonical_ids("prj_", 1, n)
    frame["system_id"] = sys_id
    # planted slip: a Linear project that missed its due date in the last weeks and was pushed 5 weeks out
    due = frame["due"].to_numpy()
    live = np.flatnonzero(~asana & (due > h - 30) & (due < h - 3) & (frame["start"].to_numpy() < h - 60))
    live = live if len(live) else np.flatnonzero(~asana & (due > h - 90) & (due < h - 3))
    slip_pos = int(live[int(rng.integers(0, len(live)))]) if len(live) else int(np.flatnonzero(~asana)[-1])
    original_due = float(frame.at[slip_pos, "due"])
    frame.loc[slip_pos, "due"] = original_due + 35.0
    slip = {"pos": slip_pos, "original_due": original_due, "new_due": original_due + 35.0}
    return frame, slip


def cycles(rng: np.random.Generator, tl: Timeline) -> pd.DataFrame:
    """Two-week Linear cycles per engineering team from the start of history to four weeks ahead."""
    monday = float((7 - tl.start.weekday()) % 7)
    n_per = int((tl.horizon + 28 - monday) // 14)
    team = np.repeat(np.array(list(ENGINEERING_TEAMS), dtype=object), n_per)
    number = np.tile(np.arange(1, n_per + 1), len(ENGINEERING_TEAMS))
    starts = monday + 14.0 * (number - 1)
    n = len(team)
    frame = pd.DataFrame(
        {
            "cycle_id": canonical_ids("cyc_", 1, n),
            "system_id": ids.uuids(rng, n),
            "team": team,
            "number": number,
            "starts_at": tl.ts(starts),
            "ends_at": tl.ts(starts + 14),
        }
    )
    return stamp_frame(frame, tl.ts(np.minimum(starts - 7, tl.horizon - 1)))


def tasks(
    rng: np.random.Generator,
    size: Size,
    tl: Timeline,
    proj: pd.DataFrame,
    slip: dict,
    emp: pd.DataFrame,
    cyc: pd.DataFrame,
) -> tuple[pd.DataFrame, pd.DataFrame, list[dict], pd.DataFrame]:
    h = tl.horizon
    p_start, p_due = proj["start"].to_numpy(), proj["due"].to_numpy()
    span = np.maximum(np.minimum(p_due, h) - np.maximum(p_start, 0), 1.0)
    weight = span * np.where(proj["system"].to_numpy() == "linear", 1.8, 1.0)
    weight[slip["pos"]] *= 2.5  # the slipping project is overloaded
    counts = rng.multinomial(size.tasks, weight / weight.sum())
    p = np.repeat(np.arange(len(proj)), counts)
    n = len(p)
    created = np.maximum(p_start[p], 0) + rng.random(n) * span[p]
    created = np.minimum(created, h - 0.01)
    team = proj["team"].to_numpy(dtype=object)[p]
    team_members = {
        t: np.flatnonzero((emp["team"] == t).to_numpy() & emp["is_active"].to_numpy())
        for t in np.unique(team)
    }
    load = {t: counts[proj["team"].to_numpy() == t].sum() / max(len(m), 1) for t, m in team_members.items()}
    mean_load = float(np.mean(list(load.values())))
    team_load = np.array([load[t] / mean_load for t in team])
    assignee = np.empty(n, dtype=object)
    for t, members in team_members.items():
        sel = team == t
        pool = members if len(members) else np.arange(len(emp))
        assignee[sel] = emp["employee_id"].to_numpy(dtype=object)[
            pool[rng.integers(0, len(pool), int(sel.sum()))]
        ]
    in_slip = p == slip["pos"]
    due = created + rng.uniform(5, 30, n)
    start_delay = rng.exponential(3 * team_load)
    started = created + start_delay
    work = rng.lognormal(np.log(4 * team_load), 0.6) * np.where(in_slip, 3.0, 1.0)
    completed = started + work
    canceled = rng.random(n) < 0.05
    state = np.where(completed <= h, "done", np.where(started <= h, "in_progress", "todo"))
    state = np.where(canceled & (state != "todo"), "canceled", state)
    started = np.where(started <= h, started, np.nan)
    completed = np.where(np.isin(state, ["done", "canceled"]), np.minimum(completed, h - 1e-4), np.nan)
    linear = proj["system"].to_numpy()[p] == "linear"
    order = np.argsort(created, kind="stable")
    p, created, team, assignee, due, started, completed, state, linear, in_slip = (
        x[order] for x in (p, created, team, assignee, due, started, completed, state, linear, in_slip)
    )
    sys_id = np.empty(n, dtype=object)
    sys_id[~linear] = ids.numeric(rng, int((~linear).sum()), 1_205_000_000_000_000, 10**8)
    sys_id[linear] = ids.uuids(rng, int(linear.sum()))
    # Linear cycle: the cycle in which work started (or was created)
    cyc_idx = np.full(n, -1)
    anchor = np.where(np.isnan(started), created, started)
    for t in ENGINEERING_TEAMS:
        sel = np.flatnonzero(linear & (team == t))
        ct = cyc[cyc["team"] == t]
        starts = tl.days(ct["starts_at"])
        k = np.searchsorted(starts, anchor[sel], side="right") - 1
        cyc_idx[sel] = np.where(k >= 0, ct.index.to_numpy()[np.maximum(k, 0)], -1)
    cycle_id = np.where(cyc_idx >= 0, cyc["cycle_id"].to_numpy(dtype=object)[np.maximum(cyc_idx, 0)], None)
    identifier = np.full(n, None, dtype=object)
    for t, key in ENGINEERING_TEAMS.items():
        sel = np.flatnonzero(linear & (team == t))
        identifier[sel] = np.char.add(f"{key}-", np.arange(1, len(sel) + 1).astype(str))
    verb = pick(rng, TASK_VERBS, n)
    feat = pick(rng, FEATURES, n)
    updated = np.fmax(np.fmax(created, np.nan_to_num(started, nan=-1e9)), np.nan_to_num(completed, nan=-1e9))
    frame = pd.DataFrame(
        {
            "task_id": canonical_ids("tsk_", 1, n),
            "system": np.where(linear, "linear", "asana"),
            "system_id": sys_id,
            "project_id": proj["project_id"].to_numpy(dtype=object)[p],
            "cycle_id": pd.array(np.where(linear, cycle_id, None), dtype="str"),
            "title": verb + " " + feat,
            "assignee_id": assignee,
            "state": state,
            "priority": PRIORITIES[rng.choice(5, size=n, p=[0.2, 0.05, 0.2, 0.35, 0.2])],
            "estimate": pd.array(np.where(linear, rng.choice([1, 2, 3, 5, 8], size=n), 0), dtype="Int64"),
            "started_at": tl.ts(started),
            "completed_at": tl.ts(completed),
            "due_on": tl.day(due),
            "identifier": pd.array(identifier, dtype="str"),
            "team": team,
        }
    )
    frame["estimate"] = frame["estimate"].where(linear, pd.NA)
    frame = stamp_frame(frame, tl.ts(created), tl.ts(updated))

    # Project status and progress from their tasks.
    done = pd.Series(state == "done").groupby(p).mean().reindex(range(len(proj)), fill_value=0.0).to_numpy()
    late_open = pd.Series((due < h) & np.isin(state, ["todo", "in_progress"])).groupby(p).mean()
    late_open = late_open.reindex(range(len(proj)), fill_value=0.0).to_numpy()
    finished = (p_due < h) & (done > 0.9)
    status = np.where(
        finished,
        "completed",
        np.where(late_open > 0.3, "off_track", np.where(late_open > 0.1, "at_risk", "on_track")),
    )
    status[slip["pos"]] = "off_track"
    out = pd.DataFrame(
        {
            "project_id": proj["project_id"],
            "system": proj["system"],
            "system_id": proj["system_id"],
            "name": proj["name"],
            "team": proj["team"],
            "owner_id": proj["owner_id"],
            "start_on": tl.day(np.maximum(p_start, -30)),
            "due_on": tl.day(p_due),
            "status": status,
            "progress": np.round(done, 3),
        }
    )
    out = stamp_frame(
        out, tl.ts(np.minimum(p_start, h - 1)), tl.ts(np.minimum(np.maximum(p_start, h - 3), h - 0.5))
    )
    sp = slip["pos"]
    anomalies = [
        {
            "kind": "project_slip",
            "entity": "project",
            "entity_id": out.at[sp, "project_id"],
            "system": "linear",
            "starts_at": tl.ts(slip["original_due"])[0],
            "ends_at": tl.ts(slip["new_due"])[0],
            "detail": json.dumps(
                {
                    "original_due_on": str(tl.day(slip["original_due"])[0].date()),
                    "new_due_on": str(tl.day(slip["new_due"])[0].date()),
                    "team": out.at[sp, "team"],
                    "cause": "team overloaded",
                }
            ),
        }
    ]
    loads = pd.DataFrame(
        {
            "entity": "team",
            "entity_id": list(load),
            "label": "load_per_member",
            "value": [f"{v:.2f}" for v in load.values()],
        }
    )
    return out, frame, anomalies, loads
