"""``sophia config``: validate and show the configuration."""

from __future__ import annotations

import typer
import yaml

from sophia_lib.config import config_path, load_config, redacted

app = typer.Typer(help="Inspect and validate sophia.yaml.", no_args_is_help=True)


@app.command("check")
def check() -> None:
    """Validate sophia.yaml (and SOPHIA_* overrides); print the resolved config with secrets hidden."""
    config = load_config()
    source = config_path()
    typer.echo(f"# config: {source if source else 'built-in defaults (no sophia.yaml found)'}")
    typer.echo(yaml.safe_dump(redacted(config), sort_keys=False).rstrip())
    typer.secho("config OK", fg="green")
