"""What a report notebook is made of: a header, narrative sentences, KPI tiles, charts and tables.

::

    from sophia_lib.reports.kit import Report
    report = Report("Weekly executive summary", grain="week")
    pipeline = report.change("pipeline_value", label="pipeline")
    report.narrative([pipeline, report.change("bookings")])      # "Pipeline rose 12 % to $4.1M …"
    report.chart(ui.line(...))
    report.finish()                                              # the summary the mail and Slack carry

Every number comes through the query door (``sophia_lib.metric``) under the role the copy is made for;
the units come from metrics.yaml. :meth:`Report.finish` displays the summary as a
``application/vnd.sophia.report+json`` output that :mod:`sophia_lib.reports.render` reads back from the
executed notebook (and leaves out of the rendered page).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from sophia_lib.dashboards import ui
from sophia_lib.reports.auth import adopt_job_token
from sophia_lib.reports.narrative import Change

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

SUMMARY_MIME = "application/vnd.sophia.report+json"

STYLE = """
<style>
.sophia-report{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#0f172a;max-width:1000px}
.sophia-report h1{font-size:1.6rem;margin:.2rem 0}
.sophia-report .meta{color:#475569;font-size:.85rem;margin-bottom:.6rem}
.sophia-report ul.narrative{font-size:1.02rem;line-height:1.5;margin:.4rem 0 .8rem 1.1rem;padding:0}
.sophia-report ul.narrative li.good{color:#166534}.sophia-report ul.narrative li.bad{color:#991b1b}
@media print{.sophia-chart,.sophia-tiles,table{break-inside:avoid}
  .sophia-table{display:table;font-size:.72rem}.sophia-table th,.sophia-table td{white-space:normal}}
</style>
"""


class Report:
    """One report copy: reads metrics for the role it runs as, and collects the summary sentences."""

    def __init__(self, title: str, *, grain: str = "week", subtitle: str | None = None) -> None:
        adopt_job_token()
        self.title = title
        self.grain = grain
        self.subtitle = subtitle
        self.data = ui.Data()
        self.summary: list[str] = []
        self.role = self._role()
        ui.show_html(ui.STYLE + STYLE)

    @staticmethod
    def _role() -> str | None:
        from sophia_lib.query.client import default_client

        return default_client().whoami().get("role")

    # -- numbers --------------------------------------------------------------------------------------

    def metric(self, name: str, *, grain: str | None = None, by: Sequence[str] = (),
               where: dict[str, Any] | None = None) -> pd.DataFrame:
        return self.data.metric(name, grain=grain or ui.grain_for(name, self.grain), by=by, where=where)

    @property
    def today(self) -> date:
        """The day the data describes (the snapshot's "as of")."""
        if self.data.as_of is None:
            self.metric("bookings", grain="month")
        return self.data.today

    def period(self, grain: str | None = None) -> date:
        """Start of the period a report speaks of: the last complete one (a report runs early in the next
        period, so the running one has barely begun). Stocks are read at that period's end."""
        grain = grain or self.grain
        return ui.period_start(ui.period_start(self.today, grain) - timedelta(days=1), grain)

    def change(self, name: str, *, label: str | None = None, grain: str | None = None,
               higher_is_better: bool = True, where: dict[str, Any] | None = None) -> Change:
        """The metric in the report's last complete period against the period before."""
        metric = ui.catalog().get(name)
        grain = ui.grain_for(name, grain or self.grain)
        frame = self.metric(name, grain=grain, where=where)
        current = self.period(grain)
        previous = ui.period_start(current - timedelta(days=1), grain)
        values: dict[date, float | None] = {}
        for when, value in zip(frame[grain], frame[name], strict=True) if not frame.empty else ():
            values[ui._as_date(when)] = None if value is None or value != value else float(value)
        return Change(label or metric.display.lower(), values.get(current), values.get(previous), metric.unit,
                      f"in {period_text(current, grain)}", higher_is_better)

    def series(self, name: str, *, periods: int = 12, grain: str | None = None, by: Sequence[str] = (),
               where: dict[str, Any] | None = None) -> pd.DataFrame:
        """The last ``periods`` complete periods of a metric (for charts and tables)."""
        grain = ui.grain_for(name, grain or self.grain)
        frame = self.metric(name, grain=grain, by=by, where=where)
        last = self.period(grain)
        first = last
        for _ in range(periods - 1):
            first = ui.period_start(first - timedelta(days=1), grain)
        if frame.empty:
            return frame
        dates = frame[grain].map(ui._as_date)
        return frame[(dates >= first) & (dates <= last)].reset_index(drop=True)

    # -- the page -------------------------------------------------------------------------------------

    def header(self) -> None:
        as_of = self.data.as_of or "no data yet"
        for_role = f" · prepared for the {self.role.replace('_', ' ')} role" if self.role else ""
        sub = f"<div class='meta'>{html.escape(self.subtitle)}</div>" if self.subtitle else ""
        ui.show_html(f"<div class='sophia-report'><h1>{html.escape(self.title)}</h1>{sub}"
                     f"<div class='meta'>Data as of {html.escape(str(as_of)[:16].replace('T', ' '))} UTC"
                     f"{html.escape(for_role)}</div></div>")

    def narrative(self, changes: Sequence[Change | str], *, heading: str | None = None) -> list[str]:
        """Sentences from changes (and plain strings), shown as a list and added to the summary."""
        items, sentences = [], []
        for entry in changes:
            text = entry if isinstance(entry, str) else entry.sentence()
            css = "" if isinstance(entry, str) or entry.good is None else ("good" if entry.good else "bad")
            items.append(f"<li class='{css}'>{html.escape(text)}</li>")
            sentences.append(text)
        title = f"<h2 class='sophia-section'>{html.escape(heading)}</h2>" if heading else ""
        ui.show_html(f"<div class='sophia-report'>{title}<ul class='narrative'>{''.join(items)}</ul></div>")
        self.summary.extend(sentences)
        return sentences

    def section(self, title: str, note: str | None = None) -> None:
        ui.section(title, note)

    def tiles(self, changes: Sequence[Change]) -> None:
        tiles = [ui.Tile(c.label[:1].upper() + c.label[1:], c.value, c.previous, c.unit, c.period.removeprefix("in "),
                         [], c.higher_is_better) for c in changes]
        ui.show_html('<div class="sophia-tiles">' + "".join(t.html() for t in tiles) + "</div>")

    def chart(self, fig: go.Figure, height: int = 320) -> None:
        ui.chart(fig, height)

    def table(self, frame: pd.DataFrame, columns: dict[str, str] | None = None, limit: int = 15) -> None:
        ui.table(frame, columns, limit)

    def optional(self, title: str, draw: Callable[[], None]) -> None:
        """A section only some roles may see: a role the policy refuses gets a note instead of an error."""
        from sophia_lib.query.errors import ForbiddenError

        self.section(title)
        try:
            draw()
        except ForbiddenError:
            ui.note(f"Not included: the {(self.role or 'current').replace('_', ' ')} role does not read these "
                    "details (ask an analyst).")

    def customers_to_call(self, accounts: int = 5, limit: int = 12) -> None:
        """The active customers with the lowest health and their contacts (core.people): shown to roles that
        read core.*, masked as the policy says (analysts see hashed emails); other roles get a note."""
        def draw() -> None:
            frame = self.data.sql(
                "WITH low AS (SELECT account_key, account_name, health_score, band FROM marts.customer_health "
                "WHERE NOT is_churned ORDER BY health_score, account_name LIMIT :accounts) "
                "SELECT low.account_name, round(low.health_score) AS health_score, low.band, p.full_name, p.title, "
                "p.email, p.phone FROM low JOIN core.people p ON p.account_key = low.account_key "
                "ORDER BY low.health_score, low.account_name, p.full_name LIMIT :limit",
                {"accounts": accounts, "limit": limit})
            self.table(frame, {"account_name": "Account", "health_score": "Health", "band": "Band",
                               "full_name": "Contact", "title": "Title", "email": "Email", "phone": "Phone"}, limit)

        self.optional("Customers to call", draw)

    def finish(self, **extra: Any) -> None:
        """Display the summary record the distribution reads back (title, as of, role, sentences)."""
        from IPython.display import display

        record = {"title": self.title, "subtitle": self.subtitle, "as_of": self.data.as_of,
                  "snapshot_id": self.data.snapshot_id, "role": self.role, "summary": list(self.summary), **extra}
        display({SUMMARY_MIME: record, "text/plain": ""}, raw=True)


def period_text(start: date, grain: str) -> str:
    """``the week of 3 Nov``, ``Oct 2025``, ``Q3 2025``."""
    if grain == "week":
        return f"the week of {start.day} {start:%b}"
    if grain == "day":
        return f"{start.day} {start:%b %Y}"
    return ui.period_label(start, grain)
