"""What one transform step sees: the raw tables of the snapshot being built, the tables earlier
steps wrote, and where to write its own.

Steps read with :meth:`TransformContext.raw` (a missing source is an empty frame with the asked
columns, so a company without, say, Gong still builds every table) and write with
:meth:`TransformContext.write`; what one step writes, a later step gets from :meth:`table`
without a round trip through the warehouse.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pandas as pd

from sophia_lib.frame import from_arrow, to_arrow
from sophia_lib.warehouse.base import SnapshotBuilder, check_identifier, quote

DLT_COLUMNS = ("_dlt_load_id", "_dlt_id", "_sophia_deleted")


class TransformContext:
    """The snapshot being built, seen by the transform steps."""

    def __init__(self, builder: SnapshotBuilder, as_of: datetime) -> None:
        self.builder = builder
        self.as_of = as_of
        self._written: dict[str, pd.DataFrame] = {}
        self._raw_tables: set[tuple[str, str]] | None = None

    def has_raw(self, vendor: str, table: str) -> bool:
        if self._raw_tables is None:
            found = self.builder.query(
                "select table_schema, table_name from information_schema.tables where table_schema like 'raw%'")
            self._raw_tables = set(zip(found.column("table_schema").to_pylist(),
                                       found.column("table_name").to_pylist(), strict=True))
        return (f"raw_{vendor}", table) in self._raw_tables

    def raw(self, vendor: str, table: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """``raw_<vendor>.<table>`` without deleted rows and loader columns. ``columns`` selects (and, when
        the table or a column is missing, supplies as all-null) exactly those columns."""
        schema, name = f"raw_{check_identifier('vendor', vendor)}", check_identifier("table", table)
        if not self.has_raw(vendor, table):
            return pd.DataFrame({c: pd.Series(dtype="object") for c in columns or ()})
        present = self.builder.query(f"select * from {quote(schema, name)} limit 0").column_names
        where = " where _sophia_deleted is not true" if "_sophia_deleted" in present else ""
        wanted = [c for c in (columns or present) if c not in DLT_COLUMNS]
        selected = ", ".join(quote(c) if c in present else f"null as {quote(c)}" for c in wanted)
        return from_arrow(self.builder.query(f"select {selected} from {quote(schema, name)}{where}"))

    def write(self, schema: str, name: str, frame: pd.DataFrame) -> int:
        """Write ``schema.name`` (``core`` or ``marts``) into the snapshot and keep it for later steps."""
        self._written[f"{schema}.{name}"] = frame
        return self.builder.write_table(schema, name, to_arrow(frame))

    def table(self, qualified_name: str) -> pd.DataFrame:
        """A table an earlier step wrote (``"core.accounts"``)."""
        if qualified_name not in self._written:
            raise KeyError(f"{qualified_name} has not been built yet: order the step that writes it earlier "
                           "in sophia_lib.transforms.STEPS")
        return self._written[qualified_name]

    def written(self) -> dict[str, Any]:
        return {name: len(frame) for name, frame in self._written.items()}
