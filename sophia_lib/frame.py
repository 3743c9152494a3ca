"""Which DataFrame engine the transforms run on: pandas, or RAPIDS cuDF through ``cudf.pandas``.

The transforms are written against the pandas API only. On a GPU node the refresh (and the
"Sophia (GPU)" kernel) runs under ``python -m cudf.pandas``, which makes that same pandas code
execute on cuDF and fall back to pandas for anything cuDF lacks, so one code path serves both
engines and the tests check both wherever cuDF imports. ``SOPHIA_ENGINE=pandas`` forces pandas.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Literal

import pandas as pd
import pyarrow as pa

TEngine = Literal["pandas", "cudf.pandas"]


def engine() -> TEngine:
    """The engine this process's pandas runs on."""
    return "cudf.pandas" if "cudf.pandas" in sys.modules and _cudf_pandas_active() else "pandas"


def _cudf_pandas_active() -> bool:
    try:
        from cudf.pandas import LOADED  # type: ignore[import-not-found]
    except ImportError:
        return False
    return bool(LOADED)


def cudf_available() -> bool:
    """True where cuDF is installed (a GPU node with the ``gpu`` extra)."""
    return os.environ.get("SOPHIA_ENGINE") != "pandas" and importlib.util.find_spec("cudf") is not None


def gpu_command(argv: list[str]) -> list[str]:
    """``python -m cudf.pandas …`` where cuDF is available, plain ``python …`` elsewhere (for subprocesses)."""
    return [sys.executable, "-m", "cudf.pandas", *argv] if cudf_available() else [sys.executable, *argv]


def from_arrow(table: pa.Table) -> pd.DataFrame:
    """An Arrow table as a DataFrame with nullable types kept (timestamps stay tz-aware)."""
    return table.to_pandas(types_mapper={pa.string(): pd.StringDtype(), pa.large_string(): pd.StringDtype()}.get)


def to_arrow(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame, preserve_index=False)
