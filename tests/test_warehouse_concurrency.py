"""THE warehouse contract: one writer publishing over and over while reader processes query in a loop.

Every refresh ``k`` writes two tables that must agree (marts.a: ROWS rows of k; marts.b, built from
marts.a inside the same refresh: v = 2k, so sum(v) = 2·k·ROWS) and stamps both with the snapshot
id. Readers must never error, and every read must see exactly one refresh: both tables from the
same k, the same snapshot id as the reader's, and never an older refresh after a newer one.

The writer waits after each publish until some reader has seen it, so the readers observe every
refresh without relying on timing; readers stop after the writer has finished.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from sophia_lib.warehouse import SnapshotBuilder, connect, result_snapshot

ROWS = 50
PUBLISHES = 15
READERS = 4
LIVENESS_S = 120  # only a hang guard; never reached when the contract holds
OPTIONS = {"keep_snapshots": 2, "prune_grace_s": 0}  # prune as hard as possible under the readers


def _build(k: int):
    def build(b: SnapshotBuilder) -> None:
        b.write_table("marts", "a", pa.table({"k": [k] * ROWS, "snapshot_id": [b.snapshot_id] * ROWS}))
        b.execute("CREATE TABLE marts.b AS SELECT k, snapshot_id, 2 * k AS v FROM marts.a")

    return build


def _check(r: Any, backend: str) -> int:
    """One read of both tables; raise AssertionError on any sign of a mixed or foreign snapshot."""
    sid = r.snapshot.id
    a = r.query("SELECT k, snapshot_id, count(*) AS n FROM marts.a GROUP BY k, snapshot_id").to_pylist()
    b = r.query("SELECT k, snapshot_id, sum(v) AS s, count(*) AS n FROM marts.b GROUP BY k, snapshot_id")
    both = r.query("SELECT (SELECT max(k) FROM marts.a) AS ka, (SELECT min(k) FROM marts.b) AS kb")
    both = both.to_pylist()
    assert result_snapshot(b)[0] == sid, "result not stamped with the reader's snapshot"
    b_rows = b.to_pylist()
    assert len(a) == 1 and len(b_rows) == 1, f"not exactly one refresh visible: {a} {b_rows}"
    k = a[0]["k"]
    assert a[0] == {"k": k, "snapshot_id": sid, "n": ROWS}, f"marts.a {a[0]} vs snapshot {sid}"
    assert b_rows[0]["k"] == k and b_rows[0]["snapshot_id"] == sid, f"marts.b {b_rows[0]} vs a k={k} {sid}"
    assert int(b_rows[0]["s"]) == 2 * k * ROWS and b_rows[0]["n"] == ROWS, f"marts.b incomplete: {b_rows[0]}"
    assert both == [{"ka": k, "kb": k}], f"one statement saw two refreshes: {both}"
    if backend == "duckdb":  # the raw store is frozen into each snapshot too
        assert r.query("SELECT k FROM raw_demo.refresh").column("k").to_pylist() == [k]
    return k


def reader_loop(url: str, backend: str, stop: Any, seen: Any, out: Any) -> None:
    wh = connect(url, **OPTIONS)
    reads, errors, ks = 0, [], []
    while True:
        final = stop.is_set()  # one last read after the writer has finished
        try:
            with wh.reader() as r:
                k = _check(r, backend)
            if ks and k < ks[-1]:
                errors.append(f"went back in time: saw refresh {k} after {ks[-1]}")
            ks.append(k)
            reads += 1
            with seen.get_lock():
                seen.value = max(seen.value, k)
        except Exception as exc:  # every error is a failure of the contract: report, keep reading
            errors.append(f"{type(exc).__name__}: {exc}")
        if final or len(errors) > 20:
            break
    wh.close()
    out.put({"reads": reads, "errors": errors, "distinct": sorted(set(ks))})


@pytest.fixture(params=["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    if request.param == "duckdb":
        return "duckdb", f"duckdb:///{tmp_path / 'warehouse'}"
    return "postgresql", request.getfixturevalue("postgres_url")


def test_readers_always_see_one_whole_refresh_while_publishing(backend_url: tuple[str, str]) -> None:
    backend, url = backend_url
    wh = connect(url, **OPTIONS)

    def refresh(k: int) -> str:
        with wh.raw_writer() as w:
            w.write_table("raw_demo", "refresh", pa.table({"k": [k]}))
        return wh.publish(_build(k)).id

    refresh(0)
    ctx = mp.get_context("spawn")
    stop, seen, out = ctx.Event(), ctx.Value("i", -1), ctx.Queue()
    procs = [ctx.Process(target=reader_loop, args=(url, backend, stop, seen, out), daemon=True)
             for _ in range(READERS)]
    for p in procs:
        p.start()
    try:
        ids = []
        for k in range(1, PUBLISHES + 1):
            ids.append(refresh(k))
            deadline = time.monotonic() + LIVENESS_S
            while seen.value < k and any(p.is_alive() for p in procs):  # readers catch up; no timing bets
                assert time.monotonic() < deadline, f"no reader saw refresh {k}"
                time.sleep(0.005)
            if seen.value < k:
                break  # every reader gave up: their errors are reported below
    finally:
        stop.set()
        results = []
        for _ in procs:
            try:
                results.append(out.get(timeout=LIVENESS_S))
            except queue.Empty:
                break
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    assert len(results) == READERS, "a reader process died without reporting"
    errors = [e for r in results for e in r["errors"]]
    assert errors == [], errors[:5]
    assert all(r["reads"] > 0 for r in results)
    assert max(max(r["distinct"]) for r in results) == PUBLISHES
    assert {k for r in results for k in r["distinct"]} >= set(range(1, PUBLISHES + 1))
    assert len(wh.snapshots()) == OPTIONS["keep_snapshots"] and wh.current().id == ids[-1]
    wh.close()
