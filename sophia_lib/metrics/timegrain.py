"""Time grains in Python: the period a date falls in, and period arithmetic (weeks start on Monday,
as DATE_TRUNC('week', …) does in DuckDB and PostgreSQL)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sophia_lib.metrics.errors import MetricQueryError
from sophia_lib.metrics.spec import GRAINS, TGrain

MONTHS = {"month": 1, "quarter": 3, "year": 12}


def rank(grain: TGrain) -> int:
    """day 0 < week 1 < month 2 < quarter 3 < year 4."""
    return GRAINS.index(grain)


def as_date(value: Any, what: str) -> date:
    """A date from a date, datetime, pandas Timestamp or ISO string."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if hasattr(value, "to_pydatetime"):
        return value.to_pydatetime().date()
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.strip()).date()
        except ValueError:
            pass
    raise MetricQueryError(f"{what}={value!r} is not a date.", fix=f"pass {what} as a date or 'YYYY-MM-DD'")


def truncate(day: date, grain: TGrain) -> date:
    if grain == "day":
        return day
    if grain == "week":
        return day - timedelta(days=day.weekday())
    months = MONTHS[grain]
    return date(day.year, ((day.month - 1) // months) * months + 1, 1)


def shift(day: date, n: int, unit: TGrain) -> date:
    """``day`` moved by ``n`` units (negative: back); month ends are clamped (31 Jan + 1 month = 29 Feb)."""
    if unit == "day":
        return day + timedelta(days=n)
    if unit == "week":
        return day + timedelta(weeks=n)
    total = day.year * 12 + day.month - 1 + n * MONTHS[unit]
    year, month = divmod(total, 12)
    month += 1
    last = (date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)).day
    return date(year, month, min(day.day, last))


def ceil(day: date, grain: TGrain) -> date:
    """The first period boundary at or after ``day``."""
    start = truncate(day, grain)
    return start if start == day else shift(start, 1, grain)
