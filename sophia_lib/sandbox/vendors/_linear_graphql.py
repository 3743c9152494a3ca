"""GraphQL machinery of the Linear simulator: the official schema, Relay connections, filters, defaults.

The schema is Linear's own SDL (``specs/linear/schema.graphql``, 1.2 MB), built once per process.
Queries are parsed and validated against it, then executed by graphql-core with one field resolver:

* a *link* for the fields the sandbox models (root connections, ``Issue.team`` …),
* the record's own value where the rendered dict has the field,
* otherwise a derived default: ``null`` for a nullable field, and for a non-null one a value of the
  right type (empty connection, ``false``, ``0``, the parent's ``createdAt`` …), so any valid query
  answers without crashing even where the sandbox does not model the field.

Records carry their relations and sort keys under ``"__meta"`` (a dict, invisible to GraphQL).
"""

from __future__ import annotations

import functools
import math
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLEnumType,
    GraphQLError,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLScalarType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    build_schema,
    is_abstract_type,
)

from sophia_lib.sandbox.simulator.formats import decode_cursor, encode_cursor

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "specs" / "linear" / "schema.graphql"
NAMESPACE = uuid.UUID("5f0c2a8e-6a57-4a55-9b55-1c1d2e3f4a5b")
DEFAULT_PAGE = 50
MAX_PAGE = 250  # reported maximum of `first`/`last` (VENDOR-APIS.md marks it "verify")
NAT = np.iinfo(np.int64).min


@functools.cache
def linear_schema() -> GraphQLSchema:
    """Linear's schema, built once (about a second) and shared by every simulator instance."""
    return build_schema(SCHEMA_PATH.read_text(encoding="utf-8"))


def stable_uuid(*parts: Any) -> str:
    """A deterministic UUID for derived entities (teams, workflow states, the organization)."""
    return str(uuid.uuid5(NAMESPACE, "/".join(str(p) for p in parts)))


def linear_error(message: str, kind: str = "invalid input", code: str = "INVALID_INPUT",
                 user_message: str | None = None) -> GraphQLError:
    """A GraphQL error with Linear's ``extensions`` (type, code, userError, userPresentableMessage)."""
    return GraphQLError(message, extensions={
        "type": kind, "code": code, "userError": kind not in ("internal error", "ratelimited"),
        "userPresentableMessage": user_message or message,
    })


# --- entity sets ----------------------------------------------------------------------------------
def ns(values: Any) -> np.ndarray:
    """Aware timestamps (Series/array) → int64 nanoseconds, NaT → NAT."""
    series = pd.to_datetime(pd.Series(values), utc=True)
    if not len(series):
        return np.empty(0, dtype=np.int64)
    return series.dt.tz_convert(None).to_numpy(dtype="datetime64[ns]").view(np.int64).copy()  # NaT → NAT


@dataclass
class Entities:
    """One Linear object type's records with vectorised sort keys, filterable date fields and groups."""

    type_name: str
    records: list[dict[str, Any]]
    dates: dict[str, np.ndarray]           # GraphQL date field → ns (NAT = null); has createdAt, updatedAt
    archived: np.ndarray                   # bool
    groups: dict[str, np.ndarray] = field(default_factory=dict)  # relation name → related id (object)
    hidden: np.ndarray | None = None       # bool: left out unless asked (disabled users)
    ids: np.ndarray = field(init=False)
    order: dict[str, np.ndarray] = field(init=False)
    by_id: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.ids = np.array([r["id"] for r in self.records], dtype=str) if self.records else np.empty(0, str)
        self.order = {key: np.lexsort((self.ids, self.dates[key])) for key in ("createdAt", "updatedAt")}
        self.by_id = {rid: i for i, rid in enumerate(self.ids.tolist())}
        self.groups.setdefault("id", self.ids.astype(object))
        for i, record in enumerate(self.records):
            record.setdefault("__meta", {})["sort"] = {"createdAt": int(self.dates["createdAt"][i]),
                                                      "updatedAt": int(self.dates["updatedAt"][i])}

    def get(self, record_id: Any) -> dict[str, Any] | None:
        i = self.by_id.get(record_id) if isinstance(record_id, str) else None
        return None if i is None else self.records[i]


class _Positions(Sequence):
    """A lazy view of records at sorted positions (what ``SimulatedVendor.page`` slices)."""

    def __init__(self, records: list[dict[str, Any]], rows: np.ndarray) -> None:
        self.records, self.rows = records, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self.records[j] for j in self.rows[i].tolist()]
        return self.records[int(self.rows[i])]


# --- filters -----------------------------------------------------------------------------------------
_DURATION = re.compile(r"^(-)?P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
                       r"(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


def parse_date_or_duration(value: Any, now: pd.Timestamp) -> int:
    """DateTimeOrDuration → ns: an ISO date/time, or an ISO 8601 duration relative to now (``-P2W``)."""
    if not isinstance(value, str) or not value.strip():
        raise linear_error(f"Invalid DateTimeOrDuration value: {value!r}")
    text = value.strip()
    match = _DURATION.match(text)
    if match and text not in ("P", "-P") and not text.endswith("T"):
        sign, years, months, weeks, days, hours, minutes, seconds = match.groups()
        delta = pd.Timedelta(days=365 * int(years or 0) + 30 * int(months or 0) + 7 * int(weeks or 0)
                             + int(days or 0), hours=int(hours or 0), minutes=int(minutes or 0),
                             seconds=float(seconds or 0))
        return int((now - delta if sign else now + delta).value)
    try:
        stamp = pd.Timestamp(text)
    except (ValueError, TypeError):
        raise linear_error(f"Invalid DateTimeOrDuration value: {value!r}") from None
    if pd.isna(stamp):
        raise linear_error(f"Invalid DateTimeOrDuration value: {value!r}")
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return int(stamp.value)


def _date_mask(values: np.ndarray, comparator: dict[str, Any], now: pd.Timestamp, name: str) -> np.ndarray:
    present = values != NAT
    mask = np.ones(len(values), dtype=bool)
    for op, operand in comparator.items():
        if operand is None:
            continue
        if op == "null":
            mask &= ~present if operand else present
            continue
        if op in ("in", "nin"):
            wanted = np.array([parse_date_or_duration(v, now) for v in operand], dtype=np.int64)
            hit = np.isin(values, wanted) & present
            mask &= hit if op == "in" else ~hit
            continue
        bound = parse_date_or_duration(operand, now)
        compare = {"eq": np.equal, "neq": np.not_equal, "gt": np.greater, "gte": np.greater_equal,
                   "lt": np.less, "lte": np.less_equal}.get(op)
        if compare is None:
            raise linear_error(f"Filter comparator '{op}' on '{name}' is not supported by the sandbox")
        mask &= compare(values, bound) & (present | (op == "neq"))
    return mask


def _id_mask(values: np.ndarray, comparator: dict[str, Any], name: str) -> np.ndarray:
    mask = np.ones(len(values), dtype=bool)
    for op, operand in comparator.items():
        if operand is None:
            continue
        if op == "eq":
            mask &= values == operand
        elif op == "neq":
            mask &= values != operand
        elif op in ("in", "nin"):
            hit = np.isin(values.astype(str), np.array(list(operand), dtype=str))
            mask &= hit if op == "in" else ~hit
        elif op == "null":
            missing = np.array([v is None for v in values], dtype=bool)
            mask &= missing if operand else ~missing
        else:
            raise linear_error(f"Filter comparator '{op}' on '{name}' is not supported by the sandbox")
    return mask


def filter_mask(ents: Entities, rows: np.ndarray, spec: dict[str, Any] | None, now: pd.Timestamp) -> np.ndarray:
    """Boolean mask over ``rows`` (record indices) for a Linear filter input (the subset the sandbox models)."""
    mask = np.ones(len(rows), dtype=bool)
    for name, value in (spec or {}).items():
        if value is None:
            continue
        if name == "and":
            for sub in value:
                mask &= filter_mask(ents, rows, sub, now)
        elif name == "or":
            any_mask = np.zeros(len(rows), dtype=bool)
            for sub in value:
                any_mask |= filter_mask(ents, rows, sub, now)
            mask &= any_mask
        elif name in ents.dates:
            mask &= _date_mask(ents.dates[name][rows], value, now, name)
        elif name == "id":
            mask &= _id_mask(ents.groups["id"][rows], value, name)
        elif name in ents.groups and isinstance(value, dict) and set(value) <= {"id", "null"}:
            related = ents.groups[name][rows]
            if value.get("null") is not None:
                missing = np.array([v is None for v in related], dtype=bool)
                mask &= missing if value["null"] else ~missing
            if value.get("id") is not None:
                mask &= _id_mask(related, value["id"], f"{name}.id")
        else:
            raise linear_error(f"Filtering {ents.type_name} on '{name}' is not supported by the sandbox; "
                               f"supported: {', '.join(sorted({*ents.dates, *ents.groups, 'and', 'or'}))}")
    return mask


# --- connections ------------------------------------------------------------------------------------------
def _page_arg(args: dict[str, Any], name: str) -> int | None:
    value = args.get(name)
    if value is None:
        return None
    if value < 0:
        raise linear_error(f"Argument '{name}' must be a non-negative integer")
    if value > MAX_PAGE:
        raise linear_error(f"Argument '{name}' must be at most {MAX_PAGE}")
    return int(value)


def _cursor_key(cursor: str, order_by: str) -> tuple[int, str]:
    try:
        state = decode_cursor(cursor)
        if state.get("o") != order_by:
            raise ValueError
        return int(state["k"]), str(state["id"])
    except (ValueError, KeyError, TypeError):
        raise linear_error(f"Invalid cursor: {cursor}", user_message="The pagination cursor is invalid.") from None


def record_cursor(record: dict[str, Any], order_by: str) -> str:
    key = record.get("__meta", {}).get("sort", {}).get(order_by, 0)
    return encode_cursor({"id": record.get("id"), "k": key, "o": order_by})


def connection(ents: Entities, args: dict[str, Any], now: pd.Timestamp,
               pager: Callable[[Sequence[dict[str, Any]], int, int], list[dict[str, Any]]],
               scope: dict[str, Any] | None = None, include_hidden: bool = False) -> dict[str, Any]:
    """A Relay connection over ``ents``: orderBy, filter, includeArchived, first/after, last/before."""
    order_by = args.get("orderBy") or "createdAt"
    first, last = _page_arg(args, "first"), _page_arg(args, "last")
    if first is not None and last is not None:
        raise linear_error("Arguments 'first' and 'last' cannot be combined")
    rows = ents.order[order_by]
    mask = np.ones(len(rows), dtype=bool)
    if not args.get("includeArchived"):
        mask &= ~ents.archived[rows]
    if ents.hidden is not None and not include_hidden:
        mask &= ~ents.hidden[rows]
    for group, value in (scope or {}).items():
        mask &= ents.groups[group][rows] == value
    if args.get("filter"):
        mask &= filter_mask(ents, rows, args["filter"], now)
    rows = rows[mask]
    keys, ids = ents.dates[order_by][rows], ents.ids[rows]

    def upto(cursor: str, inclusive: bool) -> int:
        k, rid = _cursor_key(cursor, order_by)
        tie = (ids <= rid) if inclusive else (ids < rid)
        return int(np.count_nonzero((keys < k) | ((keys == k) & tie)))  # (key, id) order: a prefix

    start = upto(args["after"], True) if args.get("after") else 0
    end = upto(args["before"], False) if args.get("before") else len(rows)
    end = max(start, end)
    if last is not None and first is None:
        begin = max(start, end - last)
        size = end - begin
        has_prev, has_next = begin > 0, end < len(rows)
    else:
        begin, size = start, min(first if first is not None else DEFAULT_PAGE, end - start)
        has_prev, has_next = begin > 0, begin + size < end
    nodes = pager(_Positions(ents.records, rows), begin, size)
    edges = [{"node": node, "cursor": record_cursor(node, order_by)} for node in nodes]
    return {"nodes": nodes, "edges": edges, "pageInfo": {
        "hasNextPage": bool(has_next), "hasPreviousPage": bool(has_prev),
        "startCursor": edges[0]["cursor"] if edges else None,
        "endCursor": edges[-1]["cursor"] if edges else None}}


EMPTY_CONNECTION: dict[str, Any] = {"nodes": [], "edges": [], "pageInfo": {
    "hasNextPage": False, "hasPreviousPage": False, "startCursor": None, "endCursor": None}}


# --- defaults for fields the sandbox does not model ----------------------------------------------------------
def default_value(gql_type: Any, source: Any, info: GraphQLResolveInfo, epoch: str) -> Any:
    """A valid value for an unmodelled field: null when nullable, else a typed neutral value."""
    if not isinstance(gql_type, GraphQLNonNull):
        return None
    inner = gql_type.of_type
    parent = source if isinstance(source, dict) else {}
    if isinstance(inner, GraphQLList):
        return []
    if isinstance(inner, GraphQLEnumType):
        return next(iter(inner.values))
    if isinstance(inner, GraphQLScalarType):
        created = parent.get("createdAt") or epoch
        return {
            "String": "", "Int": 0, "Float": 0.0, "Boolean": False, "JSON": {}, "JSONObject": {},
            "DateTime": created, "DateTimeOrDuration": created, "TimelessDate": str(created)[:10],
            "TimelessDateOrDuration": str(created)[:10], "Duration": "P0D",
            "ID": stable_uuid(parent.get("id", "root"), info.path.as_list()),
            "UUID": stable_uuid(parent.get("id", "root"), info.path.as_list()),
        }.get(inner.name, "")
    if is_abstract_type(inner):
        possible = info.schema.get_possible_types(inner)
        return {"__typename": possible[0].name} if possible else None
    if isinstance(inner, GraphQLObjectType) and "pageInfo" in inner.fields:
        return EMPTY_CONNECTION
    return {"id": stable_uuid(parent.get("id", "root"), info.field_name), "createdAt": parent.get("createdAt"),
            "updatedAt": parent.get("updatedAt")}


# --- complexity --------------------------------------------------------------------------------------------
def complexity(document: DocumentNode, variables: dict[str, Any] | None, operation_name: str | None) -> int:
    """Linear's published cost model, roughly: 0.1 per scalar, 1 per object, connections × page size."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    operation = next((o for o in operations if o.name and o.name.value == operation_name), None) or \
        (operations[0] if operations else None)

    def size_of(node: FieldNode) -> int | None:
        for arg in node.arguments or ():
            if arg.name.value in ("first", "last"):
                if isinstance(arg.value, IntValueNode):
                    return int(arg.value.value)
                if isinstance(arg.value, VariableNode):
                    value = (variables or {}).get(arg.value.name.value)
                    return int(value) if isinstance(value, int) else DEFAULT_PAGE
        return None

    def cost(selection_set: SelectionSetNode | None, depth: int) -> float:
        if selection_set is None or depth > 30:
            return 0.0
        total = 0.0
        for sel in selection_set.selections:
            if isinstance(sel, FieldNode):
                if sel.selection_set is None:
                    total += 0.1
                    continue
                names = {s.name.value for s in sel.selection_set.selections if isinstance(s, FieldNode)}
                page = size_of(sel) or (DEFAULT_PAGE if names & {"nodes", "edges"} else None)
                inner = cost(sel.selection_set, depth + 1)
                total += 1 + inner * (page or 1)
            elif isinstance(sel, InlineFragmentNode):
                total += cost(sel.selection_set, depth + 1)
            elif isinstance(sel, FragmentSpreadNode) and sel.name.value in fragments:
                total += cost(fragments[sel.name.value].selection_set, depth + 1)
        return total

    return max(1, math.ceil(cost(operation.selection_set, 0))) if operation else 1
