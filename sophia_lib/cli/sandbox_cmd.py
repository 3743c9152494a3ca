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
    """Where ``generate`` caches a company unless told otherwise: ``<var_dir>/sandbox/<size>-<seed>``."""
    return load_config().var_dir / "sandbox" / f"{size}-{seed}"


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
    """Load the cached company, move its clock forward, save it, and print what changed."""
    from sophia_lib.sandbox.clock import advance as step
    from sophia_lib.sandbox.store import load, save

    size, seed = _resolve(size, seed)
    where = folder or default_dir(size, seed)
    company = load(where)
    changes = step(company, minutes)
    save(company, where)
    typer.echo(f"advanced {changes.start.isoformat()} → {changes.end.isoformat()}: {changes.total} changes")
    summary = changes.summary()
    for row in summary.itertuples(index=False):
        typer.echo(f"  {row.table:<20} {row.kind:<7} {row.count:>6}")


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
