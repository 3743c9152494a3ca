"""Notion: databases, pages (workspace pages and database rows) and users over the public API, version 2022-06-28.

Wire (VENDOR-APIS.md §9), every call with ``Authorization: Bearer <integration token>`` and
``Notion-Version``, paced at ``options["rate_per_s"]`` (Notion's budget is about 3 requests/s):

* ``databases``: ``POST /v1/search`` filtered to databases, sorted by ``last_edited_time`` descending,
  ``start_cursor`` paging; an incremental run stops at the first result older than its cursor
  (search has no timestamp filter, only the sort).
* ``pages``: database rows through ``POST /v1/databases/{id}/query`` with the ``last_edited_time``
  ``on_or_after`` filter, sorted ascending (the filter is applied by Notion, so an incremental run
  reads only changed rows); workspace pages (no database parent) through search, as for databases.
* Cursor: ``last_edited_time`` has minute granularity (seconds zeroed) and ``on_or_after`` is
  inclusive, so each run re-reads :data:`LAG_S` seconds before the last cursor; the merge on ``id``
  removes the repeats.
* Deletes: trashed pages and databases (``archived``/``in_trash``) drop out of search and queries
  under 2022-06-28, so an incremental read never sees them. They are found by a *reconciliation*:
  every ``options["reconcile_every_hours"]`` (and on the first sync) the connector lists every id,
  and ids it loaded before that are no longer listed become tombstones. The known ids are kept in
  the resource's dlt state, stored with the data (about 40 bytes a page). A trashed page that does
  come back in a listing is a tombstone too.
* ``users``: ``GET /v1/users`` (``start_cursor``/``page_size`` query parameters), the workspace's members
  and bots, read in full each sync and **replaced**: a removed member drops out of the list, and out of the
  table. ``person.email`` is sent only when the integration has the "Read user information including email
  addresses" capability; without it ``email`` is empty and page authors stay bare ids downstream.
* Versions: only ``2022-06-28`` is spoken (2025-09-03 moves queries to data sources; see §9).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import dlt
from dlt.sources.helpers.rest_client import RESTClient
from dlt.sources.helpers.rest_client.paginators import JSONResponseCursorPaginator

from sophia_lib.connectors import register
from sophia_lib.connectors._auth import HeaderAuth
from sophia_lib.connectors._streams import new_fields, snapshot_hints, unique
from sophia_lib.connectors.errors import SourceConfigError
from sophia_lib.connectors.spec import Connector, SourceContext, Stream, coerce, incremental

VERSION = "2022-06-28"
OWN_ERRORS: dict[str, list] = {"response": []}
"""Turns off dlt RESTClient's raise-for-status hook, which would fire before VendorSession classifies the answer."""
PAGE_SIZE = 100
LAG_S = 180.0
RATE_PER_S = 3.0

_COMMON = {"id": "text", "created_time": "timestamp", "last_edited_time": "timestamp", "created_by_id": "text",
           "last_edited_by_id": "text", "parent_type": "text", "parent_id": "text", "title": "text", "url": "text"}
DATABASES = Stream("databases", ("id",), cursor="last_edited_time", columns={**_COMMON, "property_names": "json"},
                   description="Notion databases shared with the integration")
PAGES = Stream("pages", ("id",), cursor="last_edited_time", required=("parent_type",),
               columns={**_COMMON, "database_id": "text", "properties": "json"},
               description="Notion pages: database rows (database_id set, properties as JSON) and workspace pages")
USERS = Stream("users", ("id",), required=("type",),
               columns={"id": "text", "type": "text", "name": "text", "email": "text", "avatar_url": "text"},
               description="Workspace members (type person, with person.email) and bots; replaced every sync")


# --- flattening ------------------------------------------------------------------------------------------

def _plain(rich: Any) -> str:
    return "".join(part.get("plain_text", "") for part in rich or [] if isinstance(part, dict))


def _property_value(prop: dict[str, Any]) -> Any:
    """A Notion property → its plain value (text, number, names, ids, dates)."""
    kind = prop.get("type")
    value = prop.get(kind) if kind else None
    if kind in ("title", "rich_text"):
        return _plain(value)
    if kind in ("select", "status"):
        return value.get("name") if isinstance(value, dict) else None
    if kind == "multi_select":
        return [v.get("name") for v in value or []]
    if kind in ("people", "relation"):
        return [v.get("id") for v in value or []]
    if kind == "date":
        return value.get("start") if isinstance(value, dict) else None
    if kind in ("formula", "rollup") and isinstance(value, dict):
        return value.get(value.get("type"))
    return value


def _common(obj: dict[str, Any]) -> dict[str, Any]:
    parent = obj.get("parent") or {}
    parent_type = parent.get("type")
    return {"id": obj.get("id"), "created_time": obj.get("created_time"),
            "last_edited_time": obj.get("last_edited_time"),
            "created_by_id": (obj.get("created_by") or {}).get("id"),
            "last_edited_by_id": (obj.get("last_edited_by") or {}).get("id"),
            "parent_type": parent_type, "parent_id": parent.get(parent_type) if parent_type != "workspace" else None,
            "url": obj.get("url"), "trashed": bool(obj.get("archived") or obj.get("in_trash"))}


def flatten_page(page: dict[str, Any]) -> dict[str, Any]:
    props = page.get("properties") or {}
    values = {name: _property_value(p) for name, p in props.items() if isinstance(p, dict)}
    title = next((values[n] for n, p in props.items() if isinstance(p, dict) and p.get("type") == "title"), None)
    row = _common(page)
    return {**row, "title": title, "database_id": row["parent_id"] if row["parent_type"] == "database_id" else None,
            "properties": values}


def flatten_database(db: dict[str, Any]) -> dict[str, Any]:
    return {**_common(db), "title": _plain(db.get("title")), "property_names": sorted(db.get("properties") or {})}


_READ_USER = frozenset({"object", "id", "type", "name", "avatar_url", "person", "bot"})


def flatten_user(user: dict[str, Any]) -> dict[str, Any]:
    """A user object → its row; a person's e-mail is under ``person.email``, a bot has none."""
    person = user.get("person") if isinstance(user.get("person"), dict) else {}
    return {"id": user.get("id"), "type": user.get("type"), "name": user.get("name"), "email": person.get("email"),
            "avatar_url": user.get("avatar_url"), **new_fields(user, _READ_USER)}


def _deleted(row: dict[str, Any]) -> bool:
    return bool(row.get("trashed"))


# --- wire ------------------------------------------------------------------------------------------------

def _iso(value: Any) -> str:
    return coerce(value, "timestamp").astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class _Reader:
    """Notion's list calls for one sync; ``since`` None reads everything."""

    def __init__(self, client: RESTClient) -> None:
        self.client = client

    def search(self, kind: str, since: datetime | None) -> Iterator[list[dict[str, Any]]]:
        """Newest first; stops after the first page holding a result older than ``since``."""
        body = {"filter": {"property": "object", "value": kind}, "page_size": PAGE_SIZE,
                "sort": {"timestamp": "last_edited_time", "direction": "descending"}}
        for page in self.client.paginate("/v1/search", method="POST", json=body, data_selector="results",
                                         paginator=_cursor(), hooks=OWN_ERRORS):
            fresh = [r for r in page if since is None or coerce(r.get("last_edited_time"), "timestamp") >= since]
            yield fresh
            if len(fresh) < len(page):
                return

    def users(self) -> Iterator[list[dict[str, Any]]]:
        paginator = JSONResponseCursorPaginator(cursor_path="next_cursor", cursor_param="start_cursor")
        yield from self.client.paginate("/v1/users", params={"page_size": PAGE_SIZE}, data_selector="results",
                                        paginator=paginator, hooks=OWN_ERRORS)

    def query(self, database_id: str, since: datetime | None) -> Iterator[list[dict[str, Any]]]:
        body: dict[str, Any] = {"sorts": [{"timestamp": "last_edited_time", "direction": "ascending"}],
                                "page_size": PAGE_SIZE}
        if since is not None:
            body["filter"] = {"timestamp": "last_edited_time", "last_edited_time": {"on_or_after": _iso(since)}}
        yield from self.client.paginate(f"/v1/databases/{database_id}/query", method="POST", json=body,
                                        data_selector="results", paginator=_cursor(), hooks=OWN_ERRORS)


def _cursor() -> JSONResponseCursorPaginator:
    return JSONResponseCursorPaginator(cursor_path="next_cursor", cursor_body_path="start_cursor")


class _Known:
    """Ids loaded so far (resource state) and the reconciliation that turns vanished ones into tombstones."""

    def __init__(self, every_h: float, first: bool) -> None:
        self.state = dlt.current.resource_state()
        self.ids: set[str] = set(self.state.get("known_ids") or [])
        last = float(self.state.get("reconciled_at") or 0.0)
        self.due = first or time.time() - last >= every_h * 3600.0
        self.seen: set[str] = set()
        self.latest: Any = None

    def note(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self.seen.add(row["id"])
            stamp = row.get("last_edited_time")
            if stamp and (self.latest is None or str(stamp) > str(self.latest)):
                self.latest = stamp

    def tombstones(self) -> list[dict[str, Any]]:
        """After a full listing: the ids that vanished, stamped with the newest time seen (never the
        local clock, so the cursor does not run ahead of the vendor's)."""
        if self.latest is None:
            return []
        return [{"id": i, "last_edited_time": self.latest, "parent_type": "unknown", "trashed": True}
                for i in sorted(self.ids - self.seen)]

    def commit(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            (self.ids.discard if _deleted(row) else self.ids.add)(row["id"])

    def save(self, reconciled: bool) -> None:
        if reconciled:
            self.ids &= self.seen
            self.state["reconciled_at"] = time.time()
        self.state["known_ids"] = sorted(self.ids)


def source(ctx: SourceContext) -> Any:
    """The dlt source of Notion databases, pages and users (see the module docstring)."""
    version = str(ctx.options.get("notion_version") or VERSION)
    if version != VERSION:
        raise SourceConfigError(ctx.name, f"Notion-Version {version!r} is not supported; this connector speaks "
                                f"{VERSION}", fix=f"set sources.notion.options.notion_version to {VERSION}")
    session = ctx.session(auth=HeaderAuth.bearer(ctx.secret("integration_token")),
                          rate_per_s=float(ctx.options.get("rate_per_s") or RATE_PER_S))
    session.headers.update({"Notion-Version": version, "Content-Type": "application/json"})
    reader = _Reader(RESTClient(base_url=ctx.base_url, session=session))
    every_h = float(ctx.options.get("reconcile_every_hours", 24))

    def start(cursor: Any) -> datetime | None:
        if ctx.full_refresh or cursor.start_value is None or cursor.start_value <= ctx.start_date:
            return None
        return cursor.start_value

    def pages_of(stream: Stream, pages: Iterator[list[dict[str, Any]]], flatten: Any,
                 known: _Known) -> Iterator[Any]:
        for page in pages:
            rows = [flatten(r) for r in page]
            known.note(rows)
            yield from ctx.emit(stream, rows, deleted=_deleted)
            known.commit(rows)

    @dlt.resource(**DATABASES.hints())
    def databases(cursor: Any = incremental(DATABASES, ctx.start_date, lag=LAG_S)) -> Iterator[Any]:
        since = start(cursor)
        known = _Known(every_h, since is None)
        yield from pages_of(DATABASES, reader.search("database", None if known.due else since), flatten_database,
                            known)
        if known.due:
            gone = known.tombstones()
            yield from ctx.emit(DATABASES, gone, deleted=_deleted)
            known.commit(gone)
        known.save(known.due)

    @dlt.resource(**PAGES.hints())
    def pages(cursor: Any = incremental(PAGES, ctx.start_date, lag=LAG_S)) -> Iterator[Any]:
        since = start(cursor)
        known = _Known(every_h, since is None)
        window = None if known.due else since
        workspace = (list(filter(lambda r: (r.get("parent") or {}).get("type") != "database_id", page))
                     for page in reader.search("page", window))
        yield from pages_of(PAGES, workspace, flatten_page, known)
        for batch in reader.search("database", None):
            for db in batch:
                yield from pages_of(PAGES, reader.query(db["id"], window), flatten_page, known)
        if known.due:
            gone = known.tombstones()
            yield from ctx.emit(PAGES, gone, deleted=_deleted)
            known.commit(gone)
        known.save(known.due)

    @dlt.resource(**snapshot_hints(USERS))
    def users() -> Iterator[Any]:
        seen: set[tuple[Any, ...]] = set()
        for page in reader.users():
            yield from ctx.emit(USERS, unique([flatten_user(u) for u in page], USERS.primary_key, seen))

    @dlt.source(name="notion", max_table_nesting=0)
    def notion() -> list[Any]:
        return [databases, pages, users]

    return notion()


register(Connector(
    name="notion", title="Notion", default_base_url="https://api.notion.com", credentials=("integration_token",),
    streams=(DATABASES, PAGES, USERS), source=source,
    options={"notion_version": VERSION, "rate_per_s": RATE_PER_S, "reconcile_every_hours": 24},
    docs="An internal integration token (Settings → Connections → Develop integrations), with the pages and "
         "databases to sync shared with the integration, and the \"Read user information including email "
         "addresses\" capability (so page authors can be matched to employees). Deletes (trash) are found by a "
         "reconciliation every reconcile_every_hours; rate_per_s paces requests under Notion's ~3 requests/s.",
))
