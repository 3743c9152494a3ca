"""Shared setup of the work-and-knowledge tests: the entities, work core and work marts steps run once,
in-process, over the published small sandbox with ``as_of`` = the company's "now" (so overdue, WIP and
staleness line up with the ground truth), plus maps from the truth's canonical ids to the keys the
transforms gave them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from sophia_lib.sandbox.company import Company
from sophia_lib.transforms import TransformContext
from sophia_lib.transforms.entities import entities
from sophia_lib.transforms.marts_work import work_marts
from sophia_lib.transforms.work import core_work
from sophia_lib.warehouse import open_warehouse
from tests.transforms.conftest import ReaderBuilder, Transformed

_CACHE: dict[str, WorkBuild] = {}


@dataclass
class WorkBuild:
    ctx: TransformContext
    company: Company

    def t(self, name: str) -> pd.DataFrame:
        return self.ctx.table(name)

    def live(self, name: str) -> pd.DataFrame:
        return self.company.live(name)

    def employee_key(self, system: str) -> pd.Series:
        """Truth employee_id → the employee_key core gave that person's ``system`` user."""
        return _truth_keys(self.company, "employee", self.t("core.employee_xref"), "employee_key", system)

    def account_key(self) -> pd.Series:
        """Truth account_id → account_key (the most common key over the account's CRM records)."""
        return _truth_keys(self.company, "account", self.t("core.account_xref"), "account_key")

    def message_keys(self) -> pd.DataFrame:
        """Live truth messages with the ``message_key`` core derives (``slack:<channel>:<ts>``)."""
        msgs = self.live("messages").merge(self.company["channels"][["channel_id", "system_id"]], on="channel_id")
        return msgs.assign(message_key="slack:" + msgs["system_id"] + ":" + msgs["ts"])


def _truth_keys(company: Company, entity: str, xref: pd.DataFrame, key: str, system: str | None = None) -> pd.Series:
    presence = company["presence"]
    presence = presence[(presence["entity"] == entity) & presence["deleted_at"].isna()]
    if system is not None:
        presence = presence[presence["system"] == system]
    joined = presence[["entity_id", "system", "system_id"]].astype("string").merge(
        xref[["system", "system_id", key]].astype("string"), on=["system", "system_id"])
    return joined.groupby("entity_id")[key].agg(lambda s: s.mode().iloc[0])


def work_build(transformed: Transformed) -> WorkBuild:
    """The steps' frames for this snapshot, built once per session."""
    cached = _CACHE.get(transformed.snapshot.id)
    if cached is not None:
        return cached
    wh = open_warehouse(transformed.config)
    try:
        with wh.reader() as reader:
            builder: Any = ReaderBuilder(reader)
            ctx = TransformContext(builder, transformed.company.now.to_pydatetime())
            for step in (entities, core_work, work_marts):
                step(ctx)
    finally:
        wh.close()
    _CACHE[transformed.snapshot.id] = WorkBuild(ctx, transformed.company)
    return _CACHE[transformed.snapshot.id]


def week(stamps: pd.Series) -> pd.Series:
    """Monday of the UTC week, as a date (the marts' ``week`` columns)."""
    day = pd.to_datetime(stamps, utc=True).dt.floor("D")
    return (day - pd.to_timedelta(day.dt.day_of_week, unit="D")).dt.date
