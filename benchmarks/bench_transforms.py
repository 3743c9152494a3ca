"""Transforms: the core + marts build against the same tables written as plain DuckDB SQL (the peer).

The pandas chain runs as a refresh runs it: every step of ``sophia_lib.transforms.STEPS`` inside one
``wh.publish``, each step timed on its own, with the time its ``ctx.raw`` reads (DuckDB → Arrow → DataFrame) and
its ``ctx.write`` writes (DataFrame → Arrow → DuckDB) measured beside it. The peer runs
``benchmarks/peer_sql/<step>.sql`` in one DuckDB connection over a copy of the same raw tables (copied as
publish copies them), with the same ``as_of``. A peer file covers the representative tables its header names
(every kind of step: entity resolution by the exact rules, opportunities and stage history, weekly pipeline
snapshots, bookings, invoices and revenue, support, team productivity and delivery cycle times, customer health);
the tables it leaves out still count on the pandas side, so a step's ratio is an upper bound.

The raw store: ``SOPHIA_BENCH_RAW=<var folder>`` (one whose ``warehouse/raw.duckdb`` a sync filled), else
``var/bench/raw-<size>``, generated and synced from the sandbox once and reused.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from benchmarks import Result

PEER_DIR = Path(__file__).with_name("peer_sql")
RAW_ENV = "SOPHIA_BENCH_RAW"
SEED = 42
RAW_PREFIX = "raw_"
_CREATED = re.compile(r"create\s+or\s+replace\s+table\s+((?:core|marts)\.\w+)", re.IGNORECASE)

PLACEMENT = (
    "where the steps run: every step's transform runs on the pandas API in the refresh process (cuDF under "
    "cudf.pandas on a GPU node, the same code); DuckDB (or PostgreSQL) does the reads — ctx.raw pushes the "
    "projection and the deleted-row filter down and hands Arrow over — and stores what ctx.write hands back as "
    "Arrow. Why: one code path for CPU and GPU and for both warehouse backends, and the row-wise work (regex "
    "normalisation, fuzzy matching, survivorship, as-of joins) stays testable Python.")


@dataclass
class StepFigure:
    """One transform step: pandas wall and CPU seconds (load and write inside them), rows out, and its peer."""

    name: str
    pandas_s: float = 0.0
    cpu_s: float = 0.0
    load_s: float = 0.0
    write_s: float = 0.0
    tables: dict[str, int] = field(default_factory=dict)
    peer_s: float | None = None
    peer_tables: dict[str, int] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(self.tables.values())

    @property
    def peer_rows(self) -> int:
        return sum(self.peer_tables.values())


@dataclass
class Measurement:
    steps: list[StepFigure]
    publish_s: float
    peer_copy_s: float
    as_of: datetime


# --- the pandas chain ---------------------------------------------------------------------------------
def _timed_context(figures: dict[str, StepFigure]) -> type:
    from sophia_lib.transforms.context import TransformContext

    class TimedContext(TransformContext):
        """The steps' context, adding each read and write's time to the running step's figure."""

        current: StepFigure

        def raw(self, vendor: str, table: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
            started = time.perf_counter()
            try:
                return super().raw(vendor, table, columns)
            finally:
                self.current.load_s += time.perf_counter() - started

        def write(self, schema: str, name: str, frame: pd.DataFrame) -> int:
            started = time.perf_counter()
            try:
                rows = super().write(schema, name, frame)
            finally:
                self.current.write_s += time.perf_counter() - started
            self.current.tables[f"{schema}.{name}"] = rows
            return rows

    return TimedContext


def measure_pandas(raw_store: Path, work: Path) -> tuple[list[StepFigure], float, datetime]:
    """Publish the whole chain over ``raw_store`` into a warehouse under ``work``, each step timed."""
    from sophia_lib.config import SophiaConfig
    from sophia_lib.transforms import STEPS
    from sophia_lib.warehouse import open_warehouse

    var = work / "pandas"
    (var / "warehouse").mkdir(parents=True)
    (var / "warehouse" / "raw.duckdb").symlink_to(raw_store.resolve())  # publish only reads it
    wh = open_warehouse(SophiaConfig(var_dir=var))
    figures: dict[str, StepFigure] = {}
    context = _timed_context(figures)
    as_of: list[datetime] = []

    def build(builder: Any) -> None:
        ctx = context(builder, builder.as_of)
        as_of.append(builder.as_of)
        for step in STEPS:
            figure = figures[step.__name__] = StepFigure(step.__name__)
            ctx.current = figure
            wall, cpu = time.perf_counter(), time.process_time()
            step(ctx)
            figure.pandas_s, figure.cpu_s = time.perf_counter() - wall, time.process_time() - cpu

    started = time.perf_counter()
    wh.publish(build)
    return list(figures.values()), time.perf_counter() - started, as_of[0]


# --- the peer ------------------------------------------------------------------------------------------
def copy_raw(con: duckdb.DuckDBPyConnection, raw_store: Path) -> None:
    """The raw_* tables into ``con``'s database, as publish copies them into a snapshot."""
    con.execute(f"ATTACH '{str(raw_store).replace(chr(39), chr(39) * 2)}' AS raw_store (READ_ONLY)")
    tables = con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = 'raw_store' "
        "AND starts_with(schema_name, ?) AND NOT ends_with(schema_name, '_staging')", [RAW_PREFIX]).fetchall()
    for schema, table in tables:
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        con.execute(f'CREATE TABLE "{schema}"."{table}" AS SELECT * FROM raw_store."{schema}"."{table}"')
    con.execute("DETACH raw_store")


def peer_files() -> dict[str, Path]:
    return {path.stem: path for path in sorted(PEER_DIR.glob("*.sql"))}


def measure_peer(raw_store: Path, work: Path, as_of: datetime,
                 steps: Sequence[str]) -> tuple[dict[str, tuple[float, dict[str, int]]], float]:
    """Run the peer file of each of ``steps`` (in that order) over a copy of the raw tables."""
    files = peer_files()
    con = duckdb.connect(str(work / "peer.duckdb"))
    try:
        started = time.perf_counter()
        copy_raw(con, raw_store)
        copied = time.perf_counter() - started
        con.execute("CREATE SCHEMA core; CREATE SCHEMA marts")
        con.execute("SET VARIABLE as_of = ?::TIMESTAMPTZ", [as_of])
        out: dict[str, tuple[float, dict[str, int]]] = {}
        for step in steps:
            if step not in files:
                continue
            sql = files[step].read_text()
            started = time.perf_counter()
            con.execute(sql)
            elapsed = time.perf_counter() - started
            created = dict.fromkeys(_CREATED.findall(sql))
            out[step] = (elapsed, {name: con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
                                   for name in created})
        con.execute("CHECKPOINT")
        return out, copied
    finally:
        con.close()


# --- the raw store -------------------------------------------------------------------------------------
def synced_var(size: str) -> Path:
    """A var folder whose warehouse/raw.duckdb holds the ``size`` sandbox synced by all 11 connectors."""
    if os.environ.get(RAW_ENV):
        var = Path(os.environ[RAW_ENV])
        if not (var / "warehouse" / "raw.duckdb").exists():
            from sophia_lib.errors import ConfigError

            raise ConfigError(f"{RAW_ENV}={var} has no warehouse/raw.duckdb.",
                              fix="point it at a var folder a sync filled, or unset it to sync one here")
        return var
    var = Path("var") / "bench" / f"raw-{size}"
    if not (var / "synced.ok").exists():
        _sync(var, size)
    return var


def _sync(var: Path, size: str) -> None:
    from sophia_lib.config import SophiaConfig
    from sophia_lib.sandbox.background import free_port
    from sophia_lib.sandbox.generator import generate
    from sophia_lib.sandbox.services import store_demo_credentials
    from sophia_lib.sandbox.simulator.app import Sandbox
    from sophia_lib.sandbox.simulator.server import SandboxServer
    from sophia_lib.sync import run_sync

    shutil.rmtree(var, ignore_errors=True)
    var.mkdir(parents=True)
    port = free_port()
    config = SophiaConfig(var_dir=var, sandbox={"size": size, "seed": SEED, "port": port})
    with SandboxServer(Sandbox(generate(size, seed=SEED)), "127.0.0.1", port) as server:
        store_demo_credentials(config, server.sandbox)
        results = run_sync(config, progress=False)
    failed = [f"{r.source}: {r.error}" for r in results if r.status not in ("succeeded", "partial")]
    if failed:
        raise RuntimeError("sync of the benchmark's sandbox failed: " + "; ".join(failed))
    (var / "synced.ok").write_text("ok\n")


# --- running and reporting -----------------------------------------------------------------------------
def measure(var: Path, echo: Callable[[str], None] = print) -> Measurement:
    """Both builds over ``var``'s raw store; prints the per-step table and returns the figures."""
    from sophia_lib.frame import engine

    raw_store = var / "warehouse" / "raw.duckdb"
    with tempfile.TemporaryDirectory(prefix="sophia-bench-transforms-") as tmp:
        steps, publish_s, as_of = measure_pandas(raw_store, Path(tmp))
        peer, copied = measure_peer(raw_store, Path(tmp), as_of, [s.name for s in steps])
    for figure in steps:
        if figure.name in peer:
            figure.peer_s, figure.peer_tables = peer[figure.name]
    result = Measurement(steps, publish_s, copied, as_of)
    for line in report(result, engine()):
        echo(line)
    return result


def report(m: Measurement, engine_name: str) -> list[str]:
    lines = [f"   {'step':<15} {'pandas s':>9} {'cpu s':>7} {'load s':>7} {'write s':>8} {'peer s':>7} "
             f"{'ratio':>6} {'rows out':>9} {'peer rows':>10}  tables (peer/pandas)"]
    for f in m.steps:
        peer = f"{f.peer_s:7.2f}" if f.peer_s is not None else "      -"
        ratio = f"{f.pandas_s / f.peer_s:6.2f}" if f.peer_s else "     -"
        lines.append(f"   {f.name:<15} {f.pandas_s:9.2f} {f.cpu_s:7.2f} {f.load_s:7.2f} {f.write_s:8.2f} {peer} "
                     f"{ratio} {f.rows:9d} {f.peer_rows:10d}  {len(f.peer_tables)}/{len(f.tables)}")
    total = sum(f.pandas_s for f in m.steps)
    peer_total = sum(f.peer_s or 0.0 for f in m.steps)
    lines.append(f"   {'total':<15} {total:9.2f} {sum(f.cpu_s for f in m.steps):7.2f} "
                 f"{sum(f.load_s for f in m.steps):7.2f} {sum(f.write_s for f in m.steps):8.2f} {peer_total:7.2f} "
                 f"{total / peer_total if peer_total else float('inf'):6.2f} {sum(f.rows for f in m.steps):9d} "
                 f"{sum(f.peer_rows for f in m.steps):10d}")
    lines.append(f"   publish (raw copy + steps + checkpoint) {m.publish_s:.2f} s; "
                 f"peer raw copy {m.peer_copy_s:.2f} s; engine {engine_name}")
    lines.append(f"   {PLACEMENT}")
    for f in m.steps:
        missing = sorted(set(f.tables) - set(f.peer_tables))
        if missing:
            lines.append(f"   {f.name}: not in the peer: {', '.join(missing)}")
    return lines


def run(args: argparse.Namespace) -> list[Result]:
    m = measure(synced_var(args.size))
    results = [Result(f"{f.name} ({f.rows} rows; peer {len(f.peer_tables)}/{len(f.tables)} tables)", f.pandas_s, "s",
                      "plain DuckDB SQL", f.peer_s) for f in m.steps if f.peer_s]
    covered = [f for f in m.steps if f.peer_s]
    results.append(Result("core + marts, all steps (pandas)", sum(f.pandas_s for f in m.steps), "s",
                          "plain DuckDB SQL, peer tables", sum(f.peer_s or 0.0 for f in covered)))
    results.append(Result("raw → frame loads (ctx.raw, all steps)", sum(f.load_s for f in m.steps), "s",
                          "pandas steps total", sum(f.pandas_s for f in m.steps), target_ratio=0.25))
    return results
