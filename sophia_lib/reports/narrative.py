"""Narrative numbers: "Pipeline rose 12 % to $4.1M." from a metric's value, its prior value and its unit.

The unit comes from metrics.yaml (``currency``, ``count``, ``ratio``…), so a report never formats a number
differently from the dashboard that shows it (values go through :func:`sophia_lib.dashboards.ui.fmt`).
Ratios (win rate, churn rate) move in percentage points, not percent of themselves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sophia_lib.dashboards.ui import fmt

FLAT = 0.005  # a relative move below half a percent reads as "flat"
FLAT_POINTS = 0.0005  # a ratio moving less than 0.05 points reads as "flat"
POINT_UNITS = frozenset({"ratio", "percent"})


def _missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_value(value: float | None, unit: str) -> str:
    """``$4.1M``, ``28.5%``, ``1,204``, ``3.2 d``: the dashboards' formatting."""
    return fmt(value, unit)


def format_percent(change: float) -> str:
    """A relative change as read aloud: ``12 %`` from 10 % up, ``4.3 %`` below (no sign)."""
    pct = abs(change) * 100
    return f"{pct:.0f} %" if pct >= 9.95 else f"{pct:.1f} %"


@dataclass(frozen=True)
class Change:
    """A metric in one period against the period before it."""

    label: str
    value: float | None
    previous: float | None
    unit: str
    period: str = ""
    higher_is_better: bool = True

    @property
    def delta(self) -> float | None:
        if _missing(self.value) or _missing(self.previous):
            return None
        return float(self.value) - float(self.previous)  # type: ignore[arg-type]

    @property
    def relative(self) -> float | None:
        """(value − previous) / |previous|; None without a prior value or when it was 0."""
        delta = self.delta
        if delta is None or not self.previous:
            return None
        return delta / abs(float(self.previous))

    @property
    def direction(self) -> str:
        """``up``, ``down``, ``flat`` or ``new`` (nothing to compare with)."""
        if self.unit in POINT_UNITS:
            delta = self.delta
            if delta is None:
                return "new"
            points = delta * 100 if self.unit == "ratio" else delta
            return "flat" if abs(points) < FLAT_POINTS * 100 else ("up" if delta > 0 else "down")
        relative = self.relative
        if relative is None:
            if self.delta is not None and self.delta != 0 and not self.previous:
                return "up" if self.delta > 0 else "down"
            return "new" if self.delta is None else "flat"
        return "flat" if abs(relative) < FLAT else ("up" if relative > 0 else "down")

    @property
    def good(self) -> bool | None:
        """Whether the move is good news (None when flat or new)."""
        if self.direction in ("flat", "new"):
            return None
        return (self.direction == "up") == self.higher_is_better

    def sentence(self) -> str:
        return change_sentence(self)


def _amount(change: Change) -> str:
    """How much it moved: ``12 %`` (relative) or ``3.2 pts`` (ratios), or from a zero base the absolute move."""
    delta = change.delta
    assert delta is not None
    if change.unit == "ratio":
        return f"{abs(delta) * 100:.1f} pts"
    if change.unit == "percent":
        return f"{abs(delta):.1f} pts"
    relative = change.relative
    if relative is None or float(change.previous) < 0 or float(change.value) < 0:  # type: ignore[arg-type]
        return f"by {format_value(abs(delta), change.unit)}"  # from zero, or across it: "fell by $299k"
    return format_percent(relative)


def change_sentence(change: Change) -> str:
    """One sentence: ``Pipeline rose 12 % to $4.1M.`` / ``Win rate fell 3.2 pts to 28.5%.`` /
    ``Churned customers held at 1.`` / ``Bookings: $1.2M (no prior period to compare).`` /
    ``No data on accounts at risk.`` (a missing value is never printed as a zero).
    """
    label = change.label[:1].upper() + change.label[1:]
    when = f" {change.period}" if change.period else ""
    if _missing(change.value):
        return f"No data on {change.label}{when}."
    value = format_value(change.value, change.unit)
    direction = change.direction
    if direction == "new":
        return f"{label}: {value}{when} (no prior period to compare)."
    if direction == "flat":
        return f"{label} held at {value}{when}."
    verb = "rose" if direction == "up" else "fell"
    return f"{label} {verb} {_amount(change)} to {value}{when}."
