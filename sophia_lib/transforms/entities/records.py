"""Source records in one shape: every entity's records from every system as a frame with the same columns,
so one resolution handles them all."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd


def records(system: str, frame: pd.DataFrame, columns: Sequence[str], mapping: Mapping[str, object]) -> pd.DataFrame:
    """``frame`` as records of ``system``: each of ``columns`` taken from ``mapping`` (a column name of
    ``frame``, a Series aligned with it, or a constant); columns not mapped are null."""
    frame = frame.reset_index(drop=True)
    out = pd.DataFrame(index=frame.index)
    out["system"] = pd.Series([system] * len(frame), dtype="string")
    for column in columns:
        value = mapping.get(column)
        if isinstance(value, str):
            out[column] = frame[value]
        elif isinstance(value, pd.Series):
            out[column] = value.reset_index(drop=True)
        else:
            out[column] = pd.Series([value] * len(frame), dtype="object")
    out["system_id"] = out["system_id"].astype("string")
    return out[out["system_id"].notna() & (out["system_id"].str.len() > 0)]


def concat(parts: Sequence[pd.DataFrame], columns: Sequence[str]) -> pd.DataFrame:
    """Stack record frames (all with ``columns``), one row per (system, system_id) — the latest kept."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in ["system", *columns]})
    frame = pd.concat([p[["system", *columns]] for p in parts], ignore_index=True)
    return frame.drop_duplicates(["system", "system_id"], keep="last").reset_index(drop=True)


def as_string(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    for c in columns:
        frame[c] = frame[c].astype("string")
    return frame


def as_timestamp(values: pd.Series) -> pd.Series:
    """Timestamps, dates or ISO strings as tz-aware UTC (junk such as ``"NaN"`` → NaT)."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    return pd.to_datetime(values.astype("object").where(values.notna(), None), utc=True, errors="coerce",
                          format="mixed")


def as_bool(values: pd.Series) -> pd.Series:
    return values.astype("boolean")


def json_first(values: pd.Series, field: str) -> pd.Series:
    """The first ``"field": "value"`` string in JSON text (a list of objects or one object)."""
    return values.astype("string").str.extract(r'"' + field + r'"\s*:\s*"([^"]*)"', expand=False)
