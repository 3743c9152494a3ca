"""The reports Sophia ships: which notebook, which variants, which dashboard explains them.

A report's name is the name of the scheduled job that produces it (``pipelines/schedule.yaml``), so
``reports.audiences`` in sophia.yaml and ``sophia reports send NAME`` use the names ``sophia jobs list``
shows. The notebook stem is accepted as an alias (``sophia reports render monthly_scorecard``).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sophia_lib.errors import SophiaError

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks" / "reports"
DEPARTMENTS: tuple[str, ...] = ("sales", "marketing", "customer_success", "finance", "operations")
DEPARTMENT_DASHBOARDS = {"sales": "sales", "marketing": "marketing", "customer_success": "customer-success",
                         "finance": "finance", "operations": "operations"}


class UnknownReportError(SophiaError):
    reason = "unknown_report"


@dataclass(frozen=True)
class ReportSpec:
    name: str
    title: str
    notebook: Path
    dashboard: str
    by_department: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)

    def parameters_for(self, department: str | None) -> dict[str, Any]:
        return {**self.parameters, **({"department": department} if department else {})}

    def dashboard_for(self, department: str | None) -> str:
        return DEPARTMENT_DASHBOARDS.get(department or "", self.dashboard)

    def title_for(self, department: str | None) -> str:
        if not self.by_department:
            return self.title
        return f"{self.title}: {department.replace('_', ' ')}" if department else f"{self.title}s"


REPORTS: dict[str, ReportSpec] = {spec.name: spec for spec in (
    ReportSpec("weekly_exec_summary", "Weekly executive summary", NOTEBOOKS / "weekly_exec_summary.ipynb",
               "executive-overview"),
    ReportSpec("monthly_department_scorecards", "Monthly department scorecard", NOTEBOOKS / "monthly_scorecard.ipynb",
               "executive-overview", by_department=True),
    ReportSpec("quarterly_business_review", "Quarterly business review",
               NOTEBOOKS / "quarterly_business_review.ipynb", "executive-overview"),
)}


def get_report(name: str) -> ReportSpec:
    """The report called ``name`` (a job name, or its notebook's stem)."""
    if name in REPORTS:
        return REPORTS[name]
    for spec in REPORTS.values():
        if spec.notebook.stem == name:
            return spec
    guess = difflib.get_close_matches(name, [*REPORTS, *(s.notebook.stem for s in REPORTS.values())], n=1)
    hint = f" — did you mean {guess[0]!r}?" if guess else "."
    raise UnknownReportError(f"no report {name!r}{hint} Reports: {', '.join(REPORTS)}.",
                             fix="run `sophia reports list` for the names")


def check_department(spec: ReportSpec, department: str | None) -> None:
    if department is None:
        return
    if not spec.by_department:
        raise UnknownReportError(f"{spec.name} is not made per department, so department {department} does not "
                                 "apply.", fix="drop --department, or render monthly_department_scorecards")
    if department not in DEPARTMENTS:
        raise UnknownReportError(f"no department {department!r}.", fix=f"use one of: {', '.join(DEPARTMENTS)}")
