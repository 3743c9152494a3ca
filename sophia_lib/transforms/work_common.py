"""Small frame helpers shared by the work-and-knowledge steps (``work``, ``collaboration``, ``marts_work``):
stable source keys, employee resolution through ``core.employee_xref``, typed output frames, week starts."""

from __future__ import annotations

import pandas as pd

TS = "datetime64[us, UTC]"


def source_key(system: str, ids: pd.Series) -> pd.Series:
    """Stable keys from vendor ids (``"asana:1205…"``): the same record gets the same key every refresh."""
    ids = ids.astype("string")
    return (system + ":" + ids).where(ids.notna() & (ids != ""))


def employee_keys(xref: pd.DataFrame, system: str, ids: pd.Series) -> pd.Series:
    """``employee_key`` for each vendor user id of ``system`` (null where the entities step found none)."""
    mine = xref.loc[xref["system"] == system, ["system_id", "employee_key"]].drop_duplicates("system_id")
    lookup = mine.set_index(mine["system_id"].astype("string"))["employee_key"]
    return ids.astype("string").map(lookup).astype("string")


def typed(frame: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """Exactly ``columns``, in order and with those dtypes (so empty sources still publish typed tables)."""
    out = pd.DataFrame(index=frame.index)
    for name, dtype in columns.items():
        values = frame[name] if name in frame else pd.Series(pd.NA, index=frame.index, dtype="object")
        if dtype == TS:
            values = pd.to_datetime(values, utc=True).astype(TS)
        elif dtype == "object":
            values = values.astype("object").where(values.notna(), None)
        else:
            values = values.astype(dtype)
        out[name] = values
    return out.reset_index(drop=True)


def concat_rows(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Rows of several same-shaped frames (empty ones skipped, so their all-null columns do not decide dtypes)."""
    rows = [frame for frame in frames if len(frame)]
    return pd.concat(rows, ignore_index=True) if rows else frames[0].reset_index(drop=True)


def utc_day(dates: pd.Series) -> pd.Series:
    """A DATE column (``datetime.date`` objects) as UTC midnight timestamps."""
    return pd.to_datetime(dates, utc=True).astype(TS)


def as_date(stamps: pd.Series) -> pd.Series:
    """Timestamps → ``datetime.date`` objects (DATE in the warehouse); null stays null."""
    return pd.to_datetime(stamps, utc=True).dt.date.astype("object").where(stamps.notna(), None)


def first_json_string(values: pd.Series) -> pd.Series:
    """The first string of a JSON array held as text (``'["a", "b"]'`` → ``"a"``)."""
    return values.astype("string").str.extract(r'"([^"]+)"', expand=False)


def week_start(stamps: pd.Series) -> pd.Series:
    """The Monday (UTC, midnight) of each timestamp's ISO week; null stays null."""
    day = pd.to_datetime(stamps, utc=True).dt.floor("D")
    return (day - pd.to_timedelta(day.dt.day_of_week, unit="D")).astype(TS)


def team_week_grid(activity: pd.DataFrame, last_week: pd.Timestamp) -> pd.DataFrame:
    """Every (team, week) from each team's first week in ``activity`` (columns team, week) to ``last_week``,
    so weekly marts have a row (of zeros) for quiet weeks too."""
    activity = activity[activity["week"].notna()]
    if not len(activity):
        return pd.DataFrame({"team": pd.Series(dtype="string"), "week": pd.Series(dtype=TS)})
    first = activity.groupby("team")["week"].min()
    weeks = pd.Series(pd.date_range(first.min(), max(last_week, first.max()), freq="7D"), name="week").astype(TS)
    grid = pd.DataFrame({"team": first.index.astype("string")}).merge(weeks.to_frame(), how="cross")
    grid = grid[grid["week"] >= grid["team"].map(first).astype(TS)]
    return grid.sort_values(["team", "week"], kind="stable").reset_index(drop=True)


def employee_teams(employees: pd.DataFrame, tasks: pd.DataFrame) -> pd.Series:
    """``employee_key`` → team: the team ``core.employees`` records, else the team owning most of the work
    assigned to that person (engineers often appear only in Slack and Linear, which carry no team)."""
    assigned = tasks.loc[tasks["assignee_employee_key"].notna() & tasks["team"].notna(),
                         ["assignee_employee_key", "team"]]
    counts = assigned.groupby(["assignee_employee_key", "team"]).size().rename("n").reset_index()
    counts = counts.sort_values(["assignee_employee_key", "n", "team"], ascending=[True, False, True], kind="stable")
    from_work = counts.drop_duplicates("assignee_employee_key").set_index("assignee_employee_key")["team"]
    recorded = employees.set_index("employee_key")["team"]
    recorded = recorded[recorded.notna()]
    return pd.concat([recorded, from_work[~from_work.index.isin(recorded.index)]]).astype("string")
