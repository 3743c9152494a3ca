"""A warehouse whose raw_* tables were filled by a real sync of the small sandbox company.

Transform, metric and query tests start from it: the sandbox serves all 11 vendors, every connector
syncs into DuckDB as `sophia sync` would, then the sandbox stops. The company (with its ground truth)
comes along for scoring.

``SOPHIA_TEST_RAW_CACHE=/some/dir`` keeps the synced var/ folder between pytest sessions (for
development only; delete the folder when the connectors or the generator change).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from sophia_lib.config import SophiaConfig
from sophia_lib.sandbox.company import Company

SIZE, SEED = "small", 42
SYNCED_MARK = "synced.ok"


@dataclass
class SyncedSandbox:
    """``config`` points at a var_dir whose warehouse holds the synced raw_* tables."""

    config: SophiaConfig
    company: Company

    def copy_to(self, folder: Path) -> SophiaConfig:
        """A config over a private copy of the var folder (for tests that publish or write)."""
        shutil.copytree(self.config.var_dir, folder, dirs_exist_ok=True)
        return _config(folder, self.config.sandbox.port)


def _config(var_dir: Path, port: int) -> SophiaConfig:
    return SophiaConfig(var_dir=var_dir, sandbox={"size": SIZE, "seed": SEED, "port": port},
                        sync={"parallelism": 4, "max_retry_s": 30.0, "request_timeout_s": 10.0})


def synced_sandbox(var_dir: Path) -> SyncedSandbox:
    """Generate (or load) the small company, serve it, sync every source into ``var_dir``'s warehouse."""
    from sophia_lib.sandbox.background import free_port
    from sophia_lib.sandbox.generator import generate
    from sophia_lib.sandbox.services import store_demo_credentials
    from sophia_lib.sandbox.simulator.app import Sandbox
    from sophia_lib.sandbox.simulator.server import SandboxServer
    from sophia_lib.sandbox.store import load, save
    from sophia_lib.sync import run_sync

    cache = os.environ.get("SOPHIA_TEST_RAW_CACHE")
    if cache:
        var_dir = Path(cache)
    company_dir = var_dir / "sandbox" / f"{SIZE}-{SEED}"
    port = free_port()
    config = _config(var_dir, port)
    if (var_dir / SYNCED_MARK).exists():
        return SyncedSandbox(config, load(company_dir))
    company = generate(SIZE, seed=SEED)
    save(company, company_dir)
    with SandboxServer(Sandbox(company), "127.0.0.1", port) as server:
        store_demo_credentials(config, server.sandbox)
        results = run_sync(config, progress=False)
    failed = [f"{r.source}: {r.error}" for r in results if r.status != "succeeded"]
    if failed or len(results) != 11:
        raise RuntimeError(f"the sandbox sync did not succeed for every source: {failed or results}")
    (var_dir / SYNCED_MARK).write_text("ok\n")
    return SyncedSandbox(config, load(company_dir))
