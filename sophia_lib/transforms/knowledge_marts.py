"""Knowledge-use marts (Notion + Slack): pages written and edited per team and week, each page's
freshness and how often it is shared in Slack, and the most active authors.

Notion's API gives a page's creation and its *last* edit only, so "edited" means "last edited in that
week"; a page is stale when nobody has edited it for :data:`STALE_AFTER_DAYS` days.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from sophia_lib.transforms.work_common import TS, as_date, team_week_grid, week_start

STALE_AFTER_DAYS = 90
RECENT_DAYS = 90
UNASSIGNED = "Unassigned"
DAY = pd.Timedelta(days=1)


def _per_team_week(frame: pd.DataFrame, grid: pd.DataFrame, name: str, value: str | None = None,
                   how: str = "size") -> pd.Series:
    grouped = frame.groupby(["team", "week"])
    counts = grouped.size() if value is None else grouped[value].agg(how)
    return counts.reindex(pd.MultiIndex.from_frame(grid), fill_value=0).rename(name).reset_index(drop=True)


def knowledge_pages(pages: pd.DataFrame, refs: pd.DataFrame, employees: pd.DataFrame, teams: pd.Series,
                    as_of: datetime) -> pd.DataFrame:
    """``marts.knowledge_pages``: one row per Notion page (databases excluded)."""
    now = pd.Timestamp(as_of).tz_convert("UTC")
    staff = employees.set_index("employee_key")
    page = pages[pages["object"] == "page"]
    shares = refs[(refs["ref_type"] == "notion_page") & refs["ref_key"].notna()].groupby("ref_key").agg(
        slack_shares=("message_key", "size"), slack_sharers=("employee_key", "nunique"),
        last_shared_at=("sent_at", "max"))
    idle = (now - page["last_edited_at"].fillna(page["created_at"])) / DAY
    archived = page["archived"].fillna(False).astype(bool)
    out = pd.DataFrame({
        "page_key": page["page_key"], "notion_id": page["notion_id"], "title": page["title"],
        "database": page["database"], "author_employee_key": page["author_employee_key"],
        "author_name": page["author_employee_key"].map(staff["full_name"]),
        "author_team": page["author_employee_key"].map(teams).astype("string").fillna(UNASSIGNED),
        "last_edited_by_employee_key": page["last_edited_by_employee_key"],
        "created_at": page["created_at"], "created_week": as_date(week_start(page["created_at"])),
        "last_edited_at": page["last_edited_at"], "days_since_edit": idle.astype("Float64"),
        "is_stale": (~archived & (idle > STALE_AFTER_DAYS)).astype("boolean"), "archived": archived,
        "word_count": page["word_count"],
    }).merge(shares.reset_index().rename(columns={"ref_key": "page_key"}), on="page_key", how="left")
    out[["slack_shares", "slack_sharers"]] = out[["slack_shares", "slack_sharers"]].fillna(0).astype("int64")
    return out.astype({"last_shared_at": TS}).reset_index(drop=True)


def knowledge_use(pages: pd.DataFrame, messages: pd.DataFrame, refs: pd.DataFrame, team_of: pd.Series,
                  as_of: datetime) -> pd.DataFrame:
    """``marts.knowledge_use``: one row per team and week."""
    page = pages[pages["object"] == "page"]
    created = pd.DataFrame({"team": page["author_employee_key"].map(team_of).astype("string").fillna(UNASSIGNED),
                            "week": week_start(page["created_at"]), "author": page["author_employee_key"],
                            "words": page["word_count"].fillna(0)})
    edited = pd.DataFrame({"team": page["last_edited_by_employee_key"].map(team_of).astype("string").fillna(UNASSIGNED),
                           "week": week_start(page["last_edited_at"])})
    human = messages[~messages["is_bot"].fillna(False).astype(bool)]
    chat = pd.DataFrame({"team": human["employee_key"].map(team_of).astype("string").fillna(UNASSIGNED),
                         "week": week_start(human["sent_at"])})
    links = refs[refs["ref_type"] == "notion_page"]
    shared = pd.DataFrame({"team": links["employee_key"].map(team_of).astype("string").fillna(UNASSIGNED),
                           "week": week_start(links["sent_at"]), "page": links["ref_key"]})
    parts = [f[["team", "week"]] for f in (created, edited, chat, shared)]
    grid = team_week_grid(pd.concat(parts, ignore_index=True).astype({"team": "string"}),
                          week_start(pd.Series([pd.Timestamp(as_of).tz_convert("UTC")])).iloc[0])
    frames = [f.astype({"team": "string"}) for f in (created, edited, chat, shared)]
    created, edited, chat, shared = frames
    out = pd.concat([grid.reset_index(drop=True), pd.DataFrame({
        "pages_created": _per_team_week(created, grid, "pages_created"),
        "pages_last_edited": _per_team_week(edited.dropna(subset=["week"]), grid, "pages_last_edited"),
        "words_written": _per_team_week(created, grid, "words_written", "words", "sum"),
        "active_authors": _per_team_week(created, grid, "active_authors", "author", "nunique"),
        "slack_messages": _per_team_week(chat, grid, "slack_messages"),
        "notion_links_shared": _per_team_week(shared, grid, "notion_links_shared"),
        "pages_shared": _per_team_week(shared, grid, "pages_shared", "page", "nunique"),
    })], axis=1)
    out["week"] = as_date(out["week"])
    return out.astype({c: "int64" for c in out.columns if c not in ("team", "week")})


def knowledge_authors(pages: pd.DataFrame, refs: pd.DataFrame, employees: pd.DataFrame, teams: pd.Series,
                      page_marts: pd.DataFrame, as_of: datetime) -> pd.DataFrame:
    """``marts.knowledge_authors``: one row per employee who wrote, last edited or shared a page."""
    now = pd.Timestamp(as_of).tz_convert("UTC")
    page = pages[pages["object"] == "page"]
    recent = page["created_at"] > now - pd.Timedelta(days=RECENT_DAYS)
    wrote = pd.DataFrame({"employee_key": page["author_employee_key"], "pages_created": 1,
                          "pages_created_90d": recent.astype(int), "words_written": page["word_count"].fillna(0),
                          "last_created_at": page["created_at"]}).groupby("employee_key").agg(
        pages_created=("pages_created", "sum"), pages_created_90d=("pages_created_90d", "sum"),
        words_written=("words_written", "sum"), last_created_at=("last_created_at", "max"))
    edits = page.groupby("last_edited_by_employee_key").size().rename("pages_last_edited")
    stale = page_marts[page_marts["is_stale"].fillna(False).astype(bool)].groupby("author_employee_key").size()
    shared = refs[refs["ref_type"] == "notion_page"].groupby("employee_key").size()
    out = pd.concat([wrote, edits, stale.rename("stale_pages_authored"), shared.rename("notion_links_shared")],
                    axis=1)
    out.index.name = "employee_key"
    out = out.reset_index()
    out = out[out["employee_key"].notna()]
    staff = employees.set_index("employee_key")
    out.insert(1, "name", out["employee_key"].map(staff["full_name"]))
    out.insert(2, "team", out["employee_key"].map(teams))
    counts = ["pages_created", "pages_created_90d", "pages_last_edited", "stale_pages_authored", "notion_links_shared"]
    out[counts] = out[counts].fillna(0).astype("int64")
    out["words_written"] = out["words_written"].fillna(0).astype("int64")
    out["activity_rank"] = (out["pages_created_90d"] * 1_000_000 + out["pages_created"] * 1_000
                            + out["pages_last_edited"]).rank(ascending=False, method="min").astype("int64")
    return out.astype({"last_created_at": TS}).sort_values("activity_rank", kind="stable").reset_index(drop=True)


def build_knowledge_marts(pages: pd.DataFrame, messages: pd.DataFrame, refs: pd.DataFrame,
                          employees: pd.DataFrame, teams: pd.Series, as_of: datetime) -> dict[str, pd.DataFrame]:
    """``teams``: employee_key → team (:func:`sophia_lib.transforms.work_common.employee_teams`)."""
    page_marts = knowledge_pages(pages, refs, employees, teams, as_of)
    return {
        "knowledge_use": knowledge_use(pages, messages, refs, teams, as_of),
        "knowledge_pages": page_marts,
        "knowledge_authors": knowledge_authors(pages, refs, employees, teams, page_marts, as_of),
    }
