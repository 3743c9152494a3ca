"""Looker API 4.0, simulated: login, saved Looks and running their queries against the company's numbers.

Served under ``/api/4.0`` (a connector's base URL is the instance URL): ``POST /login``, ``DELETE|POST
/logout``, ``GET /looks``, ``GET /looks/search``, ``GET /looks/{id}``, ``GET /looks/{id}/run/{json|csv}``,
``POST /queries/run/{json|csv}``, ``POST /queries`` + ``GET /queries/{id}``, ``GET /queries/{id}/run/{fmt}``,
``GET /users`` and ``GET /users/{id}``.

Users are the employees present in Looker (``presence`` rows of system ``looker``, whose ``system_id`` is the
user id; the lowest one owns the Looks): a deleted presence row is a deleted user (gone from ``/users``), an
employee who left or is inactive a disabled one (``is_disabled``). Names come from ``employees``, the e-mail
as Looker shows it from ``presence``.

Looks come from the ``looks`` table. Running one evaluates its query (``view``, ``fields``, ``filters``)
with pandas over the live canonical tables: the view's table joined to ``accounts``/``opportunities``/
``people`` through their ``*_id`` columns; dimensions are columns or Looker timeframes of a time column
(``created_week`` from ``created_at``, ``close_month`` from ``close_date``); measures are ``count``,
``total_*``/``sum_*``, ``average_*``, ``min_*``, ``max_*``, ``count_distinct_*`` and a few named ones
(``opportunities.win_rate``, ``invoices.arr``, ``invoices.overdue_total``). Filters take Looker filter
expressions (``Yes``/``No``, ``-value``, ``a,b``, ``NULL``/``NOT NULL``, ``after 2024/01/15``,
``2024/01/01 to 2024/02/01``, ``last 30 days``, ``>= 10``). Results are arrays of rows keyed by fully
scoped field names, as the ``json`` format returns them; a query the model cannot answer returns
``[{"looker_error": …}]``.
"""

from __future__ import annotations

import csv
import io
import json
import re
import threading
import zlib
from typing import Any

import numpy as np
import pandas as pd
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sophia_lib.sandbox.simulator.auth import TokenStore
from sophia_lib.sandbox.simulator.base import Reply, SimulatedVendor
from sophia_lib.sandbox.simulator.faults import Fault
from sophia_lib.sandbox.vendors import register

API = "/api/4.0"
DOCS = "https://cloud.google.com/looker/docs/r/api"
AUTH_DOCS = "https://cloud.google.com/looker/docs/r/api/authorization"
# view → company table; a view can be joined into another through the "<singular>_id" column
VIEWS = {"opportunities": "opportunities", "invoices": "invoices", "conversations": "conversations",
         "accounts": "accounts", "people": "people", "touchpoints": "touchpoints", "activities": "activities",
         "calls": "calls", "tasks": "tasks", "projects": "projects", "invoice_lines": "invoice_lines"}
SINGULAR = {"opportunities": "opportunity", "invoices": "invoice", "conversations": "conversation",
            "accounts": "account", "people": "person", "touchpoints": "touch", "activities": "activity",
            "calls": "call", "tasks": "task", "projects": "project", "invoice_lines": "line"}
TIMEFRAMES = ("raw", "time", "date", "week", "month", "quarter", "year", "day_of_week", "hour_of_day")
AGGREGATES = {"total": "sum", "sum": "sum", "average": "mean", "avg": "mean", "min": "min", "max": "max",
              "count_distinct": "nunique", "median": "median"}
DEFAULT_LIMIT, MAX_LIMIT = 500, 50_000


class QueryError(Exception):
    """A query the simulated model cannot run; answered as Looker does, in a ``looker_error`` row."""


def _iso(value: Any) -> str | None:
    """Looker's timestamps: ``2024-01-15T10:22:33.000+00:00``."""
    if value is None or pd.isna(value):
        return None
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}+00:00"


def _stable_id(*parts: Any) -> str:
    return str(10_000 + zlib.crc32("/".join(map(str, parts)).encode()) % 90_000)


# --- filter expressions --------------------------------------------------------------------------------
_DATE = r"\d{4}[/-]\d{2}(?:[/-]\d{2})?(?:\s+\d{1,2}:\d{2}(?::\d{2})?)?"
_UNITS = {"second": "s", "minute": "min", "hour": "h", "day": "D", "week": "W", "month": "M", "year": "Y"}


def _parse_date(text: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """A Looker date literal → [start, end) of the period it names (a day, a month, a minute …)."""
    text = text.strip().replace("/", "-")
    parts = text.split()
    stamp = pd.Timestamp(text, tz="UTC")
    if len(parts) > 1:
        return stamp, stamp + pd.Timedelta(minutes=1)
    if len(parts[0]) == 7:
        return stamp, stamp + pd.DateOffset(months=1)
    return stamp, stamp + pd.Timedelta(days=1)


def _date_filter(values: pd.Series, expr: str, now: pd.Timestamp) -> pd.Series:
    text = expr.strip()
    low = text.lower()
    if m := re.fullmatch(rf"after\s+({_DATE})", low):
        return values >= _parse_date(m.group(1))[0]
    if m := re.fullmatch(rf"before\s+({_DATE})", low):
        return values < _parse_date(m.group(1))[0]
    if m := re.fullmatch(rf"(?:on\s+)?({_DATE})\s+to\s+({_DATE})", low):
        return (values >= _parse_date(m.group(1))[0]) & (values < _parse_date(m.group(2))[0])
    if m := re.fullmatch(r"(?:last|past)\s+(\d+)\s+(second|minute|hour|day|week|month|year)s?", low):
        n, unit = int(m.group(1)), m.group(2)
        start = now - (pd.DateOffset(months=n) if unit == "month" else pd.DateOffset(years=n) if unit == "year"
                       else pd.Timedelta(n, unit=_UNITS[unit]))
        return (values >= start) & (values <= now)
    if m := re.fullmatch(rf"(>=|<=|>|<|=)\s*({_DATE})", low):
        start, end = _parse_date(m.group(2))
        return {">=": values >= start, ">": values >= end, "<": values < start, "<=": values < end,
                "=": (values >= start) & (values < end)}[m.group(1)]
    if m := re.fullmatch(rf"(?:on\s+)?({_DATE})", low):
        start, end = _parse_date(m.group(1))
        return (values >= start) & (values < end)
    raise QueryError(f"Invalid filter expression '{expr}' for a time field")


def _number_filter(values: pd.Series, expr: str) -> pd.Series:
    mask = pd.Series(False, index=values.index)
    excluded = pd.Series(False, index=values.index)
    any_include = False
    for term in [t.strip() for t in expr.split(",") if t.strip()]:
        any_include = any_include or not term.startswith(("-", "!="))
        if m := re.fullmatch(r"(>=|<=|>|<|!=|=|-)?\s*(-?\d+(?:\.\d+)?)", term):
            op, number = m.group(1) or "=", float(m.group(2))
            if op in ("-", "!="):
                excluded |= values == number
                continue
            mask |= {">=": values >= number, "<=": values <= number, ">": values > number, "<": values < number,
                     "=": values == number}[op]
        elif m := re.fullmatch(r"(-?\d+(?:\.\d+)?)\s+to\s+(-?\d+(?:\.\d+)?)", term):
            mask |= (values >= float(m.group(1))) & (values <= float(m.group(2)))
        elif m := re.fullmatch(r"([\[(])\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*([\])])", term):
            lo, hi = float(m.group(2)), float(m.group(3))
            mask |= (values >= lo if m.group(1) == "[" else values > lo) & \
                (values <= hi if m.group(4) == "]" else values < hi)
        else:
            raise QueryError(f"Invalid filter expression '{expr}' for a number field")
    return (mask if any_include else pd.Series(True, index=values.index)) & ~excluded


def _string_filter(values: pd.Series, expr: str) -> pd.Series:
    text = values.astype("string").str.lower()
    include = pd.Series(False, index=values.index)
    exclude = pd.Series(False, index=values.index)
    any_include = False
    for term in [t.strip() for t in re.split(r"(?<!\^),", expr) if t.strip()]:
        negate = term.startswith("-")
        term = term[1:] if negate else term
        term = term.replace("^,", ",").lower()
        if "%" in term:
            pattern = "^" + re.escape(term).replace("%", ".*") + "$"
            hit = text.str.match(pattern).fillna(False).astype(bool)
        else:
            hit = (text == term).fillna(False).astype(bool)
        if negate:
            exclude |= hit
        else:
            include |= hit
            any_include = True
    return (include if any_include else pd.Series(True, index=values.index)) & ~exclude


def apply_filter(values: pd.Series, expr: Any, kind: str, now: pd.Timestamp) -> pd.Series:
    """Rows of ``values`` matching one Looker filter expression (``kind``: yesno|time|number|string)."""
    text = str(expr).strip()
    upper = text.upper()
    if upper in ("NULL", "-NOT NULL"):
        return values.isna()
    if upper in ("NOT NULL", "-NULL"):
        return values.notna()
    if upper == "EMPTY":
        return values.isna() | (values.astype("string") == "")
    if upper == "-EMPTY":
        return values.notna() & (values.astype("string") != "")
    if text == "":
        return pd.Series(True, index=values.index)
    if kind == "yesno":
        if text.lower() not in ("yes", "no"):
            raise QueryError(f"Invalid filter expression '{expr}' for a yesno field")
        return values.fillna(False).astype(bool) == (text.lower() == "yes")
    if kind == "time":
        return _date_filter(values, text, now).fillna(False).astype(bool)
    if kind == "number":
        return _number_filter(values.astype(float), text).fillna(False).astype(bool)
    return _string_filter(values, text)


# --- the query engine ----------------------------------------------------------------------------------
class Model:
    """The simulated LookML model over the company's live tables."""

    def __init__(self, company: Any) -> None:
        self.company = company

    def _frame(self, view: str, views: set[str]) -> pd.DataFrame:
        if view not in VIEWS or VIEWS[view] not in self.company.tables:
            raise QueryError(f"Unknown view '{view}'")
        base = self.company.live(VIEWS[view])
        frame = base.add_prefix(f"{view}.")
        for other in sorted(views - {view}):
            key = f"{SINGULAR.get(other, other)}_id"
            if other not in VIEWS or VIEWS[other] not in self.company.tables or key not in base.columns:
                raise QueryError(f"View '{other}' cannot be joined to explore '{view}'")
            joined = self.company.live(VIEWS[other]).drop_duplicates(key).add_prefix(f"{other}.")
            frame = frame.merge(joined, how="left", left_on=f"{view}.{key}", right_on=f"{other}.{key}")
        return frame

    @staticmethod
    def _time_column(frame: pd.DataFrame, view: str, name: str) -> tuple[str, str] | None:
        for tf in sorted(TIMEFRAMES, key=len, reverse=True):
            if not name.endswith("_" + tf):
                continue
            stem = name[: -len(tf) - 1]
            for col in (f"{stem}_at", f"{stem}_on", f"{stem}_date", stem):
                if f"{view}.{col}" in frame.columns:
                    return f"{view}.{col}", tf
        return None

    def _dimension(self, frame: pd.DataFrame, field: str) -> tuple[pd.Series, str]:
        """Row values of a dimension and its kind (yesno|time|number|string), formatted as Looker does."""
        view, _, name = field.partition(".")
        if field in frame.columns:
            col = frame[field]
            if pd.api.types.is_bool_dtype(col):
                return col.map({True: "Yes", False: "No"}), "yesno"
            if pd.api.types.is_datetime64_any_dtype(col):
                return _fmt_time(_utc(col), "time"), "time"
            if pd.api.types.is_numeric_dtype(col):
                return col, "number"
            if col.map(lambda v: isinstance(v, list | tuple | np.ndarray)).any():
                return col.map(lambda v: ", ".join(map(str, v)) if isinstance(v, list | tuple | np.ndarray)
                               else v), "string"
            return col, "string"
        found = self._time_column(frame, view, name)
        if found is None:
            raise QueryError(f"Unknown field '{field}'")
        col, tf = found
        return _fmt_time(_utc(frame[col]), tf), "time"

    def _filter_values(self, frame: pd.DataFrame, field: str) -> tuple[pd.Series, str]:
        """The values a filter on ``field`` compares: raw timestamps for time fields, booleans for yesno."""
        view, _, name = field.partition(".")
        if field in frame.columns:
            col = frame[field]
            if pd.api.types.is_bool_dtype(col):
                return col, "yesno"
            if pd.api.types.is_datetime64_any_dtype(col):
                return _utc(col), "time"
            return col, ("number" if pd.api.types.is_numeric_dtype(col) else "string")
        found = self._time_column(frame, view, name)
        if found is None:
            raise QueryError(f"Unknown field '{field}'")
        return _utc(frame[found[0]]), "time"

    @staticmethod
    def _measure(frame: pd.DataFrame, field: str) -> tuple[pd.Series | None, str] | None:
        """(per-row helper column, aggregation) of a measure, or None when ``field`` is no measure."""
        view, _, name = field.partition(".")
        cols = frame.columns

        def col(c: str) -> pd.Series:
            return frame[f"{view}.{c}"]

        if name == "count":
            key = f"{view}.{SINGULAR.get(view, view)}_id"
            return (frame[key].notna().astype(int) if key in cols else pd.Series(1, index=frame.index)), "sum"
        if view == "opportunities" and name == "win_rate" and "opportunities.is_won" in cols:
            return None, "win_rate"
        if view == "invoices" and name == "arr" and "invoices.total" in cols:
            factor = np.where(col("billing").astype(str).eq("monthly"), 12.0, 1.0) if "invoices.billing" in cols \
                else 1.0
            return col("total").astype(float) * factor, "sum"
        if view == "invoices" and name == "overdue_total" and "invoices.total" in cols:
            return col("total").astype(float).where(col("status").astype(str).eq("overdue"), 0.0), "sum"
        for prefix in sorted(AGGREGATES, key=len, reverse=True):
            rest = name[len(prefix) + 1:]
            column = next((c for c in (rest, f"{rest}_rating", f"{rest}_score", f"{rest}_amount")
                           if name.startswith(prefix + "_") and f"{view}.{c}" in cols), None)
            if column is not None:
                values, how = col(column), AGGREGATES[prefix]
                return (values if how == "nunique" else pd.to_numeric(values, errors="coerce").astype(float)), how
        return None

    def run(self, query: dict[str, Any], limit: int | None = None) -> tuple[list[str], list[dict[str, Any]]]:
        """Evaluate a Looker query → (fields, rows keyed by field name)."""
        view = str(query.get("view") or "")
        fields = [str(f) for f in (query.get("fields") or [])]
        filters = {str(k): v for k, v in (query.get("filters") or {}).items()}
        sorts = [str(s) for s in (query.get("sorts") or [])]
        if not fields:
            raise QueryError("Must query at least one dimension or measure")
        views = {f.partition(".")[0] for f in [*fields, *filters, *(s.split()[0] for s in sorts if s.split())]}
        frame = self._frame(view, views)
        now = self.company.now
        is_measure = {f for f in {*fields, *filters} if self._measure(frame, f) is not None}
        for field, expr in filters.items():
            if field in is_measure:
                continue
            values, kind = self._filter_values(frame, field)
            frame = frame[apply_filter(values, expr, kind, now).to_numpy()]
        measures = {f: self._measure(frame, f) for f in is_measure}
        dims = [f for f in fields if f not in measures]
        data = pd.DataFrame({f: self._dimension(frame, f)[0] for f in dims}, index=frame.index)
        helpers: dict[str, pd.Series] = {}
        for field, (helper, how) in measures.items():
            if how == "win_rate":
                closed = frame["opportunities.is_closed"].fillna(False).astype(bool)
                won = frame["opportunities.is_won"].fillna(False).astype(bool)
                helpers[f"{field}#won"] = (won & closed).astype(int)
                helpers[f"{field}#closed"] = closed.astype(int)
            else:
                helpers[field] = helper
        for name, series in helpers.items():
            data[name] = series.to_numpy()
        aggs = {name: ("sum" if "#" in name else measures[name][1]) for name in helpers}
        if dims:
            grouped = data.groupby(dims, dropna=False, sort=False).agg(aggs).reset_index() if aggs else \
                data[dims].drop_duplicates()
        else:
            grouped = pd.DataFrame({n: [getattr(data[n], a)()] for n, a in aggs.items()})
        for field, (_, how) in measures.items():
            if how == "win_rate":
                closed = grouped.pop(f"{field}#closed").astype(float)
                grouped[field] = (grouped.pop(f"{field}#won") / closed.where(closed > 0)).round(4)
        for field, expr in filters.items():  # measure filters act on the aggregated rows (HAVING)
            if field in measures and field in grouped:
                grouped = grouped[apply_filter(grouped[field], expr, "number", now).to_numpy()]
        for field in measures:  # the database's rounding, not float noise
            if field in grouped and pd.api.types.is_float_dtype(grouped[field]):
                grouped[field] = grouped[field].round(6)
        grouped = self._sort(grouped, fields, sorts, dims, measures)
        cap = limit if limit is not None else int(query.get("limit") or DEFAULT_LIMIT)
        cap = MAX_LIMIT if cap < 0 else min(cap, MAX_LIMIT)
        grouped = grouped.head(cap)
        out = grouped.reindex(columns=fields).astype(object)
        return fields, out.where(out.notna(), None).to_dict("records")

    def _sort(self, grouped: pd.DataFrame, fields: list[str], sorts: list[str], dims: list[str],
              measures: dict[str, Any]) -> pd.DataFrame:
        keys, ascending = [], []
        for spec in sorts:
            parts = spec.split()
            if parts and parts[0] in grouped.columns:
                keys.append(parts[0])
                ascending.append(not (len(parts) > 1 and parts[1].lower() == "desc"))
        if not keys:  # Looker's default: the first time dimension descending, else the first measure descending
            frame_cols = set(grouped.columns)
            time_dims = [d for d in dims if d in frame_cols and re.search(r"_(date|week|month|quarter|year|time)$", d)]
            first_measure = next((f for f in fields if f in measures), None)
            if time_dims:
                keys, ascending = [time_dims[0]], [False]
            elif first_measure is not None:
                keys, ascending = [first_measure], [False]
            elif dims:
                keys, ascending = [dims[0]], [True]
        return grouped.sort_values(keys, ascending=ascending, kind="stable", na_position="last") if keys else grouped


def _utc(col: pd.Series) -> pd.Series:
    stamps = pd.to_datetime(col, utc=True, errors="coerce")
    return stamps


def _fmt_time(stamps: pd.Series, timeframe: str) -> pd.Series:
    if timeframe in ("raw", "time"):
        out = stamps.dt.strftime("%Y-%m-%d %H:%M:%S")
    elif timeframe == "date":
        out = stamps.dt.strftime("%Y-%m-%d")
    elif timeframe == "week":
        out = (stamps.dt.tz_localize(None).dt.normalize() - pd.to_timedelta(stamps.dt.day_of_week, unit="D")) \
            .dt.strftime("%Y-%m-%d")
    elif timeframe == "month":
        out = stamps.dt.strftime("%Y-%m")
    elif timeframe == "quarter":
        out = stamps.dt.year.astype("Int64").astype(str) + "-Q" + stamps.dt.quarter.astype("Int64").astype(str)
    elif timeframe == "year":
        return stamps.dt.year.astype("Int64")
    elif timeframe == "day_of_week":
        out = stamps.dt.day_name()
    else:  # hour_of_day
        return stamps.dt.hour.astype("Int64")
    return out.astype(object).where(stamps.notna(), None)


@register
class Looker(SimulatedVendor):
    name = "looker"
    CLIENT_ID = "looker-sandbox-client-id"
    CLIENT_SECRET = "looker-sandbox-client-secret"

    def setup_credentials(self) -> None:
        self.tokens = TokenStore("looker", access_ttl_s=3600.0)
        self._queries: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def credentials(self) -> dict[str, str]:
        return {"client_id": self.CLIENT_ID, "client_secret": self.CLIENT_SECRET}

    def routes(self) -> list[tuple[str, Any, list[str]]]:
        return [
            (f"{API}/login", self.login, ["POST"]),
            (f"{API}/logout", self.logout, ["DELETE", "POST"]),
            (f"{API}/looks", self.all_looks, ["GET"]),
            (f"{API}/looks/search", self.search_looks, ["GET"]),
            (f"{API}/looks/{{look_id}}", self.look, ["GET"]),
            (f"{API}/looks/{{look_id}}/run/{{result_format}}", self.run_look, ["GET"]),
            (f"{API}/queries/run/{{result_format}}", self.run_inline_query, ["POST"]),
            (f"{API}/queries", self.create_query, ["POST"]),
            (f"{API}/queries/{{query_id}}", self.query, ["GET"]),
            (f"{API}/queries/{{query_id}}/run/{{result_format}}", self.run_query, ["GET"]),
            (f"{API}/users", self.all_users, ["GET"]),
            (f"{API}/users/{{user_id}}", self.user, ["GET"]),
            ("/{path:path}", self.not_found, ["GET", "POST", "PUT", "PATCH", "DELETE"]),
        ]

    # --- Looker's answers --------------------------------------------------------------------------------
    @staticmethod
    def _error(status: int, message: str, documentation_url: str = DOCS) -> JSONResponse:
        return JSONResponse({"message": message, "documentation_url": documentation_url}, status_code=status)

    def throttle_response(self, request: Request, fault: Fault) -> Response:
        return self._error(429, "Too Many Requests")

    def error_response(self, request: Request, status: int, message: str) -> Response:
        return self._error(status, message)

    def expired_token_response(self, request: Request) -> Response:
        return self._error(401, "Requires authentication.", AUTH_DOCS)

    def access_token(self, request: Request) -> str | None:
        """Looker's scheme is ``token <value>``; ``Bearer`` is accepted too."""
        scheme, _, value = (request.headers.get("authorization") or "").partition(" ")
        return value.strip() or None if scheme.lower() in ("token", "bearer") else None

    def error_response_for_body(self, exc: Exception) -> Response:
        return self._error(400, f"Could not parse JSON body: {exc}")

    def _auth(self, request: Request) -> None:
        self.require_bearer(request)

    # --- rendering ---------------------------------------------------------------------------------------------
    def render(self) -> None:
        c = self.company
        looks = c["looks"]
        users = c.presence_of("employee", "looker").sort_values("system_id")
        owner = users.iloc[0] if len(users) else None
        owner_id = str(owner["system_id"]) if owner is not None else "1"
        owner_name = str(owner["name"]) if owner is not None and isinstance(owner["name"], str) else "Looker Admin"
        records: dict[str, dict[str, Any]] = {}
        for row in looks.to_dict("records"):
            look_id = str(row["system_id"])
            query = {"model": row["model"], "view": row["view"], "fields": json.loads(row["fields"] or "[]"),
                     "filters": json.loads(row["filters"] or "{}") or None, "sorts": [], "limit": str(DEFAULT_LIMIT)}
            query_id = _stable_id("query", look_id, row["fields"], row["filters"])
            deleted = pd.notna(row["deleted_at"])
            records[look_id] = {
                "can": {"download": True, "run": True, "show": True, "copy": True, "update": True,
                        "destroy": True, "move": True, "find_and_replace": True, "index": True,
                        "recover": True, "render": True, "see_lookml": True, "explore": True},
                "content_metadata_id": _stable_id("cm", look_id), "id": look_id, "title": row["title"],
                "user_id": owner_id, "content_favorite_id": None, "created_at": _iso(row["created_at"]),
                "deleted": bool(deleted), "deleted_at": _iso(row["deleted_at"]),
                "deleter_id": owner_id if deleted else None, "description": row["description"],
                "embed_url": f"/embed/looks/{look_id}", "excel_file_url": f"/looks/{look_id}.xlsx",
                "favorite_count": 0, "google_spreadsheet_formula": f'=ImportData("/looks/{look_id}.csv")',
                "image_embed_url": f"/looks/{look_id}.png", "is_run_on_load": False, "last_accessed_at": None,
                "last_updater_id": owner_id, "last_viewed_at": None,
                "model": {"id": row["model"], "label": str(row["model"]).replace("_", " ").title()},
                "public": False, "public_slug": None, "public_url": None, "query_id": query_id,
                "short_url": f"/x/{_stable_id('short', look_id)}", "folder": {
                    "name": "Shared", "parent_id": None, "id": "1", "content_metadata_id": "1",
                    "created_at": None, "creator_id": None, "child_count": 0, "external_id": None,
                    "is_embed": False, "is_embed_shared_root": False, "is_embed_users_root": False,
                    "is_personal": False, "is_personal_descendant": False, "is_shared_root": True,
                    "is_users_root": False, "can": {"index": True, "show": True}},
                "folder_id": "1", "updated_at": _iso(row["updated_at"]), "user_name": owner_name,
                "view_count": 0, "usage_count": 0, "is_owner_disabled": False,
                "url": f"/looks/{look_id}", "query": {"id": query_id, **query},
            }
        self.looks = records
        self.model = Model(c)
        self.users = self._render_users()

    def _render_users(self) -> dict[str, dict[str, Any]]:
        """Looker's ``User`` objects of the employees present in Looker, by id (see the module docstring)."""
        c = self.company
        emp = c["employees"].set_index("employee_id")[["first_name", "last_name", "email", "is_active", "deleted_at"]]
        people = c.presence_of("employee", "looker").join(emp, on="entity_id", suffixes=("", "_emp"))
        people = people[people["deleted_at"].isna()]
        disabled = people["deleted_at_emp"].notna() | ~people["is_active"].fillna(True).astype(bool)
        mails = people["email"].fillna(people["email_emp"])
        users: dict[str, dict[str, Any]] = {}
        for uid, first, last, mail, off, created in zip(
                people["system_id"].astype(str), people["first_name"], people["last_name"], mails, disabled,
                people["created_at"], strict=True):
            first, last = (None if pd.isna(v) else str(v) for v in (first, last))
            mail = None if pd.isna(mail) else str(mail)
            users[uid] = {
                "can": {"show": True, "index": True, "show_details": True, "index_details": True,
                        "sudo": False, "see_roles": True, "update": True, "destroy": True},
                "avatar_url": f"https://gravatar.lookercdn.com/avatar/{_stable_id('avatar', uid)}?s=156&d=blank",
                "avatar_url_without_sizing": f"https://gravatar.lookercdn.com/avatar/{_stable_id('avatar', uid)}"
                                             "?d=blank",
                "credentials_api3": [], "credentials_embed": [], "credentials_google": None,
                "credentials_ldap": None, "credentials_looker_openid": None, "credentials_oidc": None,
                "credentials_saml": None, "credentials_totp": None,
                "credentials_email": None if mail is None else {
                    "created_at": _iso(created), "email": mail, "forced_password_reset_at_next_login": False,
                    "is_disabled": bool(off), "logged_in_at": None, "password_reset_url": None,
                    "type": "email", "url": f"{API}/users/{uid}/credentials_email",
                    "user_url": f"{API}/users/{uid}"},
                "display_name": f"{first} {last}" if first and last else None, "email": mail,
                "first_name": first, "group_ids": ["1"], "home_folder_id": "1", "id": uid,
                "is_disabled": bool(off), "last_name": last, "locale": "en", "looker_versions": [],
                "models_dir_validated": None, "personal_folder_id": _stable_id("folder", uid),
                "presumed_looker_employee": False, "role_ids": ["2"], "sessions": [], "ui_state": None,
                "verified_looker_employee": False, "roles_externally_managed": False, "allow_direct_roles": True,
                "allow_normal_group_membership": True, "allow_roles_from_normal_groups": True,
                "is_service_account": False, "url": f"{API}/users/{uid}",
            }
        return users

    # --- endpoints -----------------------------------------------------------------------------------------------
    async def login(self, request: Request) -> Response:
        form = await request.form()
        client_id = form.get("client_id") or request.query_params.get("client_id")
        client_secret = form.get("client_secret") or request.query_params.get("client_secret")
        if client_id != self.CLIENT_ID or client_secret != self.CLIENT_SECRET:
            return self._error(404, "Not found", AUTH_DOCS)
        access, _ = self.tokens.issue(self.CLIENT_ID, with_refresh=False)
        return JSONResponse({"access_token": access.value, "token_type": "Bearer",
                             "expires_in": int(self.tokens.access_ttl_s or 3600), "refresh_token": None})

    async def logout(self, request: Request) -> Response:
        self._auth(request)
        _, _, token = request.headers["authorization"].partition(" ")
        self.tokens.expire(token.strip())
        return Response(status_code=204)

    async def not_found(self, request: Request) -> Response:
        return self._error(404, "Not found")

    def _shape(self, request: Request, look: dict[str, Any], with_query: bool) -> dict[str, Any]:
        out = dict(look) if with_query else {k: v for k, v in look.items() if k not in ("query", "url")}
        return self._fields(request, out)

    @staticmethod
    def _fields(request: Request, record: dict[str, Any]) -> dict[str, Any]:
        fields = request.query_params.get("fields")
        if not fields:
            return record
        wanted = {f.strip().split("(")[0] for f in fields.split(",") if f.strip()}
        return {k: v for k, v in record.items() if k in wanted}

    @staticmethod
    def _int(request: Request, name: str, default: int | None) -> int | None:
        raw = request.query_params.get(name)
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError:
            raise Reply(Looker._error(400, f"Invalid value for '{name}': {raw!r} is not an integer")) from None

    def _window(self, request: Request, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        limit = self._int(request, "limit", None)
        offset = self._int(request, "offset", 0) or 0
        per_page, page = self._int(request, "per_page", None), self._int(request, "page", None)
        if per_page is not None and page is not None:
            limit, offset = per_page, max(0, page - 1) * per_page
        if offset < 0 or (limit is not None and limit < 0):
            raise Reply(self._error(400, "limit and offset must be non-negative"))
        return self.page(request, items, offset, len(items) if limit is None else limit)

    async def all_looks(self, request: Request) -> Response:
        self._auth(request)
        live = [look for look in self.looks.values() if not look["deleted"]]
        return JSONResponse([self._shape(request, look, False) for look in self._window(request, live)])

    async def search_looks(self, request: Request) -> Response:
        """``GET /looks/search``: title/id/folder_id/deleted filters, ``sorts`` (e.g. ``updated_at desc``), paging."""
        self._auth(request)
        params = request.query_params
        deleted = (params.get("deleted") or "false").lower() == "true"
        items = [look for look in self.looks.values() if look["deleted"] == deleted]
        for key in ("id", "folder_id", "user_id", "query_id"):
            if params.get(key):
                items = [look for look in items if str(look.get(key)) == params[key]]
        for key in ("title", "description"):
            if params.get(key):
                pattern = "^" + re.escape(params[key].lower()).replace("%", ".*") + "$"
                items = [look for look in items if re.match(pattern, str(look.get(key) or "").lower())]
        for spec in reversed([s.strip() for s in (params.get("sorts") or "id").split(",") if s.strip()]):
            key, _, direction = spec.partition(" ")
            if key not in ("id", "title", "created_at", "updated_at", "deleted_at", "view_count", "folder_id"):
                return self._error(400, f"Invalid sort field '{key}'")
            items.sort(key=lambda look, k=key: (look.get(k) is None, (len(look[k]), look[k]) if k == "id" else
                                                 str(look.get(k) or "")), reverse=direction.lower() == "desc")
        return JSONResponse([self._shape(request, look, False) for look in self._window(request, items)])

    async def all_users(self, request: Request) -> Response:
        """``GET /users``: every user, disabled ones too; ``ids`` filter, ``sorts``, ``limit``/``offset`` paging."""
        self._auth(request)
        params = request.query_params
        items = list(self.users.values())
        if params.get("ids"):
            wanted = {i.strip() for i in params["ids"].split(",")}
            items = [u for u in items if u["id"] in wanted]
        for spec in reversed([s.strip() for s in (params.get("sorts") or "id").split(",") if s.strip()]):
            key, _, direction = spec.partition(" ")
            if key not in ("id", "first_name", "last_name", "display_name", "email", "is_disabled"):
                return self._error(400, f"Invalid sort field '{key}'")
            items.sort(key=lambda u, k=key: (u.get(k) is None, (len(u[k]), u[k]) if k == "id" else
                                              str(u.get(k) or "").lower()), reverse=direction.lower() == "desc")
        return JSONResponse([self._fields(request, u) for u in self._window(request, items)])

    async def user(self, request: Request) -> Response:
        self._auth(request)
        user = self.users.get(request.path_params["user_id"])
        if user is None:
            return self._error(404, "Not found")
        return JSONResponse(self._fields(request, user))

    def _find(self, look_id: str) -> dict[str, Any]:
        look = self.looks.get(look_id)
        if look is None:
            raise Reply(self._error(404, "Not found"))
        return look

    async def look(self, request: Request) -> Response:
        self._auth(request)
        return JSONResponse(self._shape(request, self._find(request.path_params["look_id"]), True))

    async def run_look(self, request: Request) -> Response:
        self._auth(request)
        look = self._find(request.path_params["look_id"])
        return self._run(request, look["query"], request.path_params["result_format"])

    def _run(self, request: Request, query: dict[str, Any], result_format: str) -> Response:
        if result_format not in ("json", "csv"):
            return self._error(400, f"Unsupported result format '{result_format}' in the sandbox (json, csv)")
        limit = self._int(request, "limit", None)
        try:
            fields, rows = self.model.run(query, limit)
        except QueryError as exc:
            if result_format == "csv":
                return Response(f"looker_error\n{exc}\n", media_type="text/csv")
            return JSONResponse([{"looker_error": str(exc)}])
        if result_format == "csv":
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(fields)
            writer.writerows([[row[f] for f in fields] for row in rows])
            return Response(buffer.getvalue(), media_type="text/csv")
        return JSONResponse(self.page(request, rows, 0, len(rows)))

    def _query_body(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise Reply(self._error(400, "Request body must be a JSON object"))
        missing = [f for f in ("model", "view") if not body.get(f)]
        if missing:
            raise Reply(JSONResponse({"message": "Validation Failed", "errors": [
                {"field": f, "code": "missing", "message": "This field is required.", "documentation_url": DOCS}
                for f in missing], "documentation_url": DOCS}, status_code=422))
        if body["model"] not in {look["model"]["id"] for look in self.looks.values()} | {"sophia_revenue"}:
            raise Reply(self._error(404, f"model '{body['model']}' not found"))
        return body

    async def run_inline_query(self, request: Request) -> Response:
        self._auth(request)
        query = self._query_body(self.json_body(await request.body()))
        return self._run(request, query, request.path_params["result_format"])

    async def create_query(self, request: Request) -> Response:
        self._auth(request)
        query = self._query_body(self.json_body(await request.body()))
        query_id = _stable_id("adhoc", json.dumps(query, sort_keys=True, default=str))
        stored = {"id": query_id, "model": query["model"], "view": query["view"], "fields": query.get("fields"),
                  "filters": query.get("filters"), "sorts": query.get("sorts"), "limit": query.get("limit"),
                  "query_timezone": query.get("query_timezone"), "slug": query_id, "url": f"/x/{query_id}",
                  "has_table_calculations": False}
        with self._lock:
            self._queries[query_id] = stored
        return JSONResponse(stored)

    def _stored_query(self, query_id: str) -> dict[str, Any]:
        with self._lock:
            query = self._queries.get(query_id)
        if query is None:
            query = next((look["query"] for look in self.looks.values() if look["query"]["id"] == query_id), None)
        if query is None:
            raise Reply(self._error(404, "Not found"))
        return query

    async def query(self, request: Request) -> Response:
        self._auth(request)
        return JSONResponse(self._stored_query(request.path_params["query_id"]))

    async def run_query(self, request: Request) -> Response:
        self._auth(request)
        query = self._stored_query(request.path_params["query_id"])
        return self._run(request, query, request.path_params["result_format"])
