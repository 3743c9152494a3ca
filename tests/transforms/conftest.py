"""Shared fixtures of the transform tests.

* ``engine``: ``pandas`` always; ``cudf.pandas`` where cuDF imports (skipped elsewhere, with the reason).
* ``transformed``: one snapshot per engine, published once per session with every step in
  ``sophia_lib.transforms.STEPS`` over a private copy of the synced small sandbox; a
  :class:`Transformed` ``(config, company, snapshot)``. The ``cudf.pandas`` build runs in a subprocess
  under ``python -m cudf.pandas`` (``sophia warehouse publish``), as a GPU refresh does.
* ``run_steps``: runs chosen steps in-process against that snapshot's raw tables and returns the
  :class:`TransformContext` (for tests of one step's output before it is published).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, NamedTuple

import pyarrow as pa
import pytest

from sophia_lib.config import SophiaConfig
from sophia_lib.frame import cudf_available, gpu_command
from sophia_lib.sandbox.company import Company
from sophia_lib.transforms import TransformContext, TStep, build
from sophia_lib.warehouse import open_warehouse
from sophia_lib.warehouse.base import Reader, SnapshotBuilder, SnapshotInfo

ENGINES = ["pandas", "cudf.pandas"]


class Transformed(NamedTuple):
    config: SophiaConfig
    company: Company
    snapshot: SnapshotInfo


@pytest.fixture(scope="session", params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    if request.param == "cudf.pandas" and not cudf_available():
        pytest.skip("cuDF does not import here (no GPU node / no 'gpu' extra): the cudf.pandas engine is "
                    "tested where it does")
    return request.param


@pytest.fixture(scope="session")
def transformed(engine: str, synced_sandbox: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Transformed]:
    """The small sandbox published once through every transform step, on ``engine``."""
    config = synced_sandbox.copy_to(tmp_path_factory.mktemp(f"transformed-{engine.replace('.', '-')}") / "var")
    if engine == "pandas":
        wh = open_warehouse(config)
        try:
            info = wh.publish(build, timeout=60)
        finally:
            wh.close()
    else:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOPHIA_")}
        env["SOPHIA_VAR_DIR"] = str(config.var_dir)
        done = subprocess.run(gpu_command(["-m", "sophia_lib", "warehouse", "publish", "--timeout", "60"]),
                              env=env, capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, f"publish under cudf.pandas failed:\n{done.stdout}\n{done.stderr}"
        wh = open_warehouse(config)
        try:
            info = wh.current()
        finally:
            wh.close()
        assert info is not None
    yield Transformed(config, synced_sandbox.company, info)


class ReaderBuilder(SnapshotBuilder):
    """A build over a published snapshot's tables that keeps what steps write in memory (nothing is
    published): lets a test run one step and look at its frames."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self.snapshot_id = reader.snapshot.id
        self.as_of = reader.snapshot.as_of
        self.tables: dict[str, pa.Table] = {}

    def write_table(self, schema: str, table: str, data: Any) -> int:
        self.tables[f"{schema}.{table}"] = data
        return data.num_rows

    def execute(self, sql: str, params: Any = None) -> None:
        raise NotImplementedError("ReaderBuilder is read-only: steps write frames with ctx.write")

    def query(self, sql: str, params: Any = None) -> pa.Table:
        return self.reader.query(sql, params)


@pytest.fixture
def run_steps(transformed: Transformed) -> Iterator[Callable[..., TransformContext]]:
    """``run_steps(step, …, as_of=None)``: those steps, in order, in-process over the snapshot's raw tables."""
    wh = open_warehouse(transformed.config)
    readers: list[Any] = []

    def run(*steps: TStep, as_of: datetime | None = None) -> TransformContext:
        manager = wh.reader()
        reader = manager.__enter__()
        readers.append(manager)
        builder = ReaderBuilder(reader)
        ctx = TransformContext(builder, as_of or builder.as_of)
        for step in steps:
            step(ctx)
        return ctx

    try:
        yield run
    finally:
        for manager in readers:
            manager.__exit__(None, None, None)
        wh.close()
