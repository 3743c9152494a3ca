"""Benchmarks: `make bench` runs them and prints figures and ratios against a named peer or target.

Each module defines ``run(args) -> list[Result]``; targets live here, never as timed asserts in tests.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Result:
    """One measured figure, its peer (another implementation or a target budget) and the ratio."""

    name: str
    value: float
    unit: str
    peer_name: str
    peer_value: float
    target_ratio: float = 1.0
    lower_is_better: bool = True

    @property
    def ratio(self) -> float:
        return self.value / self.peer_value if self.peer_value else float("inf")

    @property
    def meets(self) -> bool:
        return self.ratio <= self.target_ratio if self.lower_is_better else self.ratio >= self.target_ratio

    def line(self) -> str:
        mark = "ok " if self.meets else "MISS"
        return (f"{mark} {self.name:<48} {self.value:>10.3f} {self.unit:<6} vs {self.peer_name:<32} "
                f"{self.peer_value:>10.3f}  ratio {self.ratio:5.2f} (target {'≤' if self.lower_is_better else '≥'} "
                f"{self.target_ratio:g})")


def median_ms(fn: Callable[[], object], repeat: int = 30) -> float:
    """Median wall time of ``fn()`` over ``repeat`` calls, in milliseconds."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)
