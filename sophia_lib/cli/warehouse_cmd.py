"""Placeholder; replaced by its owner."""

import typer

app = typer.Typer(help="(not yet built)")
