"""`make bench` keeps working: the suites run on the small sandbox and print figures with ratios."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_benchmarks_run_and_print_ratios() -> None:
    quick = ["sandbox", "warehouse", "connectors", "query", "transforms"]  # dashboards: the slow test below
    result = subprocess.run([sys.executable, "-m", "benchmarks", *quick, "--size", "small"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if " ratio " in line]
    assert len(lines) >= 5, result.stdout
    assert "== sandbox" in result.stdout and "== warehouse" in result.stdout


def test_transforms_benchmark_prints_its_figures(synced_sandbox, capsys) -> None:
    """The transforms benchmark on the small synced sandbox: per-step pandas vs peer-SQL figures, totals, placement."""
    from benchmarks.bench_transforms import measure, peer_files

    measured = measure(synced_sandbox.config.var_dir)
    out = capsys.readouterr().out
    steps = {f.name: f for f in measured.steps}
    assert set(peer_files()) <= set(steps), "every peer file is named after a step of STEPS"
    for name in peer_files():
        figure = steps[name]
        assert figure.peer_s is not None and figure.peer_tables, name
        assert set(figure.peer_tables) <= set(figure.tables), f"{name}: the peer builds tables the step does not"
        assert figure.pandas_s > 0 and figure.rows > 0
        assert any(line.split()[:1] == [name] and " ratio" not in line for line in out.splitlines()), out
    # the peer's entity resolution builds the same number of accounts as the pandas one on the small company
    assert steps["entities"].peer_tables["core.accounts"] == steps["entities"].tables["core.accounts"]
    assert steps["sales_marts"].peer_tables["marts.pipeline"] == steps["sales_marts"].tables["marts.pipeline"]
    assert "total" in out and "where the steps run" in out and "not in the peer" in out


@pytest.mark.slow
def test_dashboards_benchmark_runs_against_plain_voila() -> None:
    """A real hub, query service, dashboards service and Voila: snapshot and live first-render figures."""
    result = subprocess.run([sys.executable, "-m", "benchmarks", "dashboards", "--size", "small"], cwd=ROOT,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode in (0, 1), result.stderr[-4000:]  # 1: a target missed, still printed
    assert "== dashboards" in result.stdout and " ratio " in result.stdout, result.stdout[-4000:]
