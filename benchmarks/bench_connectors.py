"""Connectors: full and incremental sync of every sandbox vendor into DuckDB, the simulator in its own process.

As in a deployment the vendors' APIs live in another process: ``sophia sandbox serve`` runs as a subprocess in a
temporary working folder (on free ports, storing the demo credentials there) and this process runs
``run_sync(load_config())`` in the same folder. Figures: records/s per vendor against the 20k records/s target,
the full sync against the 2-minute target, and the incremental sync (after ``/_control/advance`` of 15 minutes)
against the full sync (its peer). Both processes share the machine, so the CPU seconds each spent during the full
sync are reported too: the simulator's share is the vendors' side, not the connectors'. Per vendor, "vendor answers" is
the time spent waiting for the simulator's responses (summed over the connector's threads) and "paced" the time held
back by the pacing its real API requires (Gong, Notion ~3 requests/s; HubSpot search ~4/s), not by Sophia.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from benchmarks import Result

TARGET_RECORDS_PER_S = 20_000.0
FULL_SYNC_BUDGET_S = {"small": 60.0, "medium": 120.0, "large": 1200.0}
START_TIMEOUT_S = {"small": 120.0, "medium": 600.0, "large": 3600.0}
ADVANCE_MINUTES = 15


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _serving(timeout_s: float) -> Iterator[int]:
    """``sophia sandbox serve`` in the working folder until the block ends (as the demo runs it)."""
    from sophia_lib.config import load_config
    from sophia_lib.demo import start_child, wait_until_ready

    config = load_config()
    child = start_child(config, "sandbox", "sandbox", "serve")
    try:
        wait_until_ready(child, f"http://{config.sandbox.host}:{config.sandbox.port}/_control/health", timeout_s)
        yield child.process.pid
    finally:
        child.stop()


def _sync(full_refresh: bool = False) -> tuple[float, list]:
    from sophia_lib.config import load_config
    from sophia_lib.sync.runner import run_sync

    started = time.perf_counter()
    results = run_sync(load_config(), full_refresh=full_refresh, progress=False)
    elapsed = time.perf_counter() - started
    failed = [f"{r.source}: {r.error}" for r in results if r.status not in ("succeeded", "partial")]
    if failed:
        raise RuntimeError("sync failed: " + "; ".join(failed))
    return elapsed, results


def _cpu_s(process: psutil.Process) -> float:
    """User + system CPU seconds of a process and its threads so far."""
    times = process.cpu_times()
    return times.user + times.system


def run(args: argparse.Namespace) -> list[Result]:
    import httpx

    from sophia_lib.sandbox.background import free_port

    port, idp_port = free_port(), free_port()
    env = {"SOPHIA_SANDBOX__SIZE": args.size, "SOPHIA_SANDBOX__PORT": str(port),
           "SOPHIA_SANDBOX__IDP_PORT": str(idp_port)}
    results: list[Result] = []
    cwd = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="sophia-bench-connectors-") as tmp:
        folder = Path(tmp)
        try:
            os.chdir(folder)
            with _environment(env), _serving(START_TIMEOUT_S[args.size]) as simulator_pid:
                simulator = psutil.Process(simulator_pid)
                sim_before, own_before = _cpu_s(simulator), _cpu_s(psutil.Process())
                full_s, full = _sync()
                sim_cpu, own_cpu = _cpu_s(simulator) - sim_before, _cpu_s(psutil.Process()) - own_before
                total = 0
                for r in sorted(full, key=lambda r: r.source):
                    records = r.total("records")
                    total += records
                    seconds = r.duration_s or 0.0
                    rate = records / seconds if seconds else 0.0
                    results.append(Result(
                        f"{r.source} full ({records} rec, {r.requests} req, "
                        f"{r.requests / seconds if seconds else 0:.1f} req/s, {seconds:.1f} s: vendor answers "
                        f"{r.answer_s:.1f} s, paced {r.paced_s:.1f} s)", rate, "rec/s",
                        "target", TARGET_RECORDS_PER_S, lower_is_better=False))
                results.append(Result(f"full sync, 11 vendors ({total} records)", full_s, "s",
                                      f"budget {args.size}", FULL_SYNC_BUDGET_S[args.size]))
                results.append(Result("full sync throughput", total / full_s, "rec/s", "target",
                                      TARGET_RECORDS_PER_S, lower_is_better=False))
                results.append(Result("full sync: sync process CPU", own_cpu, "s", "full sync wall", full_s,
                                      target_ratio=float("inf")))
                results.append(Result("full sync: simulator CPU (vendors' side)", sim_cpu, "s", "full sync wall",
                                      full_s, target_ratio=float("inf")))
                answer = httpx.post(f"http://127.0.0.1:{port}/_control/advance", json={"minutes": ADVANCE_MINUTES},
                                    timeout=300.0)
                answer.raise_for_status()
                incremental_s, incremental = _sync()
                records = sum(r.total("records") for r in incremental)
                requests = sum(r.requests for r in incremental)
                results.append(Result(f"incremental sync +{ADVANCE_MINUTES} min ({records} rec, {requests} req)",
                                      incremental_s, "s", "full sync", full_s, target_ratio=0.25))
        finally:
            os.chdir(cwd)
    return results
