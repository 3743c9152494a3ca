"""Staging quality in bulk: Arrow's column-at-once conversion agrees with ``coerce`` value by value, bad values
are still quarantined one row at a time, and ``batched`` joins pages without reordering or merging schemas."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import dlt
import pyarrow as pa
import pytest

from sophia_lib.connectors.spec import DELETED_COLUMN, Stream, _fast_column, batch_pages, batched, coerce, emit

COLUMNS: list[tuple[str, list[Any]]] = [
    ("timestamp", ["2024-01-02T03:04:05Z", None, "", "2024-01-02T03:04:05.123456+02:00"]),
    ("timestamp", ["2024-01-02T03:04:05", "2024-01-02", "2024-01-02 03:04:05.5"]),
    ("timestamp", [1705314153, 1705314153123, None, -5]),
    ("timestamp", [datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=-3))), datetime(2024, 5, 5)]),
    ("date", ["2024-01-02", None, ""]),
    ("date", [date(2024, 1, 3), None]),
    ("text", ["a", "", None]),
    ("json", ['{"a": 1}', ""]),
    ("bigint", [1, None, 2**40]),
    ("double", [1, 2.5, float("nan"), None]),
    ("bool", [True, None, False]),
]

SLOW: list[tuple[str, list[Any]]] = [
    ("timestamp", ["1705314153"]),  # epoch seconds as text
    ("timestamp", ["2024-01-02T03:04:05Z", "2024-01-02T03:04:05"]),  # offsets on some only
    ("timestamp", [10**16]),  # beyond year 9999
    ("timestamp", ["2024-01-02T03:04:05.1234567Z"]),  # nanoseconds: coerce truncates
    ("date", ["2024-01-02T05:00:00Z"]),
    ("text", [1, "a"]),
    ("bigint", [True, 1]),
    ("bool", ["true"]),
    ("json", [{"a": 1}]),
]


def _coerced(values: list[Any], kind: str) -> list[Any]:
    return [coerce(v, kind) for v in values]  # type: ignore[arg-type]


@pytest.mark.parametrize(("kind", "values"), COLUMNS)
def test_fast_column_equals_coerce(kind: str, values: list[Any]) -> None:
    fast = _fast_column(values, kind)  # type: ignore[arg-type]
    assert fast is not None, "this column should take the column-at-once path"
    assert fast.to_pylist() == _coerced(values, kind)


@pytest.mark.parametrize(("kind", "values"), SLOW)
def test_other_columns_go_value_by_value(kind: str, values: list[Any]) -> None:
    assert _fast_column(values, kind) is None  # type: ignore[arg-type]


def test_bad_value_is_quarantined_and_the_rest_of_the_column_loads() -> None:
    stream = Stream("t", ("id",), cursor="at", columns={"id": "bigint", "at": "timestamp", "n": "bigint"})
    rows = [{"id": i, "at": f"2024-01-0{i}T00:00:00Z", "n": i} for i in range(1, 6)]
    rows[2]["n"] = "three"
    rows[3]["at"] = "not a time"
    quarantine: list[dict[str, Any]] = []
    [table] = list(emit(stream, rows, quarantine))
    assert table.column("id").to_pylist() == [1, 2, 5]
    assert table.column("at").to_pylist() == [datetime(2024, 1, d, tzinfo=UTC) for d in (1, 2, 5)]
    assert table.column(DELETED_COLUMN).to_pylist() == [False] * 3
    assert sorted(q["reason"].split(":")[0] for q in quarantine) == ["at", "n"]


def _page(ids: list[int], **extra: Any) -> pa.Table:
    return pa.table({"id": ids, **{k: [v] * len(ids) for k, v in extra.items()}})


def test_batched_joins_pages_up_to_the_row_limit_in_order() -> None:
    out = list(batched([_page([1, 2]), _page([3, 4]), _page([5]), _page([6])], rows=4))
    assert [t.column("id").to_pylist() for t in out] == [[1, 2, 3, 4], [5, 6]]


def test_batched_never_merges_schemas_and_passes_other_items_through() -> None:
    hinted = dlt.mark.with_hints(_page([9]), dlt.mark.make_hints(write_disposition="replace"))
    items = [_page([1]), _page([2]), _page([3], extra="x"), hinted, _page([4]), [{"id": 5}]]
    out = list(batched(items, rows=100))
    assert out[0].column("id").to_pylist() == [1, 2]
    assert out[1].column_names == ["id", "extra"]
    assert out[2] is hinted
    assert out[3].column("id").to_pylist() == [4]
    assert out[4] == [{"id": 5}]


def test_batch_pages_joins_a_resources_pages_before_its_cursor_and_maps() -> None:
    seen: list[int] = []

    @dlt.resource(name="things", primary_key="id")
    def things(cursor: Any = dlt.sources.incremental("at", initial_value=1)) -> Any:
        for i in range(5):
            yield _page([i]).append_column("at", pa.array([i]))

    @dlt.source(name="toy")
    def toy() -> list[Any]:
        return [things]

    source = batch_pages(toy(), rows=3)
    source.resources["things"].add_map(lambda table: seen.append(table.num_rows) or table)
    items = list(source)
    assert seen == [3, 2]  # pages 0..2 joined, pages 3..4 joined: 2 items reach the steps instead of 5
    assert [t.num_rows for t in items] == [2, 2]  # and the cursor still drops id 0 (at < initial value 1)
    assert sorted(row["id"] for row in pa.Table.from_batches([b for t in items for b in t.to_batches()])
                  .to_pylist()) == [1, 2, 3, 4]
