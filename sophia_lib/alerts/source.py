"""Where alert rules read numbers: a :class:`MetricSource`.

In production that is the query door (:class:`QueryDoorSource` over :class:`~sophia_lib.query.client.
QueryClient`), so the rules read through the same policy, masking and audit as every other reader and
never open the warehouse themselves. Anything with these two methods works (tests pass their own).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pandas as pd

    from sophia_lib.query.client import QueryClient


@runtime_checkable
class MetricSource(Protocol):
    def metric(self, name: str, by: Sequence[str] | None = None, grain: str | None = None,
               start: date | None = None, end: date | None = None,
               where: str | Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Columns: the period (named by the grain), the ``by`` dimensions, the metric (named as the metric)."""
        ...

    def table(self, name: str) -> pd.DataFrame:
        """A whole ``schema.table``."""
        ...


class QueryDoorSource:
    """Reads through the query service with the caller's hub token (``SOPHIA_QUERY_TOKEN`` or
    ``JUPYTERHUB_API_TOKEN``; the scheduler runs as a hub service and has its own)."""

    def __init__(self, client: QueryClient | None = None) -> None:
        if client is None:
            from sophia_lib.query.client import default_client

            client = default_client()
        self.client = client

    def metric(self, name: str, by: Sequence[str] | None = None, grain: str | None = None,
               start: date | None = None, end: date | None = None,
               where: str | Mapping[str, Any] | None = None) -> pd.DataFrame:
        return self.client.metric(name, by=list(by or []), grain=grain, start=start, end=end, where=where)

    def table(self, name: str) -> pd.DataFrame:
        return self.client.table(name)
