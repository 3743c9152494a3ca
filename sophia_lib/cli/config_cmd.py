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
    from sophia_lib.scheduler.schedule import REPO_SCHEDULE, load_schedule

    if config.scheduler.schedule is not None or REPO_SCHEDULE.is_file():  # errors name the job and the key
        schedule = load_schedule(config)
        typer.echo(f"# schedule: {schedule.path}: {len(schedule.jobs)} job(s), {len(schedule.enabled())} enabled")
    from sophia_lib.alerts.rules import load_rules, rules_path

    if config.alerts.rules is not None or rules_path(config).is_file():  # errors name the rule and the key
        typer.echo(f"# alerts: {rules_path(config)}: {len(load_rules(config))} rule(s)")
    typer.secho("config OK", fg="green")
