"""Robust statistics for anomaly rules: a z-score from the median and the median absolute deviation,
which a few outliers in the history cannot drag (unlike the mean and standard deviation)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

MAD_TO_SIGMA = 1.4826  # MAD × this estimates σ for normally distributed data
MEAN_AD_TO_SIGMA = 1.2533  # mean absolute deviation × this estimates σ (fallback when MAD is 0)


def robust_z(value: float, history: Sequence[float]) -> tuple[float, float, float]:
    """(z, median, scale) of ``value`` against ``history``. When over half the history is one value (MAD 0)
    the mean absolute deviation stands in; when every point is equal, any difference is infinite."""
    values = np.asarray(history, dtype="float64")
    values = values[~np.isnan(values)]
    if values.size == 0:
        return 0.0, math.nan, math.nan
    median = float(np.median(values))
    deviations = np.abs(values - median)
    scale = MAD_TO_SIGMA * float(np.median(deviations))
    if scale == 0:
        scale = MEAN_AD_TO_SIGMA * float(np.mean(deviations))
    if scale == 0:
        return (0.0 if value == median else math.copysign(math.inf, value - median)), median, 0.0
    return (value - median) / scale, median, scale
