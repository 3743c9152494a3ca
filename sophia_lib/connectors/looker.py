"""Looker (API 4.0): saved Looks, the result rows of each Look, and users.

Wire (VENDOR-APIS.md §10): ``POST /api/4.0/login`` (form ``client_id``/``client_secret``) gives a
one-hour token, sent as ``Authorization: token <access_token>``; Looker has no refresh, so the login
is repeated before expiry and on a 401.

* ``looks``: ``GET /api/4.0/looks/search`` (live Looks, ``limit``/``offset`` paging, sorted by id)
  plus the same search with ``deleted=true``, whose Looks are tombstones (Looker soft-deletes to the
  trash). Looker has no modification filter on Looks, so every sync lists them all (they are few; a
  cursor would also skip Looks trashed without a new ``updated_at``); the merge on ``id`` keeps one
  row each.
* ``look_results``: ``GET /api/4.0/looks/{id}/run/json?limit=…`` for every live Look. A run has no
  cursor and no stable row identity, so the table is **replaced each sync** (write disposition
  ``replace``); its key is ``(look_id, row_number)``, the row's position in the Look's own sort, and
  each row's values (keyed by Looker's fully scoped field names) are kept as JSON in ``data``. A Look
  whose query fails answers ``[{"looker_error": …}]``; that Look is quarantined with Looker's message,
  and the other Looks still load.
* ``users``: ``GET /api/4.0/users`` (``limit``/``offset`` paging, sorted by id, only the fields below), read in
  full each sync and **replaced**: a deleted user drops out of the list, and out of the table; a disabled one
  stays, with ``is_disabled``. Their ids are the Looks' ``user_id``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dlt
from dlt.sources.helpers.rest_client import RESTClient
from dlt.sources.helpers.rest_client.paginators import OffsetPaginator

from sophia_lib.connectors import register
from sophia_lib.connectors._auth import LoginAuth
from sophia_lib.connectors._streams import snapshot_hints, unique
from sophia_lib.connectors.spec import Connector, SourceContext, Stream

API = "/api/4.0"
OWN_ERRORS: dict[str, list] = {"response": []}
"""Turns off dlt RESTClient's raise-for-status hook, which would fire before VendorSession classifies the answer."""
PAGE_SIZE = 100
ROW_LIMIT = 5000
LOOK_FIELDS = ("id,title,description,created_at,updated_at,deleted,deleted_at,folder_id,user_id,query_id,"
               "model,view_count,public")

USER_FIELDS = "id,first_name,last_name,display_name,email,is_disabled"

LOOKS = Stream("looks", ("id",), cursor="updated_at", required=("title",),
               columns={"id": "text", "title": "text", "description": "text", "model": "text", "folder_id": "text",
                        "user_id": "text", "query_id": "text", "view_count": "bigint", "public": "bool",
                        "created_at": "timestamp", "updated_at": "timestamp"},
               description="Saved Looks (soft-deleted Looks are removed)")
LOOK_RESULTS = Stream("look_results", ("look_id", "row_number"), required=("data",),
                      columns={"look_id": "text", "row_number": "bigint", "data": "json"},
                      description="Each live Look's result rows, replaced every sync")
USERS = Stream("users", ("id",),
               columns={"id": "text", "first_name": "text", "last_name": "text", "display_name": "text",
                        "email": "text", "is_disabled": "bool"},
               description="Looker users (owners of Looks), disabled ones included; replaced every sync")


def flatten_look(look: dict[str, Any]) -> dict[str, Any]:
    model = look.get("model")
    return {"id": str(look["id"]) if look.get("id") is not None else None, "title": look.get("title"),
            "description": look.get("description"),
            "model": model.get("id") if isinstance(model, dict) else model, "folder_id": look.get("folder_id"),
            "user_id": look.get("user_id"), "query_id": look.get("query_id"), "view_count": look.get("view_count"),
            "public": look.get("public"), "created_at": look.get("created_at"), "updated_at": look.get("updated_at"),
            "deleted": bool(look.get("deleted"))}


def flatten_user(user: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(user["id"]) if user.get("id") is not None else None, "first_name": user.get("first_name"),
            "last_name": user.get("last_name"), "display_name": user.get("display_name"), "email": user.get("email"),
            "is_disabled": user.get("is_disabled")}


def result_rows(look_id: str, rows: list[Any]) -> list[dict[str, Any]]:
    """A Look's run → one record per row; a ``looker_error`` answer → one record without data (quarantined)."""
    if len(rows) == 1 and isinstance(rows[0], dict) and "looker_error" in rows[0]:
        return [{"look_id": look_id, "row_number": 0, "data": None, "looker_error": rows[0]["looker_error"]}]
    return [{"look_id": look_id, "row_number": i, "data": row} for i, row in enumerate(rows)]


def source(ctx: SourceContext) -> Any:
    """The dlt source of Looks, their results and users."""
    auth = LoginAuth(ctx.name, ctx.url(f"{API}/login"), {"client_id": str(ctx.options["client_id"]),
                                                          "client_secret": ctx.secret("client_secret")},
                     scheme="token")
    client = RESTClient(base_url=ctx.url(API), session=ctx.session(auth=auth))
    row_limit = int(ctx.options.get("row_limit") or ROW_LIMIT)
    page_size = int(ctx.options.get("page_size") or PAGE_SIZE)

    def listing(path: str, params: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
        paginator = OffsetPaginator(limit=page_size, total_path=None, stop_after_empty_page=True)
        yield from client.paginate(path, params=params, paginator=paginator, hooks=OWN_ERRORS)

    def search(deleted: bool) -> Iterator[list[dict[str, Any]]]:
        return listing("/looks/search", {"deleted": str(deleted).lower(), "sorts": "id", "fields": LOOK_FIELDS})

    @dlt.resource(**LOOKS.hints())
    def looks() -> Iterator[Any]:
        for deleted in (False, True):
            for page in search(deleted):
                yield from ctx.emit(LOOKS, [flatten_look(look) for look in page], deleted=lambda r: r["deleted"])

    @dlt.resource(**{**LOOK_RESULTS.hints(), "write_disposition": "replace"})
    def look_results() -> Iterator[Any]:
        ids = dict.fromkeys(r["id"] for page in search(False) for r in map(flatten_look, page) if r["id"])
        for look_id in ids:  # a Look repeated across listing pages is run once
            page = client.get(f"/looks/{look_id}/run/json", params={"limit": row_limit,
                                                                     "apply_formatting": "false"}).json()
            yield from ctx.emit(LOOK_RESULTS, result_rows(look_id, page if isinstance(page, list) else []))

    @dlt.resource(**snapshot_hints(USERS))
    def users() -> Iterator[Any]:
        seen: set[tuple[Any, ...]] = set()
        for page in listing("/users", {"sorts": "id", "fields": USER_FIELDS}):
            yield from ctx.emit(USERS, unique([flatten_user(u) for u in page], USERS.primary_key, seen))

    @dlt.source(name="looker", max_table_nesting=0)
    def looker() -> list[Any]:
        return [looks, look_results, users]

    return looker()


register(Connector(
    name="looker", title="Looker", default_base_url="https://example.cloud.looker.com",
    credentials=("client_secret",), streams=(LOOKS, LOOK_RESULTS, USERS), source=source,
    options={"client_id": None, "row_limit": ROW_LIMIT, "page_size": PAGE_SIZE},
    docs="base_url is your instance (https://<instance>.cloud.looker.com); an API3 key pair of a user allowed to "
         "see the Looks and the users (permission see_users): options.client_id and the secret client_secret. "
         "look_results is replaced every sync (row_limit rows per Look at most).",
))
