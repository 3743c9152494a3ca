"""`make bench` keeps working: the suites run on the small sandbox and print figures with ratios."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmarks_run_and_print_ratios() -> None:
    result = subprocess.run([sys.executable, "-m", "benchmarks", "--size", "small"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if " ratio " in line]
    assert len(lines) >= 5, result.stdout
    assert "== sandbox" in result.stdout and "== warehouse" in result.stdout
