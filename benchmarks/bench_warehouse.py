"""Warehouse: publish time, and reader query latency against plain in-process DuckDB (the peer)."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from benchmarks import Result, median_ms

ROWS = {"small": 100_000, "medium": 1_000_000, "large": 10_000_000}
QUERY = "select region, count(*) as n, sum(amount) as total from marts.facts group by region order by region"


def _facts(rows: int) -> pa.Table:
    rng = np.random.default_rng(0)
    return pa.table({"id": np.arange(rows), "region": rng.choice(["emea", "amer", "apac"], rows),
                     "amount": rng.gamma(2.0, 1000.0, rows)})


def run(args: argparse.Namespace) -> list[Result]:
    from sophia_lib.config import load_config
    from sophia_lib.warehouse import open_warehouse

    rows = ROWS[args.size]
    facts = _facts(rows)
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config()
        config.warehouse.url = f"duckdb:///{Path(tmp) / 'warehouse'}"
        config.var_dir = Path(tmp)
        wh = open_warehouse(config)
        started = time.perf_counter()
        info = wh.publish(lambda b: b.write_table("marts", "facts", facts))
        publish_s = time.perf_counter() - started

        plain = tempfile.mktemp(suffix=".duckdb", dir=tmp)
        started = time.perf_counter()
        with duckdb.connect(plain) as con:
            con.execute("create schema marts")
            con.register("facts_src", facts)
            con.execute("create table marts.facts as select * from facts_src")
        plain_s = time.perf_counter() - started

        def through_reader() -> None:
            with wh.reader() as reader:
                reader.query(QUERY)

        def plain_duckdb() -> None:
            with duckdb.connect(plain, read_only=True) as con:
                con.sql(QUERY).arrow()

        reader_ms, plain_ms = median_ms(through_reader), median_ms(plain_duckdb)
    return [
        Result(f"publish snapshot ({rows:,} rows, {(info.size_bytes or 0) / 1e6:.0f} MB)", publish_s, "s",
               "plain DuckDB create table", plain_s, target_ratio=2.0),
        Result("reader query (open snapshot + aggregate)", reader_ms, "ms", "plain DuckDB open + query", plain_ms,
               target_ratio=1.2),
    ]
