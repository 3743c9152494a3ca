"""The query door: latency through the service (HTTP + identity + guard + audit + Arrow) against the same SQL
run raw in DuckDB in process (the peer), cached latency, and throughput with 80 concurrent clients.

The service runs in this process on a background thread, on a snapshot of synthetic facts and contacts, as
an analyst (PII masked, so the rewrite is on the measured path). Identity comes from a fixed token table
here: with the hub, a verified token is reused for ``query.identity_cache_s`` seconds, so steady-state
reads pay a dictionary lookup for it, as here. Every read is audited (a commit to the app DB).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from benchmarks import Result, median_ms

ROWS = {"small": 100_000, "medium": 2_000_000, "large": 10_000_000}
CLIENTS = 80
METRIC_SQL = ("select region, date_trunc('week', closed_at) as week, sum(amount) as amount, count(*) as deals "
              "from marts.deals where closed_at >= :start group by 1, 2 order by 1, 2")
TRANSPORT_MS = 3.0
CACHED_TARGET_MS = 20.0
THROUGHPUT_TARGET = 200.0  # requests/s for 80 clients: each asks about every 0.4 s


class _Tokens:
    def __init__(self, identities: dict) -> None:
        self.identities = identities

    async def identify(self, token: str | None):
        from sophia_lib.query.errors import NotAuthenticatedError

        if token not in self.identities:
            raise NotAuthenticatedError("unknown token", fix="")
        return self.identities[token]


def _data(rows: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    deals = pd.DataFrame({
        "deal_key": np.arange(rows), "region": rng.choice(["emea", "amer", "apac"], rows),
        "closed_at": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 730, rows), unit="D"),
        "amount": rng.gamma(2.0, 1000.0, rows),
        "contact_email": [f"c{i % 5000}@acme{i % 50}.com" for i in range(rows)]})
    people = pd.DataFrame({"person_key": np.arange(5000), "email": [f"c{i}@acme.com" for i in range(5000)],
                           "full_name": [f"Person {i}" for i in range(5000)]})
    return deals, people


def run(args: argparse.Namespace) -> list[Result]:
    from sophia_lib.config import SophiaConfig
    from sophia_lib.query.client import QueryClient
    from sophia_lib.query.identity import Identity
    from sophia_lib.query.service import start_in_thread
    from sophia_lib.warehouse import open_warehouse

    rows = ROWS[args.size]
    repeat = 15 if args.size == "small" else 25
    deals, people = _data(rows)
    params = {"start": "2024-06-01"}
    with tempfile.TemporaryDirectory() as tmp:
        config = SophiaConfig(var_dir=Path(tmp))
        wh = open_warehouse(config)

        def build(b) -> None:
            b.write_table("marts", "deals", deals)
            b.write_table("core", "people", people)

        info = wh.publish(build)
        snapshot_file = Path(tmp) / "warehouse" / "snapshots" / f"{info.id}.duckdb"
        identities = {"analyst-token": Identity("ana", "analyst", ("sophia-analysts",))}
        uncached_config = config.model_copy(deep=True)
        uncached_config.query.cache = "off"
        uncached = start_in_thread(uncached_config, identifier=_Tokens(identities))
        cached = start_in_thread(config, identifier=_Tokens(identities))
        try:
            raw = duckdb.connect(str(snapshot_file), read_only=True)
            raw_sql = METRIC_SQL.replace(":start", "$start")
            peer_ms = median_ms(lambda: raw.execute(raw_sql, params).df(), repeat)
            raw.close()
            client = QueryClient(uncached.url, "analyst-token")
            for _ in range(2 * config.query.workers):  # warm every worker thread's reader and the guard memo
                client.sql(METRIC_SQL, params)
            service_ms = median_ms(lambda: client.sql(METRIC_SQL, params), repeat)
            masked_ms = median_ms(lambda: client.sql("select email, full_name from core.people"), repeat)
            client.close()
            hot = QueryClient(cached.url, "analyst-token")
            hot.sql(METRIC_SQL, params)
            cached_ms = median_ms(lambda: hot.sql(METRIC_SQL, params), repeat * 4)
            hot.close()
            throughput = _throughput(cached.url, params, per_client=5 if args.size == "small" else 20)
        finally:
            uncached.stop()
            cached.stop()
            wh.close()
    return [
        Result(f"metric SQL via service, uncached ({rows:,} rows)", service_ms, "ms", "raw DuckDB in process",
               peer_ms, target_ratio=(1.2 * peer_ms + TRANSPORT_MS) / peer_ms),
        Result("masked select (5,000 contacts) via service", masked_ms, "ms", "target", 50.0),
        Result("metric SQL via service, cached", cached_ms, "ms", "target", CACHED_TARGET_MS),
        Result(f"throughput, {CLIENTS} concurrent clients (cached)", throughput, "req/s", "target",
               THROUGHPUT_TARGET, lower_is_better=False),
    ]


def _throughput(url: str, params: dict, per_client: int) -> float:
    from sophia_lib.query.client import QueryClient

    clients = [QueryClient(url, "analyst-token") for _ in range(CLIENTS)]
    barrier = threading.Barrier(CLIENTS + 1)
    errors: list[BaseException] = []

    def work(client: QueryClient) -> None:
        barrier.wait()
        try:
            for _ in range(per_client):
                client.sql(METRIC_SQL, params)
        except BaseException as exc:  # reported below, not swallowed
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    for c in clients:
        c.close()
    if errors:
        raise RuntimeError(f"{len(errors)} client(s) failed: {errors[0]}")
    return CLIENTS * per_client / elapsed
