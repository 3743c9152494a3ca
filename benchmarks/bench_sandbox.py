"""Sandbox: generation and advance time against the issue's budgets (small < 10 s, medium < 2 min)."""

from __future__ import annotations

import argparse
import copy
import time

from benchmarks import Result

BUDGET_S = {"small": 10.0, "medium": 120.0, "large": 1200.0}


def run(args: argparse.Namespace) -> list[Result]:
    from sophia_lib.sandbox import advance, generate
    from sophia_lib.sandbox.simulator.app import Sandbox

    started = time.perf_counter()
    company = generate(args.size, seed=42)
    generated = time.perf_counter() - started
    results = [Result(f"generate {args.size}", generated, "s", f"budget {args.size}", BUDGET_S[args.size])]

    moved = copy.deepcopy(company)
    started = time.perf_counter()
    advance(moved, 15)
    results.append(Result("advance 15 minutes", time.perf_counter() - started, "s", "budget (a refresh is 15 min)",
                          2.0))

    started = time.perf_counter()
    Sandbox(company)
    results.append(Result("render all 11 vendors", time.perf_counter() - started, "s", "budget", 30.0))
    return results
