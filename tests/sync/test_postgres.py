"""The same sync into a PostgreSQL warehouse (dlt's sqlalchemy destination over psycopg 3)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sophia_lib.appdb.models import SyncStreamStat
from sophia_lib.config import SophiaConfig
from sophia_lib.sandbox.simulator.server import SandboxServer
from sophia_lib.sync import run_sync
from tests.sync import toy
from tests.sync.helpers import app_rows, raw_keys, raw_rows

pytestmark = pytest.mark.postgres


def test_sync_into_postgres_counts_drift_and_quarantine(
        toy_server: SandboxServer, make_config: Callable[..., SophiaConfig], postgres_url: str) -> None:
    config = make_config(toy_server, warehouse_url=postgres_url)
    first = {r.source: r for r in run_sync(config, progress=False)}
    assert [first[n].status for n in ("toy", "toy2")] == ["succeeded", "succeeded"]
    vendor: toy.ToyVendor = toy_server.sandbox.vendors["toy"]  # type: ignore[assignment]
    assert raw_keys(config, "toy", "things") == sorted(vendor.live("things"))

    vendor.change("things", [toy.thing(1, 1), toy.thing(2, 1) | {"deleted": True}, toy.thing(300, 1) | {"n": "many"}])
    toy_server.faults.add("toy", "schema_drift", "/v1/widgets", change="removed_field", field="updated_at")
    vendor.change("widgets", [{"id": "w000", "size": 9, "updated_at": toy.thing(0, 2)["updated_at"]}])
    result = run_sync(config, sources=["toy"], progress=False)[0]
    assert result.status == "succeeded", result.error
    things = result.streams["things"]
    # t300's n ("many") is not a bigint: quarantined by the connector, so 0 inserted
    assert (things.rows_inserted, things.rows_updated, things.rows_deleted) == (0, 1, 1)
    # widgets: w000 and the re-read last widget of the first run (the cursor overlap) lost updated_at
    assert things.quarantined == 1 and result.streams["widgets"].quarantined == 2
    assert raw_keys(config, "toy", "things") == sorted(set(vendor.live("things")) - {"t300"})
    assert {r["stream"] for r in raw_rows(config, "toy", "_sophia_quarantine")} == {"things", "widgets"}
    stats = app_rows(config, SyncStreamStat, run_id=result.run_id, stream="things")[0]
    assert (stats.rows_updated, stats.rows_deleted) == (1, 1)
