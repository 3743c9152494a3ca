"""`python -m benchmarks [NAME ...] [--size small|medium|large]`: run benchmarks and print figures."""

from __future__ import annotations

import argparse
import importlib
import sys
import time

SUITES = ["sandbox", "warehouse", "connectors", "query", "transforms", "dashboards"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__)
    parser.add_argument("suites", nargs="*", choices=[*SUITES, []], help=f"default: all of {SUITES}")
    parser.add_argument("--size", default="medium", choices=["small", "medium", "large"],
                        help="sandbox size the benchmarks run on (default medium)")
    args = parser.parse_args(argv)
    missed = 0
    for name in args.suites or SUITES:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        print(f"== {name} ({args.size})", flush=True)
        started = time.perf_counter()
        for result in module.run(args):
            print(result.line(), flush=True)
            missed += not result.meets
        print(f"   ({time.perf_counter() - started:.1f} s)", flush=True)
    print(f"{missed} figure(s) missed their peer or target" if missed else "all figures met their peer or target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
