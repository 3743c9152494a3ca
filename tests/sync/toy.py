"""A small vendor for sync tests: its simulator (served by the sandbox) and its connector.

The wire format is the simplest real one: OAuth2 refresh grant with rotating refresh tokens,
``GET /v1/<object>?updated_since=ISO&offset=N`` pages of 10 with ``next_offset``, tombstones marked
``deleted``. Two vendor names (``toy``, ``toy2``) serve the same shape so a sync has two sources.
Also importable by a subprocess (the crash tests): ``register_connectors()``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dlt
import pyarrow as pa
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sophia_lib.connectors import Connector, SourceContext, Stream, register
from sophia_lib.connectors._auth import OAuth2RefreshAuth
from sophia_lib.connectors.spec import incremental
from sophia_lib.sandbox.simulator.base import NativeTable, SimulatedVendor

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PAGE = 10
THINGS, WIDGETS = 60, 25
REFRESH_TOKEN, CLIENT_ID = "toy-refresh", "toy-client"


def thing(i: int, version: int = 0) -> dict[str, Any]:
    return {"id": f"t{i:03d}", "n": i, "label": f"thing {i} v{version}", "amount": i * 1.5,
            "updated_at": (T0 + timedelta(minutes=i + 1000 * version)).isoformat()}


class ToyVendor(SimulatedVendor):
    name = "toy"

    def setup_credentials(self) -> None:
        self.tokens.rotate_refresh = True
        self.tokens.add_refresh_token(REFRESH_TOKEN, CLIENT_ID)

    def credentials(self) -> dict[str, str]:
        return {"client_id": CLIENT_ID, "refresh_token": REFRESH_TOKEN}

    def render(self) -> None:
        if self.tables:
            return  # tests change self.tables directly (see change())
        things = [(datetime.fromisoformat(r["updated_at"]), {**r, "deleted": i % 13 == 12}, False)
                  for i in range(THINGS) for r in [thing(i)]]
        widgets = [(T0 + timedelta(minutes=i), {"id": f"w{i:03d}", "size": i % 4,
                                                 "updated_at": (T0 + timedelta(minutes=i)).isoformat(),
                                                 "deleted": False}, False) for i in range(WIDGETS)]
        self.tables = {"things": NativeTable.build(things), "widgets": NativeTable.build(widgets)}

    def change(self, table: str, records: list[dict[str, Any]]) -> None:
        """Upsert records (a later ``updated_at``; ``deleted: True`` makes a tombstone)."""
        current = {r["id"]: r for r in self.tables[table].records}
        current.update({r["id"]: {"deleted": False, **r} for r in records})
        self.tables[table] = NativeTable.build(
            [(datetime.fromisoformat(r["updated_at"]), r, False) for r in current.values()])

    def live(self, table: str) -> dict[str, dict[str, Any]]:
        return {r["id"]: r for r in self.tables[table].records if not r["deleted"]}

    def routes(self):
        return [("/oauth/token", self.token, ["POST"]), ("/v1/{object}", self.list_objects, ["GET"])]

    async def token(self, request: Request) -> Response:
        form = await request.form()
        try:
            access, refresh = self.tokens.refresh(str(form.get("refresh_token")), str(form.get("client_id")))
        except Exception:
            return JSONResponse({"error": "invalid_grant", "error_description": "refresh token revoked"}, 400)
        return JSONResponse({"access_token": access.value, "refresh_token": refresh.value, "expires_in": 3600})

    async def list_objects(self, request: Request) -> Response:
        self.require_bearer(request)
        table = self.tables.get(request.path_params["object"])
        if table is None:
            return self.error_response(request, 404, "no such object")
        since = request.query_params.get("updated_since")
        items = table.select(datetime.fromisoformat(since) if since else None)
        start = int(request.query_params.get("offset", 0))
        page = self.page(request, items, start, PAGE)
        return JSONResponse({"items": page, "next_offset": start + PAGE if start + PAGE < len(items) else None})

    def error_response(self, request: Request, status: int, message: str) -> Response:
        return JSONResponse({"message": f"Toy says: {message}"}, status_code=status)


class Toy2Vendor(ToyVendor):
    name = "toy2"


# --- the connector ---------------------------------------------------------------------------------------

STREAMS = (
    Stream("things", primary_key=("id",), cursor="updated_at", required=("id",),
           columns={"id": "text", "n": "bigint", "amount": "double", "updated_at": "timestamp"}),
    Stream("widgets", primary_key=("id",), cursor="updated_at", columns={"id": "text", "updated_at": "timestamp"}),
)


def _pages(ctx: SourceContext, session: Any, stream: Stream, since: Any) -> Iterator[pa.Table]:
    offset: int | None = 0
    params: dict[str, Any] = {}
    if since is not None and not ctx.full_refresh:
        params["updated_since"] = since.isoformat() if hasattr(since, "isoformat") else str(since)
    while offset is not None:
        answer = session.get(ctx.url(f"/v1/{stream.name}"), params={**params, "offset": offset}).json()
        dead = {r.get("id") for r in answer["items"] if r.get("deleted")}
        records = [{k: v for k, v in r.items() if k != "deleted"} for r in answer["items"]]
        yield from ctx.emit(stream, records, deleted=lambda record, dead=dead: record["id"] in dead)
        offset = answer["next_offset"]


def toy_source(ctx: SourceContext) -> Any:
    auth = OAuth2RefreshAuth(ctx.name, ctx.url("/oauth/token"), ctx.options["client_id"], "",
                             ctx.secret("refresh_token"), on_rotate=lambda t: ctx.save_secret("refresh_token", t))
    session = ctx.session(auth=auth)
    things, widgets = STREAMS

    @dlt.resource(**things.hints())
    def things_resource(cursor: Any = incremental(things, ctx.start_date)) -> Iterator[pa.Table]:
        yield from _pages(ctx, session, things, cursor.start_value)

    @dlt.resource(**widgets.hints())
    def widgets_resource(cursor: Any = incremental(widgets, ctx.start_date)) -> Iterator[pa.Table]:
        yield from _pages(ctx, session, widgets, cursor.start_value)

    @dlt.source(name=ctx.name)
    def source() -> Any:
        return [things_resource, widgets_resource]

    return source()


def register_connectors() -> None:
    for name in ("toy", "toy2"):
        register(Connector(name=name, title=name.title(), default_base_url=f"https://api.{name}.example",
                           credentials=("refresh_token",), options={"client_id": CLIENT_ID}, streams=STREAMS,
                           source=toy_source, docs="A test vendor."))


def main(spec_path: str) -> None:
    """Run a sync in this process from a JSON spec (the crash tests start this as a subprocess)."""
    import json
    from pathlib import Path

    from sophia_lib.config import SophiaConfig, SourceConfig
    from sophia_lib.sync import run_sync

    spec = json.loads(Path(spec_path).read_text())
    register_connectors()
    config = SophiaConfig(**spec["config"])
    for name, source in spec["sources"].items():
        config.sources[name] = SourceConfig(**source)
    results = run_sync(config, progress=False)
    print(json.dumps([r.to_dict() for r in results], default=str))


if __name__ == "__main__":
    import sys

    main(sys.argv[1])
