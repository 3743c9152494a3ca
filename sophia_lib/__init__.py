"""Sophia: connectors, transforms, metrics and the query door for the analytics workbench.

In a notebook::

    import sophia_lib as sl
    sl.metric("pipeline_value", by=["stage"], grain="week")   # a DataFrame, as of a snapshot
    sl.table("marts.pipeline_weekly")
    sl.sql("select region, count(*) from core.accounts group by region")

Each call goes to the ``query`` service with your hub token, which applies your role's data policy
(datasets, row filters, masked columns) and records the read; ``df.attrs["as_of"]`` says how fresh
the data is. Importing this package stays light: the client loads on first use.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# dlt (the connectors' loader) reads this once, when it is imported: no usage events leave the machine.
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
__all__ = ["metric", "sql", "table", "tables"]

if TYPE_CHECKING:
    import pandas as pd


def metric(name: str, by: Any = None, grain: str | None = None, start: Any = None, end: Any = None,
           where: str | dict[str, Any] | None = None) -> pd.DataFrame:
    """A metric from metrics.yaml, by dimensions and time grain (``sophia metrics list`` names them)."""
    from sophia_lib.query.client import default_client

    return default_client().metric(name, by=by, grain=grain, start=start, end=end, where=where)


def table(name: str, columns: list[str] | None = None, limit: int | None = None) -> pd.DataFrame:
    """A whole core or marts table (``"core.accounts"``), as your role may see it."""
    from sophia_lib.query.client import default_client

    return default_client().table(name, columns=columns, limit=limit)


def sql(query: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
    """One SELECT over core and marts; ``:name`` placeholders take ``params`` (bound, never formatted)."""
    from sophia_lib.query.client import default_client

    return default_client().sql(query, params)


def tables() -> list[dict[str, Any]]:
    """The tables your role may read, their columns, and which are masked for you."""
    from sophia_lib.query.client import default_client

    return default_client().tables()
