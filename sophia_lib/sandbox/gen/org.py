"""Employees of the simulated company (Halcyon Data): who sells, supports, builds and pays."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sophia_lib.sandbox.gen import names
from sophia_lib.sandbox.gen.util import Timeline, canonical_ids, pick, stamp_frame

COMPANY_DOMAIN = "halcyondata.com"

EXECS = [  # title, department the exec leads (manager of that department's teams)
    ("Chief Executive Officer", "Executive"),
    ("Chief Revenue Officer", "Sales"),
    ("Chief Financial Officer", "Finance"),
    ("VP Engineering", "Engineering"),
    ("VP Product", "Product"),
    ("VP Marketing", "Marketing"),
    ("VP Customer Success", "Customer Success"),
]
# department, team, share of non-exec headcount, individual-contributor title
TEAMS = [
    ("Sales", "Enterprise", 0.05, "Enterprise Account Executive"),
    ("Sales", "Mid-Market", 0.055, "Account Executive"),
    ("Sales", "SMB", 0.055, "Account Executive"),
    ("Sales", "SDR", 0.08, "Sales Development Representative"),
    ("Customer Success", "CSM", 0.08, "Customer Success Manager"),
    ("Customer Success", "Support", 0.09, "Support Engineer"),
    ("Marketing", "Demand Gen", 0.05, "Demand Generation Manager"),
    ("Marketing", "Product Marketing", 0.03, "Product Marketing Manager"),
    ("Finance", "Finance", 0.05, "Financial Analyst"),
    ("Engineering", "Platform", 0.09, "Software Engineer"),
    ("Engineering", "Data", 0.08, "Data Engineer"),
    ("Engineering", "Apps", 0.1, "Software Engineer"),
    ("Engineering", "Infra", 0.06, "Site Reliability Engineer"),
    ("Product", "Product", 0.08, "Product Manager"),
]
EXEC_OF = {"Sales": 1, "Finance": 2, "Engineering": 3, "Product": 4, "Marketing": 5, "Customer Success": 6}
ENGINEERING_TEAMS = {"Platform": "PLAT", "Data": "DATA", "Apps": "APP", "Infra": "INFRA"}


def _largest_remainder(total: int, shares: np.ndarray) -> np.ndarray:
    raw = shares / shares.sum() * total
    counts = np.floor(raw).astype(int)
    counts[np.argsort(-(raw - counts), kind="stable")[: total - counts.sum()]] += 1
    return np.maximum(counts, 1)


def employees(rng: np.random.Generator, n: int, tl: Timeline) -> pd.DataFrame:
    """Execs first, then each team with its manager first; managers report to their department's exec."""
    counts = _largest_remainder(n - len(EXECS), np.array([t[2] for t in TEAMS]))
    dept = [e[1] for e in EXECS]
    team = ["Leadership"] * len(EXECS)
    title = [e[0] for e in EXECS]
    manager: list[int | None] = [None] + [0] * (len(EXECS) - 1)
    for (d, t, _share, ic_title), c in zip(TEAMS, counts, strict=True):
        lead = len(dept)
        for i in range(int(c)):
            dept.append(d)
            team.append(t)
            title.append(f"{t} Manager" if i == 0 else ic_title)
            manager.append(EXEC_OF[d] if i == 0 else lead)
    total = len(dept)
    ids = canonical_ids("emp_", 1, total)
    first = pick(rng, names.FIRST, total)
    last = pick(rng, names.LAST, total)
    local = pd.Series(first).str.lower() + "." + pd.Series(last).str.lower()
    dup = local.groupby(local).cumcount()
    local = local.where(dup == 0, local + (dup + 1).astype(str))
    hired = np.where(
        rng.random(total) < 0.55, -rng.uniform(30, 1500, total), rng.uniform(0, tl.horizon - 20, total)
    )
    hired[: len(EXECS)] = -rng.uniform(400, 2000, len(EXECS))
    leaves = (rng.random(total) < 0.06) & (np.arange(total) >= len(EXECS)) & (np.array(title) != "")
    leaves &= ~pd.Series(title).str.endswith("Manager").to_numpy()
    left_day = np.where(leaves, np.maximum(hired, 0) + rng.uniform(60, 400, total), np.nan)
    left_day = np.where(left_day < tl.horizon - 2, left_day, np.nan)
    frame = pd.DataFrame(
        {
            "employee_id": ids,
            "first_name": first,
            "last_name": last,
            "email": (local + "@" + COMPANY_DOMAIN).to_numpy(dtype=object),
            "title": title,
            "department": dept,
            "team": team,
            "region": pick(rng, ["NA", "EMEA", "APAC"], total, [0.55, 0.3, 0.15]),
            "manager_id": pd.array([ids[m] if m is not None else None for m in manager], dtype="str"),
            "hired_at": tl.ts(hired),
            "is_active": np.isnan(left_day),
        }
    )
    created = tl.ts(np.minimum(hired, 0.0))
    updated = tl.ts(np.where(np.isnan(left_day), np.minimum(hired, 0.0), left_day))
    frame["left_at"] = tl.ts(left_day)
    return stamp_frame(frame, created, updated)


def of_team(emp: pd.DataFrame, *teams: str, active_only: bool = True) -> np.ndarray:
    """Positional indexes of employees in the given teams (managers included)."""
    mask = emp["team"].isin(teams).to_numpy().copy()
    if active_only:
        mask &= emp["is_active"].to_numpy()
    return np.flatnonzero(mask)
