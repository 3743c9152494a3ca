"""Arrow ⇄ PostgreSQL: column types for CREATE TABLE, CSV for COPY, rows back to Arrow.

Kept as tables so a missing type is one line to add.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from sophia_lib.errors import WarehouseError

SIMPLE_TYPES: list[tuple[Any, str]] = [
    (pa.types.is_boolean, "boolean"),
    (pa.types.is_int8, "smallint"),
    (pa.types.is_int16, "smallint"),
    (pa.types.is_uint8, "smallint"),
    (pa.types.is_int32, "integer"),
    (pa.types.is_uint16, "integer"),
    (pa.types.is_int64, "bigint"),
    (pa.types.is_uint32, "bigint"),
    (pa.types.is_uint64, "numeric(20)"),
    (pa.types.is_float16, "real"),
    (pa.types.is_float32, "real"),
    (pa.types.is_float64, "double precision"),
    (pa.types.is_string, "text"),
    (pa.types.is_large_string, "text"),
    (pa.types.is_null, "text"),
    (pa.types.is_date, "date"),
    (pa.types.is_time, "time"),
    (pa.types.is_decimal, "numeric"),
]

# PostgreSQL type OIDs → Arrow, used when a result has no rows to infer from (and to pin widths).
OID_TYPES: dict[int, pa.DataType] = {
    16: pa.bool_(), 20: pa.int64(), 21: pa.int16(), 23: pa.int32(), 26: pa.int64(),
    700: pa.float32(), 701: pa.float64(), 25: pa.string(), 1043: pa.string(), 1042: pa.string(),
    19: pa.string(), 1082: pa.date32(), 1114: pa.timestamp("us"), 1184: pa.timestamp("us", tz="UTC"),
    17: pa.binary(),
}
STRINGIFIED_OIDS = {114, 3802, 2950}  # json, jsonb, uuid: Arrow gets their text


def pg_type(field: pa.Field) -> str:
    t = field.type
    if pa.types.is_dictionary(t):
        return pg_type(pa.field(field.name, t.value_type))
    if pa.types.is_timestamp(t):
        return "timestamptz" if t.tz else "timestamp"
    for test, name in SIMPLE_TYPES:
        if test(t):
            return name
    raise WarehouseError(
        f"column {field.name!r} has Arrow type {t}, which the PostgreSQL warehouse does not store.",
        fix="cast it to a string, number, boolean, date or timestamp column first "
            "(e.g. json.dumps nested values)",
    )


def create_columns(schema: pa.Schema) -> str:
    return ", ".join(f'"{f.name}" {pg_type(f)}' for f in schema)


def to_csv(table: pa.Table) -> bytes:
    """CSV for ``COPY … (FORMAT csv)``: every non-null value quoted, so '' stays '' and NULL stays NULL."""
    for f in table.schema:
        pg_type(f)  # raise the clear error before the CSV writer's terse one
    if table.num_rows == 0:
        return b""
    buf = io.BytesIO()
    # One chunk per column: pyarrow's CSV writer emits NUL bytes for a large_string column whose first
    # chunk is empty (pandas string columns after a concat with an empty frame), which COPY rejects.
    pacsv.write_csv(table.combine_chunks(), buf, pacsv.WriteOptions(include_header=False, quoting_style="all_valid"))
    return buf.getvalue()


def _column(values: list[Any], oid: int) -> pa.Array:
    if oid in STRINGIFIED_OIDS:
        return pa.array([None if v is None else (v if isinstance(v, str) else json.dumps(v) if oid != 2950
                                                  else str(v)) for v in values], pa.string())
    wanted = OID_TYPES.get(oid)
    try:
        return pa.array(values, type=wanted) if wanted is not None else pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def rows_to_arrow(names: Sequence[str], oids: Sequence[int], rows: Sequence[Sequence[Any]]) -> pa.Table:
    columns = [_column([r[i] for r in rows], oids[i]) for i in range(len(names))]
    return pa.Table.from_arrays(columns, names=list(names))
