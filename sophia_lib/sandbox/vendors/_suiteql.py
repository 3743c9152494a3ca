"""SuiteQL helpers for the NetSuite simulator: Oracle date formats (``TO_DATE``/``TO_CHAR``).

Parsing itself is shared with SOQL (:mod:`._soql`, dialect ``suiteql``); this module holds what is
Oracle-specific: translating ``'YYYY-MM-DD HH24:MI:SS'`` style format models to strftime, and parsing
or formatting values with them.
"""

from __future__ import annotations

import re
from datetime import datetime

import pandas as pd

from sophia_lib.sandbox.vendors._soql import QueryError

_FORMAT_TOKENS = [
    ("YYYY", "%Y"), ("HH24", "%H"), ("HH12", "%I"), ("MONTH", "%B"), ("MON", "%b"), ("MM", "%m"), ("DD", "%d"),
    ("HH", "%I"), ("MI", "%M"), ("SS", "%S"), ("AM", "%p"), ("PM", "%p"), ("YY", "%y"), ("DY", "%a"),
]
_FORMAT_RE = re.compile("|".join(re.escape(k) for k, _ in _FORMAT_TOKENS) + r'|"[^"]*"|[-/:., T]', re.IGNORECASE)


def strftime_format(model: str, pos: int = 0) -> str:
    """Oracle format model → strftime format; raises QueryError on an unknown element."""
    out, i = [], 0
    lookup = dict(_FORMAT_TOKENS)
    while i < len(model):
        m = _FORMAT_RE.match(model, i)
        if m is None:
            raise QueryError("malformed", f"invalid date format model '{model}'", pos)
        tok = m.group()
        if tok.startswith('"'):
            out.append(tok[1:-1].replace("%", "%%"))
        else:
            out.append(lookup.get(tok.upper(), tok))
        i = m.end()
    return "".join(out)


def to_date(text: str, model: str, pos: int = 0) -> pd.Timestamp:
    """``TO_DATE(text, model)`` as a naive timestamp in the account's time zone."""
    try:
        return pd.Timestamp(datetime.strptime(text, strftime_format(model, pos)))
    except ValueError:
        raise QueryError("malformed", f"ORA-01861: literal does not match format string ('{text}', '{model}')",
                         pos) from None


def to_char(series: pd.Series, model: str, pos: int = 0) -> pd.Series:
    """``TO_CHAR(datetime column, model)`` as strings (missing stays missing)."""
    fmt = strftime_format(model, pos)
    out = series.dt.strftime(fmt).astype(object)
    return out.where(series.notna(), None)


def account_date(series: pd.Series) -> pd.Series:
    """Dates in the account's preference format ``M/D/YYYY`` (no leading zeros), as SuiteQL returns them."""
    present = series.notna()
    text = (series.dt.month.astype("Int64").astype(str) + "/" + series.dt.day.astype("Int64").astype(str) + "/"
            + series.dt.year.astype("Int64").astype(str))
    return text.astype(object).where(present, None)


def parse_account_date(text: str, pos: int = 0) -> pd.Timestamp:
    """A string literal compared with a date column: the account format (``1/15/2024``) or ISO."""
    for fmt in ("%m/%d/%Y", "%m/%d/%Y %I:%M %p", "%Y-%m-%d", "%Y-%m-%d %H:%M:%S"):
        try:
            return pd.Timestamp(datetime.strptime(text.strip(), fmt))
        except ValueError:
            continue
    raise QueryError("malformed", f"ORA-01858: a non-numeric character was found where a numeric was expected "
                     f"('{text}')", pos)
