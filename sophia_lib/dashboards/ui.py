"""Building blocks of the dashboard notebooks: KPI tiles, charts, the "as of" stamp and the filter bar.

A dashboard notebook stays short: it declares its filters and a ``render(filters)`` function made of
:func:`kpis` and :func:`chart` calls over ``sophia_lib.metric``. :class:`Dashboard` runs it in both modes:

- ``snapshot`` (papermill, then static HTML): render once with the parameters; the filter bar is a
  read-only summary, charts are plotly HTML (interactive without a kernel).
- ``live`` (Voila): real ipywidgets; changing a filter re-renders into an ``Output`` widget.

Every chart is displayed as a MIME bundle holding both the plotly JSON (Voila and JupyterLab render it
with the plotly extension) and an HTML fallback (nbconvert's static page uses that). Layout is a CSS
grid that folds to one column on a phone.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

TMode = Literal["snapshot", "live"]
TPeriod = Literal["month", "quarter", "year"]
PERIODS: tuple[TPeriod, ...] = ("month", "quarter", "year")
SPARK_POINTS = 12
ALL = "all"
PALETTE = ["#2563eb", "#16a34a", "#f59e0b", "#dc2626", "#7c3aed", "#0891b2", "#db2777", "#65a30d"]

STYLE = """
<style>
.sophia-dash{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#0f172a;max-width:1200px}
.sophia-head{display:flex;flex-wrap:wrap;align-items:baseline;gap:.25rem 1rem;margin:.25rem 0 .5rem}
.sophia-head h1{font-size:1.5rem;margin:0}
.sophia-asof{color:#475569;font-size:.9rem}
.sophia-asof.stale{color:#b45309;font-weight:600}
.sophia-filters{color:#475569;font-size:.85rem;margin:.25rem 0 .75rem}
.sophia-section{font-size:1.1rem;margin:1.25rem 0 .5rem;border-bottom:1px solid #e2e8f0;padding-bottom:.25rem}
.sophia-tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(165px,1fr));gap:.6rem;margin:.5rem 0}
.sophia-tile{border:1px solid #e2e8f0;border-radius:10px;padding:.6rem .75rem;background:#fff}
.sophia-tile .label{font-size:.8rem;color:#475569}
.sophia-tile .value{font-size:1.45rem;font-weight:650;margin:.1rem 0}
.sophia-tile .delta{font-size:.8rem}
.sophia-tile .delta.up{color:#15803d}.sophia-tile .delta.down{color:#b91c1c}.sophia-tile .delta.flat{color:#64748b}
.sophia-tile .period{font-size:.72rem;color:#94a3b8}
.sophia-tile svg{width:100%;height:32px;display:block;margin-top:.25rem}
.sophia-note{color:#64748b;font-size:.85rem}
.sophia-table{border-collapse:collapse;font-size:.85rem;width:100%;overflow-x:auto;display:block}
.sophia-table th,.sophia-table td{padding:.25rem .5rem;border-bottom:1px solid #e2e8f0;text-align:left;
  white-space:nowrap}
@media (max-width:600px){.sophia-head h1{font-size:1.2rem}.sophia-tile .value{font-size:1.2rem}}
</style>
"""

# Updates "N min ago" in the browser, so a snapshot viewed an hour later still tells the truth.
ASOF_SCRIPT = """
<script>
(function(){
  function upd(){document.querySelectorAll('.sophia-asof[data-as-of]').forEach(function(el){
    var t=new Date(el.getAttribute('data-as-of'));if(isNaN(t))return;
    var m=Math.max(0,Math.round((Date.now()-t.getTime())/60000));
    var hh=String(t.getHours()).padStart(2,'0')+':'+String(t.getMinutes()).padStart(2,'0');
    var ago=m<60?m+' min ago':(m<2880?Math.round(m/60)+' h ago':Math.round(m/1440)+' days ago');
    el.textContent='Data as of '+hh+' ('+ago+')';el.classList.toggle('stale',m>120);});}
  upd();setInterval(upd,30000);
})();
</script>
"""


# -- filters ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """What the viewer picked. ``all`` means no filter on that dimension."""

    period: TPeriod = "quarter"
    segment: str = ALL
    region: str = ALL
    team: str = ALL

    def where(self, dimensions: Iterable[str]) -> dict[str, str] | None:
        """The filters a metric with these dimensions can take (``team`` maps to owner_team where relevant)."""
        dims = set(dimensions)
        out: dict[str, str] = {}
        for name in ("segment", "region"):
            value = getattr(self, name)
            if value != ALL and name in dims:
                out[name] = value
        if self.team != ALL:
            column = next((c for c in ("team", "owner_team") if c in dims), None)
            if column:
                out[column] = self.team
        return out or None

    def apply(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Rows of a table matching the filters, on the columns it has (``team`` also matches owner_team)."""
        for name, columns in (("segment", ("segment",)), ("region", ("region",)),
                              ("team", ("team", "owner_team", "assignee_team"))):
            value = getattr(self, name)
            column = next((c for c in columns if c in frame.columns), None)
            if value != ALL and column is not None:
                frame = frame[frame[column] == value]
        return frame.reset_index(drop=True)

    def describe(self) -> str:
        parts = [f"by {self.period}"] + [f"{k}: {v}" for k, v in (("segment", self.segment), ("region", self.region),
                                                                     ("team", self.team)) if v != ALL]
        return " · ".join(parts)


# -- periods ------------------------------------------------------------------------------------------


def period_start(day: date, grain: str) -> date:
    if grain == "day":
        return day
    if grain == "week":
        return day - timedelta(days=day.weekday())
    if grain == "month":
        return day.replace(day=1)
    if grain == "quarter":
        return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
    if grain == "year":
        return date(day.year, 1, 1)
    raise ValueError(f"unknown grain {grain!r}")


def period_label(start: date, grain: str) -> str:
    if grain == "quarter":
        return f"Q{(start.month - 1) // 3 + 1} {start.year}"
    if grain == "month":
        return start.strftime("%b %Y")
    if grain == "year":
        return str(start.year)
    return start.isoformat()


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return datetime.fromisoformat(str(value)[:10]).date()


# -- data ---------------------------------------------------------------------------------------------


class Data:
    """Metric reads through the query door, remembering the snapshot's "as of" for the stamp."""

    def __init__(self) -> None:
        from sophia_lib.dashboards.live import adopt_viewer_token

        adopt_viewer_token()  # live (Voila) kernels query as their viewer
        self.as_of: str | None = None
        self.snapshot_id: str | None = None

    def metric(self, name: str, *, grain: str | None = None, by: Sequence[str] = (),
               filters: Filters | None = None, where: dict[str, Any] | None = None) -> pd.DataFrame:
        import sophia_lib as sl

        combined = dict(filters.where(dimensions(name)) or {}) if filters else {}
        combined.update(where or {})
        frame = sl.metric(name, by=list(by) or None, grain=grain, where=combined or None)
        self._seen(frame)
        return frame

    def sql(self, query: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
        import sophia_lib as sl

        frame = sl.sql(query, params)
        self._seen(frame)
        return frame

    def table(self, name: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
        import sophia_lib as sl

        frame = sl.table(name, columns=list(columns) if columns else None)
        self._seen(frame)
        return frame

    def _seen(self, frame: pd.DataFrame) -> None:
        as_of = frame.attrs.get("as_of")
        if as_of and (self.as_of is None or as_of > self.as_of):
            self.as_of, self.snapshot_id = as_of, frame.attrs.get("snapshot_id")

    @property
    def today(self) -> date:
        """The day the data describes: the snapshot's "as of" (not the wall clock of whoever renders)."""
        return _as_date(self.as_of) if self.as_of else datetime.now(UTC).date()


def catalog():  # -> MetricCatalog
    from sophia_lib.metrics import load_catalog

    return load_catalog()


def dimensions(name: str) -> list[str]:
    return catalog().dimensions(name)


def grain_for(name: str, wanted: str) -> str:
    """``wanted`` if the metric has it, else its default grain."""
    metric = catalog().get(name)
    return wanted if wanted in metric.grains else metric.default_grain


def is_stock(name: str) -> bool:
    """A stock (ARR, open pipeline, customers) is read at the current period; a flow at the last complete one."""
    cat = catalog()
    metric = cat.get(name)
    if getattr(metric, "snapshot", None):
        return True
    if metric.type in ("simple", "cumulative"):
        return "end of the period" in metric.description or metric.type == "cumulative"
    return bool(cat.inputs(metric)) and all(is_stock(child) for child in cat.inputs(metric))


# -- formatting ---------------------------------------------------------------------------------------


def fmt(value: float | None, unit: str) -> str:
    """A number as an executive reads it: $1.2M, 12.5%, 3.2 d, 1,204."""
    if value is None or value != value:  # None or NaN
        return "–"
    if unit == "currency":
        return _short(value, "$")
    if unit in ("ratio", "percent"):
        return f"{value * 100:.1f}%" if unit == "ratio" else f"{value:.1f}%"
    if unit == "days":
        return f"{value:.1f} d"
    if unit == "seconds":
        return f"{value / 3600:.1f} h" if value >= 3600 else f"{value / 60:.0f} min"
    if unit == "minutes":
        return _short(value, "") + " min"
    if unit == "score":
        return f"{value:.1f}"
    return _short(value, "")


def _short(value: float, prefix: str) -> str:
    sign = "-" if value < 0 else ""
    value = abs(value)
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if value >= limit:
            return f"{sign}{prefix}{value / limit:.1f}{suffix}"
    return f"{sign}{prefix}{value:,.0f}" if value >= 100 or value == int(value) else f"{sign}{prefix}{value:.2f}"


# -- KPI tiles ----------------------------------------------------------------------------------------


@dataclass
class Tile:
    """One KPI: value of its period, change against the period before, and a sparkline."""

    label: str
    value: float | None
    previous: float | None
    unit: str
    period: str
    series: list[float] = field(default_factory=list)
    higher_is_better: bool = True
    compare: bool = True

    @property
    def change(self) -> float | None:
        if self.value is None or self.previous in (None, 0) or self.previous != self.previous:
            return None
        return (self.value - self.previous) / abs(self.previous)

    def html(self) -> str:
        change = self.change
        if not self.compare:
            delta, css = "", "flat"
        elif change is None:
            delta, css = "no prior period", "flat"
        else:
            arrow = "▲" if change > 0.0005 else "▼" if change < -0.0005 else "■"
            good = (change > 0) == self.higher_is_better
            css = "flat" if arrow == "■" else "up" if good else "down"
            delta = f"{arrow} {abs(change) * 100:.1f}% vs prior"
        return (f'<div class="sophia-tile"><div class="label">{html.escape(self.label)}</div>'
                f'<div class="value">{html.escape(fmt(self.value, self.unit))}</div>'
                f'<div class="delta {css}">{html.escape(delta)}</div>'
                f'<div class="period">{html.escape(self.period)}</div>{sparkline(self.series)}</div>')


def sparkline(values: Sequence[float], width: int = 120, height: int = 32) -> str:
    """An inline SVG line (no JavaScript, so it renders in static snapshots and e-mails alike)."""
    points = [float(v) for v in values if v is not None and v == v]
    if len(points) < 2:
        return ""
    low, high = min(points), max(points)
    span = (high - low) or 1.0
    step = width / (len(points) - 1)
    coords = " ".join(f"{i * step:.1f},{height - 2 - (v - low) / span * (height - 4):.1f}"
                      for i, v in enumerate(points))
    return (f'<svg viewBox="0 0 {width} {height}" preserveAspectRatio="none" role="img" aria-label="trend">'
            f'<polyline fill="none" stroke="#2563eb" stroke-width="2" points="{coords}"/></svg>')


def kpi(data: Data, name: str, filters: Filters, *, label: str | None = None,
        higher_is_better: bool = True, where: dict[str, Any] | None = None) -> Tile:
    """A tile for a metric at the filters' period: stocks at the current period, flows at the last complete one."""
    metric = catalog().get(name)
    grain = grain_for(name, filters.period)
    frame = data.metric(name, grain=grain, filters=filters, where=where)
    current = period_start(data.today, grain)
    if not is_stock(name):
        current = period_start(current - timedelta(days=1), grain)
    values: dict[date, float] = {}
    if not frame.empty:
        for when, value in zip(frame[grain], frame[name], strict=True):
            values[_as_date(when)] = None if value is None or value != value else float(value)
    upto = sorted(d for d in values if d <= current)
    value = values.get(current)
    before = [d for d in upto if d < current]
    previous = values.get(before[-1]) if before and before[-1] == period_start(current - timedelta(days=1), grain) \
        else None
    series = [values[d] for d in upto[-SPARK_POINTS:] if values[d] is not None]
    suffix = " so far" if is_stock(name) and current == period_start(data.today, grain) else ""
    return Tile(label or metric.display, value, previous, metric.unit, f"{period_label(current, grain)}{suffix}",
                series, higher_is_better)


def kpis(data: Data, filters: Filters, names: Sequence[str | tuple[str, dict[str, Any]]]) -> None:
    """A row of tiles; an entry is a metric name or ``(name, {"label": …, "higher_is_better": False})``."""
    tiles = []
    for entry in names:
        name, options = (entry, {}) if isinstance(entry, str) else entry
        tiles.append(kpi(data, name, filters, **options))
    show_html('<div class="sophia-tiles">' + "".join(t.html() for t in tiles) + "</div>")


# -- charts and text ----------------------------------------------------------------------------------


def show_html(markup: str) -> None:
    from IPython.display import HTML, display

    display(HTML(markup))


def section(title: str, note: str | None = None) -> None:
    extra = f'<div class="sophia-note">{html.escape(note)}</div>' if note else ""
    show_html(f'<div class="sophia-dash"><h2 class="sophia-section">{html.escape(title)}</h2>{extra}</div>')


def note(text: str) -> None:
    show_html(f'<div class="sophia-dash sophia-note">{html.escape(text)}</div>')


def chart(fig: go.Figure, height: int = 340) -> None:
    """Show a plotly figure: plotly JSON for Voila/JupyterLab, HTML for the static snapshot."""
    from IPython.display import display

    fig.update_layout(height=height, autosize=True, margin={"l": 40, "r": 10, "t": 40, "b": 40},
                      legend={"orientation": "h", "yanchor": "top", "y": -0.15}, template="plotly_white",
                      colorway=PALETTE, font={"size": 12}, title={"font": {"size": 14}})
    config = {"responsive": True, "displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"]}
    spec = fig.to_plotly_json()
    spec["config"] = config
    markup = fig.to_html(include_plotlyjs=False, full_html=False, config=config, default_width="100%",
                         default_height=f"{height}px")
    display({"application/vnd.plotly.v1+json": json.loads(json.dumps(spec, default=_jsonable)),
             "text/html": f'<div class="sophia-chart">{markup}</div>'}, raw=True)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, date | datetime):
        return value.isoformat()
    return str(value)


def line(frame: pd.DataFrame, x: str, y: str | Sequence[str], title: str, color: str | None = None,
         unit: str | None = None) -> go.Figure:
    import plotly.express as px

    fig = px.line(frame, x=x, y=y, color=color, title=title, markers=True)
    return _axis(fig, unit)


def bar(frame: pd.DataFrame, x: str, y: str | Sequence[str], title: str, color: str | None = None,
        unit: str | None = None, horizontal: bool = False, stacked: bool = True) -> go.Figure:
    import plotly.express as px

    if horizontal:
        fig = px.bar(frame, x=y, y=x, color=color, title=title, orientation="h")
    else:
        fig = px.bar(frame, x=x, y=y, color=color, title=title,
                     barmode="stack" if stacked else "group")
    return _axis(fig, unit, horizontal)


def _axis(fig: go.Figure, unit: str | None, horizontal: bool = False) -> go.Figure:
    fmt_ = {"currency": "$~s", "ratio": ".0%", "count": "~s"}.get(unit or "")
    if fmt_:
        (fig.update_xaxes if horizontal else fig.update_yaxes)(tickformat=fmt_)
    fig.update_xaxes(title=None) if not horizontal else fig.update_yaxes(title=None)
    return fig


def recent(frame: pd.DataFrame, column: str, periods: int, today: date) -> pd.DataFrame:
    """The rows of the last ``periods`` distinct values of ``column`` up to ``today`` (drops future budget rows)."""
    if frame.empty:
        return frame
    dates = frame[column].map(_as_date)
    keep = sorted({d for d in dates if d <= today})[-periods:]
    return frame[dates.isin(keep)].reset_index(drop=True)


def table(frame: pd.DataFrame, columns: dict[str, str] | None = None, limit: int = 15) -> None:
    """A small HTML table (escaped) with friendly headers."""
    if frame.empty:
        show_html('<div class="sophia-dash sophia-note">None.</div>')
        return
    view = frame.head(limit)
    if columns:
        view = view[list(columns)].rename(columns=columns)
    show_html('<div class="sophia-dash">' + view.to_html(index=False, classes="sophia-table", border=0,
                                                          na_rep="–", float_format=lambda v: f"{v:,.1f}") + "</div>")


# -- the page -----------------------------------------------------------------------------------------


def asof_stamp(as_of: str | None) -> str:
    if not as_of:
        return '<span class="sophia-asof stale">No data yet: the first refresh has not run</span>'
    moment = datetime.fromisoformat(as_of)
    minutes = max(0, int((datetime.now(UTC) - moment).total_seconds() // 60))
    return (f'<span class="sophia-asof" data-as-of="{html.escape(moment.isoformat())}">'
            f'Data as of {moment:%H:%M} UTC ({minutes} min ago)</span>')


@dataclass
class Dashboard:
    """One dashboard page: a title, the filters it offers, and the function that draws it.

    ``options`` lists the values each filter offers (``{"segment": ["Enterprise", …]}``); a filter
    absent from it is not shown.
    """

    title: str
    render: Callable[[Data, Filters], None]
    filters: Filters = field(default_factory=Filters)
    mode: TMode = "live"
    options: dict[str, list[str]] = field(default_factory=dict)
    subtitle: str | None = None

    def show(self) -> None:
        if self.mode not in ("snapshot", "live"):
            raise ValueError(f"mode must be 'snapshot' or 'live', not {self.mode!r}")
        if self.mode == "snapshot":
            self._snapshot()
        else:
            self._live()

    def _draw(self, filters: Filters) -> Data:
        data = Data()
        self.render(data, filters)
        return data

    def _header(self, as_of: str | None) -> str:
        sub = f'<div class="sophia-note">{html.escape(self.subtitle)}</div>' if self.subtitle else ""
        return (f'{STYLE}<div class="sophia-dash"><div class="sophia-head"><h1>{html.escape(self.title)}</h1>'
                f'{asof_stamp(as_of)}</div>{sub}</div>{ASOF_SCRIPT}')

    def _snapshot(self) -> None:
        from IPython.display import HTML, display

        header = display(HTML(self._header(None)), display_id=True)
        show_html(f'<div class="sophia-dash sophia-filters">{html.escape(self.filters.describe())} — '
                  f'open “Explore” to change the filters</div>')
        data = self._draw(self.filters)
        header.update(HTML(self._header(data.as_of)))

    def _live(self) -> None:
        import ipywidgets as widgets
        from IPython.display import HTML, display
        from IPython.utils.capture import capture_output

        header = widgets.HTML(self._header(None))
        controls: dict[str, widgets.Dropdown] = {
            "period": widgets.Dropdown(options=[(p.capitalize(), p) for p in PERIODS], value=self.filters.period,
                                       description="Period", layout=widgets.Layout(width="auto"))}
        for name, values in self.options.items():
            choices = [("All", ALL)] + [(v, v) for v in values]
            current = getattr(self.filters, name)
            controls[name] = widgets.Dropdown(options=choices, value=current if current in (ALL, *values) else ALL,
                                              description=name.capitalize(), layout=widgets.Layout(width="auto"))
        out = widgets.Output()

        def redraw(_: Any = None) -> None:
            # Captured in the kernel and set as the Output widget's state in one message: Voila's
            # server-side execution loses outputs streamed through an Output widget under load.
            picked = replace(self.filters, **{k: c.value for k, c in controls.items()})
            with capture_output(stdout=False, stderr=False) as captured:
                data = self._draw(picked)
            out.outputs = tuple({"output_type": "display_data", "data": o.data, "metadata": o.metadata or {}}
                                for o in captured.outputs)
            header.value = self._header(data.as_of)

        for control in controls.values():
            control.observe(redraw, names="value")
        bar_ = widgets.HBox(list(controls.values()), layout=widgets.Layout(flex_flow="row wrap", gap="0.5rem"))
        display(HTML(STYLE), widgets.VBox([header, bar_, out]))
        redraw()


def options(data: Data, metric: str, dimension: str) -> list[str]:
    """The values a dimension takes for a metric (for a filter's choices), as the viewer may see them."""
    frame = data.metric(metric, by=[dimension], grain=grain_for(metric, "year"))
    return sorted(str(v) for v in frame[dimension].dropna().unique())
