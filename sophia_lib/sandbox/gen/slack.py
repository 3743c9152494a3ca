"""Slack channels and messages: who talks where, threads, and mentions of the same accounts as the CRM."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sophia_lib.sandbox.gen import ids
from sophia_lib.sandbox.gen.sizes import Size
from sophia_lib.sandbox.gen.util import Timeline, canonical_ids, pick, stamp_frame

# name, audience teams ("*" = everyone), private, share of messages, topic, archived-after-fraction-of-history
CHANNELS = [
    ("general", "*", False, 0.06, "Company-wide news", None),
    ("random", "*", False, 0.05, "Water cooler", None),
    ("announcements", "Leadership", False, 0.01, "Read-only announcements", None),
    ("sales", "Enterprise Mid-Market SMB Leadership", False, 0.08, "Sales floor", None),
    ("deals", "Enterprise Mid-Market SMB SDR Leadership", False, 0.08, "Deal desk and wins", None),
    ("sdr-team", "SDR", False, 0.04, "Outbound and meetings booked", None),
    ("cs-team", "CSM", False, 0.05, "Customer success", None),
    ("support", "Support CSM", False, 0.07, "Support queue", None),
    ("support-escalations", "Support CSM Platform Apps", False, 0.04, "Escalated tickets", None),
    ("customer-health", "CSM Leadership", False, 0.03, "At-risk accounts", None),
    ("marketing", "Demand Gen Product Marketing", False, 0.05, "Marketing", None),
    ("campaigns", "Demand Gen SDR", False, 0.02, "Campaign launches", None),
    ("finance", "Finance Leadership", False, 0.02, "Close, billing, collections", None),
    ("eng", "Platform Data Apps Infra", False, 0.08, "Engineering", None),
    ("eng-platform", "Platform", False, 0.04, "Platform team", None),
    ("eng-data", "Data", False, 0.04, "Data team", None),
    ("eng-apps", "Apps", False, 0.04, "Apps team", None),
    ("incidents", "Infra Platform Support", False, 0.03, "Incident response", None),
    ("product", "Product Platform Apps Data", False, 0.05, "Product discussion", None),
    ("leadership", "Leadership", True, 0.02, "Leadership team", None),
    ("exec-staff", "Leadership", True, 0.01, "Exec staff", None),
    ("sales-kickoff-2025", "Enterprise Mid-Market SMB SDR", False, 0.01, "SKO 2025", 0.35),
    ("website-redesign", "Demand Gen Product Marketing Apps", False, 0.01, "Old website project", 0.5),
]
TEXTS = {
    "account": [
        ("Heads up: ", " renewal is coming up, need a QBR"),
        ("Just got off a call with ", " - great energy"),
        ("", " signed! :tada:"),
        ("Anyone know the champion at ", "?"),
        ("Escalation from ", ", looking now"),
        ("", " asked about SSO again"),
        ("Pricing question from ", " - can someone from deal desk help?"),
        ("", " usage is dropping, flagging for CS"),
    ],
    "general": [
        ("", "Lunch is here"),
        ("", "Reminder: all-hands at 4pm"),
        ("", "Welcome to the team!"),
        ("", "Office closed Friday"),
        ("", "Great quarter everyone"),
    ],
    "eng": [
        ("", "PR ready for review"),
        ("", "Deploy is green"),
        ("", "Flaky test in CI again"),
        ("", "Postgres migration done"),
        ("", "Who owns the sync scheduler?"),
        ("", "RFC posted in Notion"),
    ],
}
REPLY_SHARE = 0.25  # of all messages
THREAD_SHARE = 0.105  # of top-level messages that open a thread; some get no reply, so ~8 % end up threads
THREAD_REACH = 40  # a reply goes to a thread started at most ~this many messages earlier in the channel
ACCOUNT_CHANNELS = {
    "sales",
    "deals",
    "cs-team",
    "support",
    "support-escalations",
    "customer-health",
    "sdr-team",
}


def channels(rng: np.random.Generator, tl: Timeline, acc: pd.DataFrame, n_ext: int) -> pd.DataFrame:
    """Internal channels plus Slack Connect channels with the largest customers."""
    custs = acc[acc["customer_since"].notna() & (acc["segment"] == "Enterprise")].sort_values(
        "arr", ascending=False
    )
    ext = custs.head(n_ext)
    slug = ext["domain"].str.split(".").str[0]
    names_ = [c[0] for c in CHANNELS] + ("ext-" + slug).tolist()
    n = len(names_)
    created = np.concatenate([np.full(len(CHANNELS), -300.0), tl.days(ext["customer_since"]) + 3])
    archived_frac = np.array([np.nan if c[5] is None else c[5] for c in CHANNELS] + [np.nan] * len(ext))
    archived_day = archived_frac * tl.horizon
    churn = tl.days(ext["churned_at"])
    archived_day[len(CHANNELS) :] = churn + 14
    archived_day = np.where(archived_day < tl.horizon, archived_day, np.nan)
    frame = pd.DataFrame(
        {
            "channel_id": canonical_ids("chn_", 1, n),
            "system_id": ids.slack(rng, n, "C"),
            "name": names_,
            "is_private": [c[2] for c in CHANNELS] + [False] * len(ext),
            "is_archived": ~np.isnan(archived_day),
            "topic": [c[4] for c in CHANNELS] + ("Shared channel with " + ext["name"]).tolist(),
            "audience": [c[1] for c in CHANNELS] + ["CSM Enterprise Support"] * len(ext),
            "share": [c[3] for c in CHANNELS] + [0.06 / max(len(ext), 1)] * len(ext),
            "account_id": pd.array([None] * len(CHANNELS) + ext["account_id"].tolist(), dtype="str"),
            "archived_at": tl.ts(archived_day),
        }
    )
    return stamp_frame(frame, tl.ts(created), tl.ts(np.where(np.isnan(archived_day), created, archived_day)))


def to_ts(t_us: np.ndarray) -> np.ndarray:
    """Microseconds since epoch → Slack ``"1700000000.000100"`` strings."""
    sec, us = np.divmod(t_us, 1_000_000)
    return np.char.add(np.char.add(sec.astype(str), "."), np.char.zfill(us.astype(str), 6)).astype(object)


def messages(
    rng: np.random.Generator,
    size: Size,
    tl: Timeline,
    chans: pd.DataFrame,
    emp: pd.DataFrame,
    acc: pd.DataFrame,
) -> pd.DataFrame:
    h = tl.horizon
    share = chans["share"].to_numpy(dtype=float)
    counts = rng.multinomial(size.messages, share / share.sum())
    hired = tl.days(emp["hired_at"])
    left = tl.days(emp["left_at"])
    teams = emp["team"].to_numpy()
    acc_first = tl.days(acc["first_touch_at"])
    parts = []
    for ci, count in enumerate(counts):
        if count == 0:
            continue
        row = chans.iloc[ci]
        audience = row["audience"]
        members = np.arange(len(emp)) if audience == "*" else np.flatnonzero(np.isin(teams, audience.split()))
        if len(members) == 0:
            members = np.arange(len(emp))
        lo = max(tl.days(pd.DatetimeIndex([row["created_at"]]))[0], 0.0)
        archived = tl.days(pd.DatetimeIndex([row["archived_at"]]))[0]
        hi = h if np.isnan(archived) else archived
        if hi <= lo:
            continue
        day = lo + (hi - lo) * rng.random(count) ** 0.85
        who = members[rng.integers(0, len(members), count)]
        day = np.clip(day, np.maximum(hired[who], lo), np.fmin(np.nan_to_num(left[who], nan=hi), hi))
        whole = np.floor(day)
        weekday = (tl.start.weekday() + whole.astype("int64")) % 7
        whole = (
            whole - np.where(weekday == 5, 1, 0) - np.where(weekday == 6, 2, 0) * (rng.random(count) < 0.9)
        )
        day = np.minimum(whole + np.clip(rng.normal(0.62, 0.12, count), 0.3, 0.97), h - 1e-5)
        t_us = np.sort((tl.start.value // 1000) + np.round(day * 86_400e6).astype("int64"))
        t_us = np.maximum.accumulate(t_us - np.arange(count)) + np.arange(count)  # strictly increasing
        # threads: about 8 % of top-level messages start one (as in a real workspace) and a quarter of all
        # messages are replies, each to one of the few most recently started threads (~4 replies a thread)
        idx = np.arange(count)
        is_reply = rng.random(count) < REPLY_SHARE
        is_reply[0] = False
        starts = ~is_reply & (rng.random(count) < THREAD_SHARE)
        last_start = np.maximum.accumulate(np.where(starts, idx, -1))
        back = np.maximum(idx - rng.integers(1, THREAD_REACH, count), 0)
        parent = np.where(is_reply, last_start[back], -1)
        is_reply &= parent >= 0
        parent = np.where(is_reply, parent, -1)
        mention = np.full(count, None, dtype=object)
        name = row["name"]
        if name in ACCOUNT_CHANNELS or name.startswith("ext-"):
            fam = "account"
            if name.startswith("ext-"):
                cand = np.full(count, pd.Index(acc["account_id"]).get_loc(row["account_id"]))
            else:
                cand = rng.integers(0, len(acc), count)
            ok = (rng.random(count) < 0.45) & (acc_first[cand] < day)
            mention[ok] = acc["account_id"].to_numpy(dtype=object)[cand[ok]]
        elif name.startswith("eng") or name in {"incidents", "product"}:
            fam, ok, cand = "eng", np.zeros(count, bool), np.zeros(count, "int64")
        else:
            fam, ok, cand = "general", np.zeros(count, bool), np.zeros(count, "int64")
        tmpl = TEXTS[fam]
        t_idx = rng.integers(0, len(tmpl), count)
        pre = np.array([t[0] for t in tmpl], dtype=object)[t_idx]
        post = np.array([t[1] for t in tmpl], dtype=object)[t_idx]
        short = acc["name"].str.rsplit(" ", n=1).str[0].to_numpy(dtype=object)[cand]
        generic = np.array(["Updates", "Quick question", "FYI", "Thanks all"], dtype=object)[
            rng.integers(0, 4, count)
        ]
        text = np.where(ok, pre + short + post, np.where(fam == "account", generic, pre + post))
        text = np.where(
            is_reply, pick(rng, ["+1", "On it", "Thanks!", "Looking", "Done", "Good call"], count), text
        )
        ts = to_ts(t_us)
        reply_count = np.bincount(parent[is_reply], minlength=count)
        thread_ts = np.where(is_reply, ts[np.maximum(parent, 0)], np.where(reply_count > 0, ts, None))
        parts.append(
            pd.DataFrame(
                {
                    "channel_id": row["channel_id"],
                    "employee_id": emp["employee_id"].to_numpy(dtype=object)[who],
                    "ts": ts,
                    "thread_ts": thread_ts,
                    "text": text,
                    "reply_count": reply_count,
                    "mentions_account_id": mention,
                    "_t": t_us,
                }
            )
        )
    frame = pd.concat(parts, ignore_index=True).sort_values(
        ["_t", "channel_id"], kind="stable", ignore_index=True
    )
    created = pd.DatetimeIndex(frame["_t"].to_numpy() * 1000, tz="UTC").as_unit("ns")
    n = len(frame)
    frame.insert(0, "message_id", canonical_ids("msg_", 1, n))
    frame = frame.drop(columns="_t")
    frame["thread_ts"] = frame["thread_ts"].astype("str")
    frame["mentions_account_id"] = frame["mentions_account_id"].astype("str")
    edited = rng.random(n) < 0.04
    updated = created + pd.to_timedelta(np.where(edited, rng.uniform(30, 3600, n), 0.0).round(), unit="s")
    return stamp_frame(frame, created, updated.where(updated < tl.now, created))
