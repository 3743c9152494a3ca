"""``sophia sandbox …``: build, advance and inspect the synthetic company. Parses, then calls sophia_lib."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from sophia_lib.config import load_config

app = typer.Typer(help="The synthetic company behind the demo and the tests.", no_args_is_help=True)

SIZE_HELP = "small (tests), medium (demo) or large (benchmarks); default: sandbox.size from sophia.yaml."
SEED_HELP = "Non-negative integer; same seed, byte-identical data. Default: sandbox.seed from sophia.yaml."


def _resolve(size: str | None, seed: int | None) -> tuple[str, int]:
    cfg = load_config()
    return (size or cfg.sandbox.size, cfg.sandbox.seed if seed is None else seed)


def default_dir(size: str, seed: int) -> Path:
    """Where a company is cached unless told otherwise: ``<var_dir>/sandbox/<size>-<seed>``."""
    from sophia_lib.sandbox.services import company_cache_dir

    return company_cache_dir(load_config(), size, seed)


def _counts(tables: dict) -> str:
    return "\n".join(f"  {name:<20} {len(frame):>10,}" for name, frame in tables.items())


@app.command()
def generate(
    size: str = typer.Option(None, "--size", help=SIZE_HELP),
    seed: int = typer.Option(None, "--seed", help=SEED_HELP),
    out: Path = typer.Option(None, "--out", help="Folder to write; default <var_dir>/sandbox/<size>-<seed>."),
) -> None:
    """Generate the company and cache it as parquet files plus manifest.json."""
    from sophia_lib.sandbox.generator import generate as build
    from sophia_lib.sandbox.store import save

    size, seed = _resolve(size, seed)
    started = time.perf_counter()
    company = build(size, seed)
    took = time.perf_counter() - started
    folder = save(company, out or default_dir(size, seed))
    typer.echo(
        f"generated sandbox company size={size} seed={seed} now={company.now.isoformat()} in {took:.1f}s"
    )
    typer.echo(_counts(company.tables))
    typer.echo(f"written to {folder}")


@app.command()
def advance(
    minutes: int = typer.Option(15, "--minutes", min=1, help="How far to move the clock."),
    size: str = typer.Option(None, "--size", help=SIZE_HELP),
    seed: int = typer.Option(None, "--seed", help=SEED_HELP),
    folder: Path = typer.Option(
        None, "--dir", help="Cached company folder; default <var_dir>/sandbox/<size>-<seed>."
    ),
) -> None:
    """Move the company's clock forward and print what changed.

    If `sophia sandbox serve` (or the demo) is running, the running simulator advances (and saves);
    otherwise the cached company is loaded, advanced and saved.
    """
    from sophia_lib.sandbox.clock import advance as step
    from sophia_lib.sandbox.store import load, save

    size, seed = _resolve(size, seed)
    if folder is None and (served := _advance_running_simulator(minutes)) is not None:
        typer.echo(f"advanced the running simulator to {served['now']}")
        for table, kinds in served["changes"].items():
            for kind, count in kinds.items():
                typer.echo(f"  {table:<20} {kind:<7} {count:>6}")
        return
    where = folder or default_dir(size, seed)
    company = load(where)
    changes = step(company, minutes)
    save(company, where)
    typer.echo(f"advanced {changes.start.isoformat()} → {changes.end.isoformat()}: {changes.total} changes")
    summary = changes.summary()
    for row in summary.itertuples(index=False):
        typer.echo(f"  {row.table:<20} {row.kind:<7} {row.count:>6}")


def _advance_running_simulator(minutes: int) -> dict | None:
    """Ask a simulator running on the configured port to advance; None when none answers."""
    import httpx

    cfg = load_config()
    base = f"http://{cfg.sandbox.host}:{cfg.sandbox.port}/_control"
    try:
        httpx.get(f"{base}/health", timeout=1.0).raise_for_status()
    except httpx.HTTPError:
        return None
    answer = httpx.post(f"{base}/advance", json={"minutes": minutes}, timeout=120.0)
    answer.raise_for_status()
    return answer.json()


@app.command()
def serve(
    follow_clock: bool = typer.Option(
        False, "--follow-clock",
        help="Advance the company to the wall clock at start and every --tick-minutes (the demo does).",
    ),
    tick_minutes: int = typer.Option(5, "--tick-minutes", min=1, help="How often --follow-clock advances."),
) -> None:
    """Run the vendor API simulator and the identity provider until Ctrl-C.

    Prints each vendor's base URL and demo credentials, and the identity provider's demo users.
    Uses the cached company for sandbox.size/seed (generating it the first time).
    """
    import threading
    import time

    from sophia_lib.processes import ignore_further_signals, stop_on_signals
    from sophia_lib.sandbox.services import prepare_company, start_sandbox_services

    stop_on_signals()
    cfg = load_config()
    services = start_sandbox_services(cfg, prepare_company(cfg, typer.echo))
    if follow_clock:
        minutes = services.sandbox.catch_up()
        typer.echo(f"sandbox: clock at {services.sandbox.company.now:%Y-%m-%d %H:%M} UTC"
                   + (f" (caught up {minutes:,} minutes)" if minutes else ""))
    for line in services.describe():
        typer.echo(line)
    typer.echo("Press Ctrl-C to stop.")
    stop = threading.Event()
    next_tick = time.monotonic() + tick_minutes * 60
    try:
        while not stop.wait(0.5):  # a timed wait keeps Ctrl-C (SIGINT) responsive
            if follow_clock and time.monotonic() >= next_tick:
                services.sandbox.catch_up()
                next_tick = time.monotonic() + tick_minutes * 60
    except KeyboardInterrupt:
        typer.echo("stopping …")
    finally:
        ignore_further_signals()
        services.stop()


@app.command()
def truth(
    size: str = typer.Option(None, "--size", help=SIZE_HELP),
    seed: int = typer.Option(None, "--seed", help=SEED_HELP),
    folder: Path = typer.Option(
        None, "--dir", help="Cached company folder; default <var_dir>/sandbox/<size>-<seed>."
    ),
    out: Path = typer.Option(
        None, "--out", help="Where to write the truth parquet files; default <dir>/truth."
    ),
) -> None:
    """Export the ground truth (entity map, churn labels, anomalies, labels) as parquet files."""
    from sophia_lib.sandbox.store import export_truth, load

    size, seed = _resolve(size, seed)
    where = folder or default_dir(size, seed)
    company = load(where)
    for file in export_truth(company, out or where / "truth"):
        typer.echo(f"wrote {file}")
