"""Shared helpers: named random streams, the time axis, canonical ids, frame finishing."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

DEFAULT_NOW = pd.Timestamp("2026-11-02T09:00:00Z")
HISTORY_DAYS = 730
NS_PER_DAY = 86_400 * 10**9


def stream(seed: int, name: str) -> np.random.Generator:
    """An independent PCG64 stream for one part of the company, stable across Python runs."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, zlib.crc32(name.encode())])))


@dataclass(frozen=True)
class Timeline:
    """History runs from ``start`` to ``now``; times are handled as float days since ``start``."""

    now: pd.Timestamp

    @property
    def start(self) -> pd.Timestamp:
        return (self.now - pd.Timedelta(days=HISTORY_DAYS)).floor("D")

    @property
    def horizon(self) -> float:
        """``now`` in days since ``start``."""
        return (self.now - self.start) / pd.Timedelta(days=1)

    def ts(self, days: np.ndarray | float) -> pd.DatetimeIndex:
        """Float days since start → tz-aware UTC timestamps, rounded to the second (NaN → NaT)."""
        d = np.atleast_1d(np.asarray(days, dtype="float64"))
        secs = np.round(d * 86_400.0)
        ns = np.where(np.isnan(secs), np.iinfo(np.int64).min, 0).astype("int64")
        ok = ~np.isnan(secs)
        ns[ok] = self.start.value + secs[ok].astype("int64") * 10**9
        return pd.DatetimeIndex(ns.view("M8[ns]"), tz="UTC")

    def day(self, days: np.ndarray | float) -> pd.DatetimeIndex:
        """Float days → tz-naive calendar dates (midnight), for ``*_on`` / ``close_date`` columns."""
        return self.ts(days).tz_localize(None).floor("D")

    def days(self, stamps: pd.Series | pd.DatetimeIndex) -> np.ndarray:
        """Timestamps (UTC-aware or naive dates) → float days since start (NaT → NaN)."""
        idx = pd.DatetimeIndex(stamps)
        if idx.tz is None:
            idx = idx.tz_localize("UTC")
        vals = idx.as_unit("ns").asi8.astype("float64")
        out = (vals - self.start.value) / NS_PER_DAY
        out[idx.isna()] = np.nan
        return out


def canonical_ids(prefix: str, start: int, n: int) -> np.ndarray:
    """``acc_000001``-style ids; zero-padded so string order matches creation order."""
    nums = np.arange(start, start + n)
    return np.char.add(prefix, np.char.zfill(nums.astype(str), 7)).astype(object)


def id_number(ids: pd.Series) -> int:
    """Highest number used by canonical ids like ``acc_000123`` (0 when empty)."""
    if len(ids) == 0:
        return 0
    return int(ids.str.rsplit("_", n=1).str[-1].astype("int64").max())


def pick(
    rng: np.random.Generator, values: list[str] | np.ndarray, n: int, p: list[float] | None = None
) -> np.ndarray:
    """n draws from ``values`` (optionally weighted), as an object array of str."""
    arr = np.asarray(values, dtype=object)
    if p is not None:
        w = np.asarray(p, dtype="float64")
        return arr[rng.choice(len(arr), size=n, p=w / w.sum())]
    return arr[rng.integers(0, len(arr), n)]


def group_sample(rng: np.random.Generator, group_of_pool: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """For each entry of ``groups``, the index of a random pool member with that group (-1 if none).

    ``group_of_pool`` gives each pool member's group as small non-negative ints. Vectorised: the pool
    is sorted by group once, then each request draws an offset inside its group's slice.
    """
    order = np.argsort(group_of_pool, kind="stable")
    sorted_groups = group_of_pool[order]
    size = int(max(sorted_groups.max(initial=-1), groups.max(initial=-1))) + 1
    counts = np.bincount(sorted_groups, minlength=size)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    c = counts[groups]
    off = np.floor(rng.random(len(groups)) * np.maximum(c, 1)).astype("int64")
    out = order[np.minimum(starts[groups] + off, len(order) - 1)] if len(order) else np.full(len(groups), -1)
    return np.where(c > 0, out, -1)


def stamp_frame(
    frame: pd.DataFrame, created: pd.DatetimeIndex, updated: pd.DatetimeIndex | None = None
) -> pd.DataFrame:
    """Add ``created_at``/``updated_at``/``deleted_at`` (NaT) to a frame."""
    frame["created_at"] = created
    frame["updated_at"] = created if updated is None else updated
    frame["deleted_at"] = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]")
    return frame


def softmax_weights(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))
