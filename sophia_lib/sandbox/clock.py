"""Move the company forward in time: ``advance(company, minutes)`` → the creates, updates and deletes
that happened in ``(now, now + minutes]``, applied to ``company`` in place.

Rates come from the company's own recent history (last 30 days), so a medium company changes about as
fast as it grew. Everything is drawn from a stream keyed by (seed, current now, minutes): the same company
advanced the same way always yields the same changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sophia_lib.sandbox.company import Company
from sophia_lib.sandbox.gen import ids
from sophia_lib.sandbox.gen.deals import FORECAST, PROBABILITY, STAGES
from sophia_lib.sandbox.gen.slack import to_ts
from sophia_lib.sandbox.gen.util import stream

PRIMARY_KEY = {
    "employees": "employee_id",
    "accounts": "account_id",
    "people": "person_id",
    "presence": "system_id",
    "opportunities": "opportunity_id",
    "opportunity_history": "history_id",
    "activities": "activity_id",
    "calls": "call_id",
    "invoices": "invoice_id",
    "invoice_lines": "line_id",
    "budgets": "budget_id",
    "conversations": "conversation_id",
    "channels": "channel_id",
    "messages": "message_id",
    "projects": "project_id",
    "cycles": "cycle_id",
    "tasks": "task_id",
    "notion_databases": "database_id",
    "pages": "page_id",
    "looks": "look_id",
    "touchpoints": "touch_id",
    "anomalies": "anomaly_id",
}
KINDS = ("create", "update", "delete")
RATE_WINDOW_DAYS = 30


@dataclass
class ChangeSet:
    """What changed in one ``advance``: primary keys per table and kind (create | update | delete)."""

    start: pd.Timestamp
    end: pd.Timestamp
    changes: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def add(self, table: str, kind: str, keys: list[str] | np.ndarray | pd.Series) -> None:
        bucket = self.changes.setdefault(table, {k: [] for k in KINDS})[kind]
        bucket.extend(str(k) for k in keys)

    def counts(self) -> dict[str, dict[str, int]]:
        return {t: {k: len(v) for k, v in kinds.items()} for t, kinds in sorted(self.changes.items())}

    def summary(self) -> pd.DataFrame:
        """One row per (table, kind) with a non-zero count."""
        rows = [(t, k, n) for t, kinds in self.counts().items() for k, n in kinds.items() if n]
        return pd.DataFrame(rows, columns=["table", "kind", "count"])

    @property
    def total(self) -> int:
        return sum(n for kinds in self.counts().values() for n in kinds.values())


class _Window:
    def __init__(self, rng: np.random.Generator, start: pd.Timestamp, minutes: int) -> None:
        self.rng, self.start, self.minutes = rng, start, minutes
        self.end = start + pd.Timedelta(minutes=minutes)

    def times(self, n: int) -> pd.DatetimeIndex:
        """n sorted instants in (start, end], to the second."""
        secs = np.sort(self.rng.integers(1, self.minutes * 60 + 1, n))
        return pd.DatetimeIndex(self.start.value + secs * 10**9, tz="UTC").as_unit("ns")

    def count(self, frame: pd.DataFrame, column: str = "created_at", scale: float = 1.0) -> int:
        """Poisson draw at the table's recent rate per minute."""
        since = self.start - pd.Timedelta(days=RATE_WINDOW_DAYS)
        recent = int((frame[column] > since).sum())
        rate = recent / (RATE_WINDOW_DAYS * 1440.0)
        return int(self.rng.poisson(rate * self.minutes * scale))


def _next_canonical(frame: pd.DataFrame, column: str, n: int) -> np.ndarray:
    last = frame[column].max() if len(frame) else None
    prefix, num = (last.rsplit("_", 1)[0] + "_", int(last.rsplit("_", 1)[1])) if last else ("x_", 0)
    return np.char.add(prefix, np.char.zfill(np.arange(num + 1, num + 1 + n).astype(str), 7)).astype(object)


def _next_numeric(rng: np.random.Generator, series: pd.Series, n: int, step: int) -> np.ndarray:
    start = int(series.astype("int64").max()) if len(series) else 1000
    return ids.numeric(rng, n, start, step)


def _next_salesforce(rng: np.random.Generator, series: pd.Series, kind: str, n: int) -> np.ndarray:
    start = ids.salesforce_number(series.max()) if len(series) else 1_000_000
    return ids.salesforce(kind, ids.sequence(rng, n, start, 2_000))


def _append(company: Company, table: str, rows: dict, changes: ChangeSet) -> pd.DataFrame:
    frame = company.tables[table]
    n = len(next(iter(rows.values())))
    if n == 0:
        return frame.iloc[:0]
    new = pd.DataFrame({c: rows.get(c, pd.Series([None] * n, dtype=object)) for c in frame.columns})
    if "deleted_at" not in rows:
        new["deleted_at"] = pd.Series(pd.NaT, index=new.index, dtype="datetime64[ns, UTC]")
    if "updated_at" not in rows:
        new["updated_at"] = new["created_at"]
    for col, dtype in frame.dtypes.items():
        if dtype is not np.dtype(object):
            new[col] = new[col].astype(dtype)
    company.tables[table] = pd.concat([frame, new], ignore_index=True)
    changes.add(table, "create", new[PRIMARY_KEY[table]])
    return new


def _touch(
    company: Company,
    table: str,
    idx: np.ndarray,
    when: pd.DatetimeIndex,
    changes: ChangeSet,
    values: dict | None = None,
    delete: bool = False,
) -> None:
    if len(idx) == 0:
        return
    frame = company.tables[table]
    for col, val in (values or {}).items():
        frame.loc[idx, col] = val
    frame.loc[idx, "updated_at"] = when
    if delete:
        frame.loc[idx, "deleted_at"] = when
    changes.add(table, "delete" if delete else "update", frame.loc[idx, PRIMARY_KEY[table]])


def advance(company: Company, minutes: int) -> ChangeSet:
    """Advance ``company.now`` by ``minutes`` and apply (and return) that period's changes."""
    if not isinstance(minutes, int) or isinstance(minutes, bool) or minutes <= 0:
        from sophia_lib.errors import ConfigError

        raise ConfigError(
            f"minutes must be a positive whole number, got {minutes!r}.", fix="pass e.g. --minutes 15"
        )
    start = pd.Timestamp(company.now).tz_convert("UTC")
    rng = stream(company.seed, f"advance:{start.value}:{minutes}")
    w = _Window(rng, start, minutes)
    changes = ChangeSet(start=start, end=w.end)
    for step in (
        _messages,
        _conversations,
        _opportunities,
        _activities,
        _calls,
        _tasks,
        _pages,
        _people,
        _touchpoints,
        _invoices,
    ):
        step(company, w, changes)
    company.now = w.end
    return changes


def _active_employees(company: Company, teams: list[str] | None = None) -> np.ndarray:
    emp = company.tables["employees"]
    mask = emp["is_active"].to_numpy().copy()
    if teams:
        mask &= emp["team"].isin(teams).to_numpy()
    return emp["employee_id"].to_numpy(dtype=object)[mask]


def _messages(company: Company, w: _Window, changes: ChangeSet) -> None:
    rng = w.rng
    msgs = company.tables["messages"]
    chans = company.tables["channels"]
    live = chans[~chans["is_archived"] & chans["deleted_at"].isna()]
    n = w.count(msgs)
    if n:
        recent = msgs[msgs["created_at"] > w.start - pd.Timedelta(days=RATE_WINDOW_DAYS)]
        weights = (
            recent["channel_id"].value_counts().reindex(live["channel_id"], fill_value=0).to_numpy() + 1.0
        )
        chan = live["channel_id"].to_numpy(dtype=object)[
            rng.choice(len(live), size=n, p=weights / weights.sum())
        ]
        when = w.times(n)
        people = _active_employees(company)
        who = people[rng.integers(0, len(people), n)]
        t_us = when.asi8 // 1000 + rng.integers(0, 1_000_000, n)
        # strictly after the channel's latest message, strictly increasing within a channel
        last = msgs.groupby("channel_id")["created_at"].max()
        order = np.lexsort((t_us, chan))
        chan, t_us, who = chan[order], t_us[order], who[order]
        for c in np.unique(chan):
            sel = np.flatnonzero(chan == c)
            floor = last.get(c, pd.NaT)
            lo = (floor.value // 1000 + 1) if not pd.isna(floor) else 0
            vals = np.maximum(t_us[sel], lo)
            t_us[sel] = np.maximum.accumulate(vals - np.arange(len(sel))) + np.arange(len(sel))
        when = pd.DatetimeIndex(t_us * 1000, tz="UTC").as_unit("ns")
        ts = to_ts(t_us)
        # a third reply to the channel's latest top-level message
        reply = rng.random(n) < 0.33
        thread = np.full(n, None, dtype=object)
        parent_rows = []
        tops = msgs[msgs["thread_ts"].isna() | (msgs["thread_ts"] == msgs["ts"])]
        last_top = tops.drop_duplicates("channel_id", keep="last").set_index("channel_id")
        for i in np.flatnonzero(reply):
            if chan[i] in last_top.index:
                thread[i] = last_top.at[chan[i], "ts"]
                parent_rows.append(
                    int(msgs.index[(msgs["channel_id"] == chan[i]) & (msgs["ts"] == thread[i])][0])
                )
            else:
                reply[i] = False
        new = _append(
            company,
            "messages",
            {
                "message_id": _next_canonical(msgs, "message_id", n),
                "channel_id": chan,
                "employee_id": who,
                "ts": ts,
                "thread_ts": thread,
                "text": np.where(reply, "Following up on this", "New update"),
                "reply_count": np.zeros(n, dtype="int64"),
                "mentions_account_id": np.full(n, None, dtype=object),
                "created_at": when,
            },
            changes,
        )
        if parent_rows:
            msgs = company.tables["messages"]
            counts = pd.Series(parent_rows).value_counts()
            idx = counts.index.to_numpy()
            reply_when = new.loc[reply, "created_at"].max()
            msgs.loc[idx, "reply_count"] = msgs.loc[idx, "reply_count"].to_numpy() + counts.to_numpy()
            msgs.loc[idx, "thread_ts"] = msgs.loc[idx, "ts"]
            _touch(company, "messages", idx, pd.DatetimeIndex([reply_when] * len(idx)), changes)
    msgs = company.tables["messages"]
    live_msgs = np.flatnonzero(
        msgs["deleted_at"].isna().to_numpy() & (msgs["created_at"] <= w.start).to_numpy()
    )
    tail = live_msgs[-2000:]
    k_edit = int(rng.poisson(n * 0.04 + 0.05))
    k_del = int(rng.poisson(n * 0.01 + 0.02))
    pick_ = rng.choice(tail, size=min(k_edit + k_del, len(tail)), replace=False) if len(tail) else tail
    edit, gone = np.sort(pick_[:k_edit]), np.sort(pick_[k_edit:])
    _touch(
        company,
        "messages",
        msgs.index[edit],
        w.times(len(edit)),
        changes,
        {"text": (msgs.loc[msgs.index[edit], "text"] + " (edited)").to_numpy()},
    )
    _touch(company, "messages", msgs.index[gone], w.times(len(gone)), changes, delete=True)


def _conversations(company: Company, w: _Window, changes: ChangeSet) -> None:
    rng = w.rng
    conv = company.tables["conversations"]
    n = w.count(conv)
    if n:
        recent = conv[conv["created_at"] > w.start - pd.Timedelta(days=90)]
        src = (
            recent.iloc[rng.integers(0, len(recent), n)]
            if len(recent)
            else conv.iloc[rng.integers(0, len(conv), n)]
        )
        support = _active_employees(company, ["Support"])
        when = w.times(n)
        _append(
            company,
            "conversations",
            {
                "conversation_id": _next_canonical(conv, "conversation_id", n),
                "system_id": _next_numeric(rng, conv["system_id"], n, 50_000),
                "person_id": src["person_id"].to_numpy(),
                "account_id": src["account_id"].to_numpy(),
                "assignee_id": support[rng.integers(0, len(support), n)],
                "title": src["title"].to_numpy(),
                "state": np.full(n, "open", dtype=object),
                "priority": src["priority"].to_numpy(),
                "csat_rating": pd.array([pd.NA] * n, dtype="Int64"),
                "first_response_s": pd.array([pd.NA] * n, dtype="Int64"),
                "closed_at": pd.DatetimeIndex([pd.NaT] * n, tz="UTC"),
                "tags": pd.Series([["how-to"]] * n, dtype=object),
                "created_at": when,
            },
            changes,
        )
        conv = company.tables["conversations"]
    open_idx = np.flatnonzero(
        (conv["state"] != "closed").to_numpy()
        & conv["deleted_at"].isna().to_numpy()
        & (conv["created_at"] <= w.start).to_numpy()
    )
    k = min(len(open_idx), int(rng.poisson(len(open_idx) * w.minutes / (1.5 * 1440) + 0.01)))
    if k:
        sel = np.sort(rng.choice(open_idx, size=k, replace=False))
        when = w.times(k)
        rated = rng.random(k) < 0.45
        csat = pd.array(np.where(rated, rng.integers(3, 6, k), 0), dtype="Int64")
        csat[~rated] = pd.NA
        idx = conv.index[sel]
        conv.loc[idx, "csat_rating"] = csat
        first = conv.loc[idx, "first_response_s"]
        conv.loc[idx, "first_response_s"] = first.fillna(600)
        _touch(company, "conversations", idx, when, changes, {"state": "closed", "closed_at": when})


def _opportunities(company: Company, w: _Window, changes: ChangeSet) -> None:
    rng = w.rng
    opps = company.tables["opportunities"]
    hist = company.tables["opportunity_history"]
    open_idx = np.flatnonzero(~opps["is_closed"].to_numpy() & opps["deleted_at"].isna().to_numpy())
    k = min(len(open_idx), int(rng.poisson(len(open_idx) * w.minutes / (10 * 1440))))
    rows = []
    if k:
        sel = np.sort(rng.choice(open_idx, size=k, replace=False))
        when = w.times(k)
        stage_idx = pd.Index(STAGES).get_indexer(opps["stage"].iloc[sel])
        labels = company.tables["labels"]
        pw = labels[labels["label"] == "win_probability"].set_index("entity_id")["value"].astype(float)
        p_win = pw.reindex(opps["opportunity_id"].iloc[sel]).fillna(0.3).to_numpy()
        lose = rng.random(k) < 0.12
        nxt = np.where(lose, 6, stage_idx + 1)
        at_end = nxt == 5
        nxt = np.where(at_end, np.where(rng.random(k) < np.clip(p_win * 1.3, 0, 0.95), 5, 6), nxt)
        idx = opps.index[sel]
        closed = nxt >= 5
        values = {
            "stage": STAGES[nxt],
            "probability": PROBABILITY[nxt],
            "forecast_category": FORECAST[nxt],
            "is_closed": closed,
            "is_won": nxt == 5,
        }
        _touch(company, "opportunities", idx, when, changes, values)
        opps.loc[idx[closed], "closed_at"] = when[closed]
        opps.loc[idx[closed], "close_date"] = when[closed].tz_localize(None).floor("D")
        rows.append(
            {
                "opportunity_id": opps.loc[idx, "opportunity_id"].to_numpy(),
                "stage": STAGES[nxt],
                "amount": opps.loc[idx, "amount"].to_numpy(),
                "close_date": opps.loc[idx, "close_date"].to_numpy(),
                "probability": PROBABILITY[nxt],
                "changed_at": when,
            }
        )
    # brand-new deals at the recent creation rate
    n = w.count(opps[opps["type"] != "renewal"])
    if n:
        acc = company.tables["accounts"]
        prospects = acc[acc["customer_since"].isna()]
        pick_acc = prospects.iloc[rng.integers(0, len(prospects), n)]
        when = w.times(n)
        amount = np.round(
            np.array([14_000.0, 48_000.0, 160_000.0])[
                pd.Index(["SMB", "Mid-Market", "Enterprise"]).get_indexer(pick_acc["segment"])
            ]
            * rng.lognormal(0, 0.5, n),
            -2,
        )
        close = (when + pd.to_timedelta(rng.uniform(30, 120, n), unit="D")).tz_localize(None).floor("D")
        new = _append(
            company,
            "opportunities",
            {
                "opportunity_id": _next_canonical(opps, "opportunity_id", n),
                "system_id": _next_salesforce(rng, opps["system_id"], "opportunity", n),
                "account_id": pick_acc["account_id"].to_numpy(),
                "owner_id": pick_acc["owner_id"].to_numpy(),
                "name": (pick_acc["name"].str.rsplit(" ", n=1).str[0] + " - New Business").to_numpy(),
                "type": np.full(n, "new_business", dtype=object),
                "amount": amount,
                "stage": np.full(n, STAGES[0], dtype=object),
                "probability": np.full(n, PROBABILITY[0]),
                "close_date": close,
                "is_closed": np.zeros(n, bool),
                "is_won": np.zeros(n, bool),
                "lead_source": pick_acc["lead_source"].to_numpy(),
                "forecast_category": np.full(n, FORECAST[0], dtype=object),
                "closed_at": pd.DatetimeIndex([pd.NaT] * n, tz="UTC"),
                "created_at": when,
            },
            changes,
        )
        rows.append(
            {
                "opportunity_id": new["opportunity_id"].to_numpy(),
                "stage": new["stage"].to_numpy(),
                "amount": amount,
                "close_date": close,
                "probability": new["probability"].to_numpy(),
                "changed_at": when,
            }
        )
    if rows:
        stamps = np.concatenate([pd.DatetimeIndex(r["changed_at"]).as_unit("ns").asi8 for r in rows])
        order = np.argsort(stamps, kind="stable")
        merged = {
            key: np.concatenate([np.asarray(r[key]) for r in rows])[order]
            for key in rows[0]
            if key != "changed_at"
        }
        merged["changed_at"] = pd.DatetimeIndex(stamps[order], tz="UTC").as_unit("ns")
        m = len(order)
        _append(
            company,
            "opportunity_history",
            {
                "history_id": _next_canonical(hist, "history_id", m),
                "system_id": _next_salesforce(rng, hist["system_id"], "opportunity_history", m),
                **merged,
                "created_at": merged["changed_at"],
            },
            changes,
        )


def _activities(company: Company, w: _Window, changes: ChangeSet) -> None:
    rng = w.rng
    act = company.tables["activities"]
    n = w.count(act)
    if not n:
        return
    src = act.iloc[rng.integers(max(0, len(act) - 500), len(act), n)]
    sf = (src["system"] == "salesforce").to_numpy()
    sys_id = np.empty(n, dtype=object)
    for kind in ("task", "event"):
        sel = (src["kind"] == kind).to_numpy()
        existing = act.loc[act["kind"] == kind, "system_id"]
        sys_id[sel] = _next_salesforce(rng, existing, kind, int(sel.sum()))
    sys_id[~sf] = _next_numeric(
        rng, act.loc[act["system"] == "hubspot", "system_id"], int((~sf).sum()), 5_000_000
    )
    when = w.times(n)
    _append(
        company,
        "activities",
        {
            "activity_id": _next_canonical(act, "activity_id", n),
            "system": src["system"].to_numpy(),
            "system_id": sys_id,
            "kind": src["kind"].to_numpy(),
            "account_id": src["account_id"].to_numpy(),
            "person_id": src["person_id"].to_numpy(),
            "opportunity_id": src["opportunity_id"].to_numpy(),
            "owner_id": src["owner_id"].to_numpy(),
            "subject": src["subject"].to_numpy(),
            "occurred_at": when,
            "status": np.where(src["kind"].to_numpy() == "task", "Not Started", "Completed"),
            "created_at": when,
        },
        changes,
    )


def _calls(company: Company, w: _Window, changes: ChangeSet) -> None:
    rng = w.rng
    calls = company.tables["calls"]
    n = w.count(calls)
    if not n:
        return
    opps = company.tables["opportunities"]
    open_opps = opps[~opps["is_closed"] & opps["deleted_at"].isna()]
    if not len(open_opps):
        return
    o = open_opps.iloc[rng.integers(0, len(open_opps), n)]
    when = w.times(n)
    duration = np.round(rng.lognormal(np.log(2100), 0.4, n)).astype("int64")
    ready = when + pd.to_timedelta(
        duration + np.round(rng.lognormal(np.log(5400), 0.6, n)).astype("int64"), unit="s"
    )
    ppl = company.tables["people"]
    by_acc = ppl.groupby("account_id")["person_id"].first()
    _append(
        company,
        "calls",
        {
            "call_id": _next_canonical(calls, "call_id", n),
            "system_id": _next_numeric(rng, calls["system_id"], n, 10**12),
            "opportunity_id": o["opportunity_id"].to_numpy(),
            "account_id": o["account_id"].to_numpy(),
            "owner_id": o["owner_id"].to_numpy(),
            "title": ("Discovery / demo - " + o["name"].str.split(" - ").str[0]).to_numpy(),
            "started_at": when,
            "duration_s": duration,
            "direction": np.full(n, "Conference", dtype=object),
            "participant_person_ids": pd.Series(
                [[p] if isinstance(p, str) else [] for p in by_acc.reindex(o["account_id"]).to_numpy()],
                dtype=object,
            ),
            "talk_ratio": np.round(rng.uniform(0.35, 0.7, n), 2),
            "longest_monologue_s": rng.integers(40, 300, n),
            "questions_asked": rng.poisson(9, n),
            "interactivity": np.round(rng.uniform(2, 9, n), 1),
            "patience": np.round(rng.uniform(0.4, 1.6, n), 2),
            "topics": pd.Series([["Pricing"]] * n, dtype=object),
            "analysis_ready_at": ready,
            "call_kind": np.full(n, "deal", dtype=object),
            "created_at": when,
        },
        changes,
    )


def _tasks(company: Company, w: _Window, changes: ChangeSet) -> None:
    rng = w.rng
    tasks = company.tables["tasks"]
    live = tasks["deleted_at"].isna().to_numpy()
    for state, nxt, mean_days in (("in_progress", "done", 5.0), ("todo", "in_progress", 4.0)):
        pool = np.flatnonzero(
            (tasks["state"] == state).to_numpy() & live & (tasks["created_at"] <= w.start).to_numpy()
        )
        k = min(len(pool), int(rng.poisson(len(pool) * w.minutes / (mean_days * 1440))))
        if not k:
            continue
        sel = tasks.index[np.sort(rng.choice(pool, size=k, replace=False))]
        when = w.times(k)
        col = "completed_at" if nxt == "done" else "started_at"
        tasks.loc[sel, col] = when
        _touch(company, "tasks", sel, when, changes, {"state": nxt})
    n = w.count(tasks)
    if n:
        src = tasks.iloc[rng.integers(max(0, len(tasks) - 1000), len(tasks), n)]
        linear = (src["system"] == "linear").to_numpy()
        sys_id = np.empty(n, dtype=object)
        sys_id[linear] = ids.uuids(rng, int(linear.sum()))
        sys_id[~linear] = _next_numeric(
            rng, tasks.loc[tasks["system"] == "asana", "system_id"], int((~linear).sum()), 10**8
        )
        ident = np.full(n, None, dtype=object)
        for team in np.unique(src.loc[linear, "team"].to_numpy(dtype=object)):
            sel = np.flatnonzero(linear & (src["team"].to_numpy() == team))
            existing = tasks.loc[(tasks["system"] == "linear") & (tasks["team"] == team), "identifier"]
            key = existing.iloc[0].split("-")[0]
            top = int(existing.str.split("-").str[1].astype(int).max())
            ident[sel] = [f"{key}-{top + i + 1}" for i in range(len(sel))]
        when = w.times(n)
        _append(
            company,
            "tasks",
            {
                "task_id": _next_canonical(tasks, "task_id", n),
                "system": src["system"].to_numpy(),
                "system_id": sys_id,
                "project_id": src["project_id"].to_numpy(),
                "cycle_id": src["cycle_id"].to_numpy(),
                "title": src["title"].to_numpy(),
                "assignee_id": src["assignee_id"].to_numpy(),
                "state": np.full(n, "todo", dtype=object),
                "priority": src["priority"].to_numpy(),
                "estimate": src["estimate"].to_numpy(),
                "started_at": pd.DatetimeIndex([pd.NaT] * n, tz="UTC"),
                "completed_at": pd.DatetimeIndex([pd.NaT] * n, tz="UTC"),
                "due_on": (when + pd.Timedelta(days=14)).tz_localize(None).floor("D"),
                "identifier": ident,
                "team": src["team"].to_numpy(),
                "created_at": when,
            },
            changes,
        )
    tasks = company.tables["tasks"]
    k_del = int(rng.poisson(0.02 * w.minutes / 15))
    pool = np.flatnonzero(tasks["deleted_at"].isna().to_numpy() & (tasks["created_at"] <= w.start).to_numpy())
    if k_del and len(pool):
        sel = tasks.index[np.sort(rng.choice(pool[-2000:], size=min(k_del, len(pool)), replace=False))]
        _touch(company, "tasks", sel, w.times(len(sel)), changes, delete=True)


def _pages(company: Company, w: _Window, changes: ChangeSet) -> None:
    rng = w.rng
    pages = company.tables["pages"]
    pool = np.flatnonzero(pages["deleted_at"].isna().to_numpy() & ~pages["archived"].to_numpy())
    k = min(len(pool), int(rng.poisson(w.count(pages, "last_edited_at", scale=1.0) + 0.05)))
    if k:
        sel = pages.index[np.sort(rng.choice(pool, size=k, replace=False))]
        when = w.times(k)
        editors = pages.loc[sel, "author_id"].to_numpy()
        _touch(
            company,
            "pages",
            sel,
            when,
            changes,
            {
                "last_edited_at": when,
                "last_edited_by_id": editors,
                "word_count": pages.loc[sel, "word_count"].to_numpy() + 25,
            },
        )


def _people(company: Company, w: _Window, changes: ChangeSet) -> None:
    rng = w.rng
    ppl = company.tables["people"]
    n = w.count(ppl)
    if n:
        acc = company.tables["accounts"]
        a = acc.iloc[rng.integers(0, len(acc), n)]
        src = ppl.iloc[rng.integers(0, len(ppl), n)]
        first = src["first_name"].to_numpy(dtype=object)
        last = ppl["last_name"].to_numpy(dtype=object)[rng.integers(0, len(ppl), n)]
        pid = _next_canonical(ppl, "person_id", n)
        email = (
            pd.Series(first).str.lower()
            + "."
            + pd.Series(last).str.lower()
            + "."
            + pd.Series(pid).str[-4:]
            + "@"
            + a["domain"].to_numpy()
        ).to_numpy(dtype=object)
        when = w.times(n)
        new = _append(
            company,
            "people",
            {
                "person_id": pid,
                "account_id": a["account_id"].to_numpy(),
                "first_name": first,
                "last_name": last,
                "email": email,
                "phone": src["phone"].to_numpy(),
                "title": src["title"].to_numpy(),
                "lifecycle_stage": np.full(n, "lead", dtype=object),
                "created_at": when,
            },
            changes,
        )
        pres = company.tables["presence"]
        hs = pres[(pres["entity"] == "person") & (pres["system"] == "hubspot")]
        _append(
            company,
            "presence",
            {
                "entity": np.full(n, "person", dtype=object),
                "entity_id": pid,
                "system": np.full(n, "hubspot", dtype=object),
                "system_id": _next_numeric(rng, hs["system_id"], n, 400),
                "name": (new["first_name"] + " " + new["last_name"]).to_numpy(),
                "email": email,
                "domain": np.full(n, None, dtype=object),
                "phone": new["phone"].to_numpy(),
                "is_duplicate": np.zeros(n, bool),
                "created_at": when,
            },
            changes,
        )
    ppl = company.tables["people"]
    k_del = int(rng.poisson(0.01 * w.minutes / 15))
    pool = np.flatnonzero(ppl["deleted_at"].isna().to_numpy() & (ppl["created_at"] <= w.start).to_numpy())
    if k_del and len(pool):
        sel = ppl.index[np.sort(rng.choice(pool, size=min(k_del, len(pool)), replace=False))]
        when = w.times(len(sel))
        _touch(company, "people", sel, when, changes, delete=True)
        pres = company.tables["presence"]
        for pid_, t in zip(ppl.loc[sel, "person_id"], when, strict=True):
            rows = pres.index[
                (pres["entity"] == "person") & (pres["entity_id"] == pid_) & pres["deleted_at"].isna()
            ]
            _touch(company, "presence", rows, pd.DatetimeIndex([t] * len(rows)), changes, delete=True)


def _touchpoints(company: Company, w: _Window, changes: ChangeSet) -> None:
    rng = w.rng
    tp = company.tables["touchpoints"]
    n = w.count(tp)
    if not n:
        return
    src = tp.iloc[rng.integers(max(0, len(tp) - 3000), len(tp), n)]
    when = w.times(n)
    views = rng.poisson(3, n) + 1
    _append(
        company,
        "touchpoints",
        {
            "touch_id": _next_canonical(tp, "touch_id", n),
            "account_id": src["account_id"].to_numpy(),
            "person_id": src["person_id"].to_numpy(),
            "occurred_at": when,
            "channel": src["channel"].to_numpy(),
            "campaign": src["campaign"].to_numpy(),
            "page_url": src["page_url"].to_numpy(),
            "page_views": views,
            "engagement_score": np.round(np.log1p(views) * 10, 1),
            "created_at": when,
        },
        changes,
    )


def _invoices(company: Company, w: _Window, changes: ChangeSet) -> None:
    rng = w.rng
    inv = company.tables["invoices"]
    pool = np.flatnonzero(inv["status"].isin(["open", "overdue"]).to_numpy())
    k = min(len(pool), int(rng.poisson(len(pool) * w.minutes / (20 * 1440))))
    if k:
        sel = inv.index[np.sort(rng.choice(pool, size=k, replace=False))]
        when = w.times(k)
        inv.loc[sel, "paid_on"] = when.tz_localize(None).floor("D")
        _touch(company, "invoices", sel, when, changes, {"status": "paid"})
