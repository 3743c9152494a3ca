"""Work and knowledge marts (team productivity, delivery, cycles, project status, workload, knowledge use)
against the sandbox's ground truth."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sophia_lib.frame import to_arrow
from sophia_lib.transforms.context import TransformContext
from sophia_lib.transforms.knowledge_marts import STALE_AFTER_DAYS, build_knowledge_marts
from sophia_lib.transforms.marts_work import work_marts
from sophia_lib.transforms.work import core_work
from sophia_lib.warehouse import open_warehouse
from tests.transforms.work_support import WorkBuild, week, work_build

WORK_TABLES = ["core.projects", "core.cycles", "core.tasks", "core.channels", "core.messages",
               "core.message_references", "core.pages", "core.looks", "core.look_results",
               "marts.team_productivity", "marts.delivery_cycle_times", "marts.cycle_delivery", "marts.project_status",
               "marts.workload", "marts.knowledge_use", "marts.knowledge_pages", "marts.knowledge_authors"]


@pytest.fixture
def work(transformed, engine: str) -> WorkBuild:
    if engine != "pandas":
        pytest.skip("truth checks read the in-process build; the cudf.pandas snapshot is compared in "
                    "test_published_snapshot_has_the_same_work_tables")
    return work_build(transformed)


def _truth_tasks(work: WorkBuild) -> pd.DataFrame:
    """Live truth tasks with their owning team and the state the vendors can show (Asana: canceled = done)."""
    tasks = work.live("tasks").copy()
    tasks["team"] = tasks["project_id"].map(work.company["projects"].set_index("project_id")["team"])
    tasks["shown_state"] = tasks["state"].where(~((tasks["system"] == "asana") & (tasks["state"] == "canceled")),
                                                "done")
    return tasks


def _nonzero(series: pd.Series) -> dict:
    return {k: v for k, v in series.items() if v}


def test_team_productivity_counts_work_like_the_truth(work: WorkBuild) -> None:
    mart = work.t("marts.team_productivity")
    assert not mart.duplicated(["team", "week"]).any()
    truth = _truth_tasks(work)
    done = truth[truth["shown_state"] == "done"]
    expected = done.groupby([done["team"], week(done["completed_at"])]).size()
    got = mart.set_index(["team", "week"])["tasks_completed"]
    assert _nonzero(got) == _nonzero(expected) and expected.sum() > 300
    created = truth.groupby([truth["team"], week(truth["created_at"])]).size()
    assert _nonzero(mart.set_index(["team", "week"])["tasks_created"]) == _nonzero(created)
    assert (mart["asana_tasks_completed"] + mart["linear_issues_completed"] == mart["tasks_completed"]).all()
    # every team-week from the team's first week on, quiet weeks included
    weeks = mart.groupby("team")["week"].agg(["min", "max", "size"])
    assert ((weeks["max"] - weeks["min"]).map(lambda d: d.days // 7 + 1) == weeks["size"]).all()


def test_team_productivity_counts_chat_like_the_truth(work: WorkBuild) -> None:
    mart = work.t("marts.team_productivity")
    msgs = work.message_keys()
    msgs = msgs[msgs["message_key"].isin(work.t("core.messages")["message_key"])]
    msgs["team"] = msgs["employee_id"].map(work.company["employees"].set_index("employee_id")["team"])
    expected = msgs.groupby([msgs["team"], week(msgs["created_at"])]).size()
    got = mart.set_index(["team", "week"])["messages"]
    assert "Unassigned" not in set(mart.loc[mart["messages"] > 0, "team"])  # engineers get their work team
    assert _nonzero(got) == _nonzero(expected)
    replies = msgs[msgs["thread_ts"].notna() & (msgs["thread_ts"] != msgs["ts"])]
    assert mart["thread_replies"].sum() == len(replies)
    assert (mart["active_members"] <= mart["messages"]).all() and mart["threads_started"].sum() > 100


def test_wip_and_open_work_at_the_latest_week(work: WorkBuild) -> None:
    mart = work.t("marts.team_productivity")
    latest = mart.sort_values("week").groupby("team").tail(1).set_index("team")
    truth = _truth_tasks(work)
    open_ = truth[truth["shown_state"].isin(["todo", "in_progress"])]
    wip = open_[open_["shown_state"] == "in_progress"].groupby("team").size()
    assert _nonzero(latest["wip"]) == _nonzero(wip) and wip.sum() > 0
    assert _nonzero(latest["open_tasks"]) == _nonzero(open_.groupby("team").size())
    assert (mart["wip"] <= mart["open_tasks"]).all()


def test_delivery_cycle_times_match_the_truth(work: WorkBuild) -> None:
    mart = work.t("marts.delivery_cycle_times")
    truth = _truth_tasks(work)
    done = truth[truth["shown_state"] == "done"]
    joined = mart.astype({"system_id": object}).merge(done, on=["system", "system_id"], how="outer", indicator=True,
                                                      suffixes=("", "_t"))
    assert joined["_merge"].eq("both").all() and len(mart) == len(done)
    lead = (joined["completed_at_t"] - joined["created_at_t"]) / pd.Timedelta(days=1)
    assert np.allclose(joined["lead_time_days"].astype(float), lead, atol=1e-6)
    cycle = (joined["completed_at_t"] - joined["started_at_t"]) / pd.Timedelta(days=1)
    linear = joined["system"] == "linear"
    assert np.allclose(joined.loc[linear, "cycle_time_days"].astype(float), cycle[linear], atol=1e-6)
    # Asana starts are dates: the cycle time is right to within the day
    asana = ~linear & joined["cycle_time_days"].notna()
    assert asana.sum() > 50 and (joined.loc[asana, "cycle_time_days"].astype(float) - cycle[asana]).abs().max() <= 1
    assert (joined["team"] == joined["team_t"]).all()
    assert (mart["completed_week"] == week(mart["completed_at"])).all()


def test_cycle_delivery_counts_issues_per_cycle(work: WorkBuild) -> None:
    mart = work.t("marts.cycle_delivery")
    cycles = work.company["cycles"].set_index("cycle_id")["system_id"]
    truth = _truth_tasks(work)
    issues = truth[truth["cycle_id"].notna()]
    per = issues.groupby(issues["cycle_id"].map(cycles)).agg(
        issues=("task_id", "size"), done=("state", lambda s: (s == "done").sum()))
    got = mart.set_index(mart["system_id"].astype(object))
    assert _nonzero(got["issues"]) == _nonzero(per["issues"])
    assert _nonzero(got["issues_completed"]) == _nonzero(per["done"]) and per["done"].sum() > 100
    assert (mart["issues_completed_in_cycle"] <= mart["issues_completed"]).all()
    rate = mart["completion_rate"].dropna()
    assert ((rate >= 0) & (rate <= 1)).all() and len(rate) > 0


def test_project_status_flags_the_planted_slip(work: WorkBuild) -> None:
    status = work.t("marts.project_status")
    projects = work.company["projects"].set_index("project_id")
    slips = work.company["anomalies"].query("kind == 'project_slip'")
    assert len(slips) > 0
    for _, slip in slips.iterrows():
        key = projects.at[slip["entity_id"], "system"] + ":" + projects.at[slip["entity_id"], "system_id"]
        row = status.set_index("project_key").loc[key]
        assert row["deadline_risk"], row
        assert str(row["due_on"]) == json.loads(slip["detail"])["new_due_on"]
    truth_status = projects.set_index("system_id")["status"]
    status = status.assign(truth_status=status["system_id"].astype(object).map(truth_status))
    assert not status.loc[status["truth_status"] == "completed", "deadline_risk"].any()
    assert status.loc[status["truth_status"] == "off_track", "deadline_risk"].all()
    flagged = status[status["deadline_risk"]]
    print(f"\nproject risk: {len(flagged)} of {len(status)} flagged ({flagged['risk_reason'].value_counts().to_dict()}"
          f"); truth: {status['truth_status'].value_counts().to_dict()}")
    truth = _truth_tasks(work)
    truth["project_key"] = truth["project_id"].map(projects["system"] + ":" + projects["system_id"])
    per = truth.groupby("project_key").agg(total=("task_id", "size"),
                                           done=("shown_state", lambda s: (s == "done").sum()),
                                           open=("shown_state", lambda s: s.isin(["todo", "in_progress"]).sum()))
    got = status.set_index("project_key")
    assert (got["tasks_total"] == per["total"].reindex(got.index, fill_value=0)).all()
    assert (got["tasks_done"] == per["done"].reindex(got.index, fill_value=0)).all()
    assert (got["tasks_open"] == per["open"].reindex(got.index, fill_value=0)).all()
    assert ((got["progress"].dropna() >= 0) & (got["progress"].dropna() <= 1)).all()


def test_workload_counts_open_work_per_assignee(work: WorkBuild) -> None:
    mart = work.t("marts.workload")
    assert not mart.duplicated(["assignee_employee_key", "team", "system"]).any()
    truth = _truth_tasks(work)
    open_ = truth[truth["shown_state"].isin(["todo", "in_progress"])]
    assert mart["open_tasks"].sum() == len(open_) > 0
    core = work.t("core.tasks")
    shown = core[core["state"].isin(["todo", "in_progress"])]
    keys = shown["assignee_id"].notna()
    employee = open_.set_index("system_id")["assignee_id"]
    key_of = pd.concat([work.employee_key("asana"), work.employee_key("linear")])
    key_of = key_of[~key_of.index.duplicated()]
    assert (shown.loc[keys, "assignee_employee_key"].to_numpy()
            == shown.loc[keys, "system_id"].astype(object).map(employee).map(key_of).to_numpy()).all()
    got = mart.groupby(mart["assignee_employee_key"].astype(object).fillna("-"))["open_tasks"].sum()
    expected = shown.groupby(shown["assignee_employee_key"].astype(object).fillna("-")).size()
    assert got.sort_index().to_dict() == expected.sort_index().to_dict()
    assert mart["assignee_name"].notna().sum() > 0 and (mart["overdue"] <= mart["open_tasks"]).all()


def test_knowledge_use_and_stale_pages(work: WorkBuild) -> None:
    pages = work.live("pages")
    pages = pages[~pages["archived"]]
    use = work.t("marts.knowledge_use")
    created = use.groupby("week")["pages_created"].sum()
    assert _nonzero(created) == week(pages["created_at"]).value_counts().to_dict()
    assert use["words_written"].sum() > 0 and use["slack_messages"].sum() == len(work.t("core.messages"))
    marts = work.t("marts.knowledge_pages").merge(pages, left_on="notion_id", right_on="system_id",
                                                  suffixes=("", "_t"))
    assert len(marts) == len(pages)
    idle = (work.company.now - marts["last_edited_at_t"]) / pd.Timedelta(days=1)
    assert (marts["is_stale"] == (idle > STALE_AFTER_DAYS)).all() and 0 < marts["is_stale"].sum() < len(marts)
    authors = work.t("marts.knowledge_authors")
    assert authors["pages_created"].sum() == len(pages) and authors["activity_rank"].min() == 1
    assert authors["employee_key"].is_unique


def test_pages_shared_in_slack_are_counted() -> None:
    now = pd.Timestamp("2026-03-02 12:00", tz="UTC")
    pages = pd.DataFrame({"page_key": ["notion:p1", "notion:p2"], "notion_id": ["p1", "p2"], "object": "page",
                          "title": ["RFC", "Old"], "database": None, "author_employee_key": ["e1", "e2"],
                          "last_edited_by_employee_key": ["e1", "e2"], "archived": False, "word_count": [10, 20],
                          "created_at": [now - pd.Timedelta(days=3), now - pd.Timedelta(days=400)],
                          "last_edited_at": [now - pd.Timedelta(days=1), now - pd.Timedelta(days=200)]})
    refs = pd.DataFrame({"message_key": ["m1", "m2", "m3"], "channel_key": "c", "employee_key": ["e2", "e3", "e3"],
                         "sent_at": now, "ref_type": "notion_page", "ref_key": ["notion:p1"] * 3, "matched": "p1"})
    messages = pd.DataFrame({"sent_at": [now] * 3, "employee_key": ["e2", "e3", "e3"], "is_bot": False})
    employees = pd.DataFrame({"employee_key": ["e1", "e2", "e3"], "full_name": ["A", "B", "C"],
                              "team": ["Data", "Apps", "Apps"]})
    marts = build_knowledge_marts(pages, messages, refs, employees, employees.set_index("employee_key")["team"], now)
    page = marts["knowledge_pages"].set_index("page_key")
    assert page.loc["notion:p1", "slack_shares"] == 3 and page.loc["notion:p1", "slack_sharers"] == 2
    assert page.loc["notion:p2", "slack_shares"] == 0 and page.loc["notion:p2", "is_stale"]
    use = marts["knowledge_use"].set_index(["team", "week"])
    assert use["notion_links_shared"].sum() == 3 and use.loc[("Apps", week(pd.Series([now])).iloc[0]),
                                                             "pages_shared"] == 1
    authors = marts["knowledge_authors"].set_index("employee_key")
    assert authors.loc["e3", "notion_links_shared"] == 2 and authors.loc["e1", "activity_rank"] == 1


def test_marts_carry_no_message_text(work: WorkBuild) -> None:
    texts = set(work.live("messages")["text"].dropna())
    texts = {t for t in texts if len(t.split()) >= 3}
    for name in WORK_TABLES:
        if not name.startswith("marts."):
            continue
        frame = work.t(name)
        assert "text" not in frame.columns, name
        for column in frame.columns:
            if frame[column].dtype == object or isinstance(frame[column].dtype, pd.StringDtype):
                assert not frame[column].dropna().astype(str).isin(texts).any(), f"{name}.{column} holds message text"


def test_published_snapshot_has_the_same_work_tables(transformed) -> None:
    """Every table is in the snapshot the full chain (STEPS) published, on each engine, and the
    time-independent ones hold the same rows as the in-process pandas build."""
    work = work_build(transformed)
    wh = open_warehouse(transformed.config)
    try:
        with wh.reader() as reader:
            for name in WORK_TABLES:
                count = reader.query(f"select count(*) as n from {name}").column("n")[0].as_py()
                assert count > 0, name
                if name in ("core.tasks", "core.messages", "core.pages", "marts.delivery_cycle_times",
                            "marts.cycle_delivery", "marts.knowledge_pages"):
                    assert count == len(work.t(name)), name
            done = reader.query("select system, count(*) as n, sum(lead_time_days) as lead "
                                "from marts.delivery_cycle_times group by system order by system").to_pandas()
    finally:
        wh.close()
    mine = work.t("marts.delivery_cycle_times").groupby("system").agg(n=("task_key", "size"),
                                                                       lead=("lead_time_days", "sum"))
    assert done["n"].tolist() == mine["n"].tolist()
    assert np.allclose(done["lead"].astype(float), mine["lead"].astype(float))


class _NoSources(TransformContext):
    """A company that connects none of Slack, Asana, Linear, Notion, Looker (raw reads are empty)."""

    def __init__(self) -> None:
        self.as_of = datetime(2026, 1, 5, tzinfo=UTC)
        self._written = {name: pd.DataFrame({c: pd.Series(dtype="string") for c in columns}) for name, columns in {
            "core.employee_xref": ["employee_key", "system", "system_id", "match_rule"],
            "core.accounts": ["account_key", "name", "domain"],
            "core.employees": ["employee_key", "full_name", "team"]}.items()}

    def raw(self, vendor: str, table: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in columns or ()})

    def write(self, schema: str, name: str, frame: pd.DataFrame) -> int:
        self._written[f"{schema}.{name}"] = frame
        return to_arrow(frame).num_rows


def test_every_table_builds_empty_without_the_sources() -> None:
    ctx = _NoSources()
    core_work(ctx)
    work_marts(ctx)
    for name in WORK_TABLES:
        assert len(ctx.table(name)) == 0 and len(ctx.table(name).columns) > 2, name


def test_every_work_table_is_documented() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "data-model.md").read_text()
    headings = [line for line in doc.splitlines() if line.startswith("### ")]
    for name in WORK_TABLES:
        assert any(name in heading for heading in headings), f"{name} has no section in docs/data-model.md"
