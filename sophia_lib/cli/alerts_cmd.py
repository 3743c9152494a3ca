"""``sophia alerts``: list alerts, acknowledge or snooze one, evaluate the rules now, check the rules.
Parses and calls sophia_lib.alerts only."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import typer

from sophia_lib.alerts import acknowledge, evaluate_alerts, list_alerts, load_rules, snooze
from sophia_lib.alerts.rules import parse_duration, rules_path
from sophia_lib.config import load_config

app = typer.Typer(help="Alerts of pipelines/alerts.yaml: list, ack, snooze, evaluate, check.", no_args_is_help=True)

STATE_COLOURS = {"firing": "red", "resolved": "green"}


def _when(iso: str) -> str:
    return iso[:16].replace("T", " ")


def _line(alert: dict) -> str:
    flags = []
    if alert["acked_by"]:
        flags.append(f"acked by {alert['acked_by']}")
    if alert["snoozed_until"]:
        flags.append(f"snoozed until {_when(alert['snoozed_until'])}")
    failed = alert["deliveries"]["failed"]
    if failed:
        flags.append(f"{failed} delivery FAILED")
    extra = f"  [{'; '.join(flags)}]" if flags else ""
    return (f"#{alert['id']:<5} {alert['state']:<8} {alert['severity']:<8} {alert['rule']}"
            f"{' / ' + alert['key'] if alert['key'] else ''}  since {_when(alert['first_fired_at'])}{extra}\n"
            f"       {alert['summary']}" + (f"\n       {alert['link']}" if alert["link"] else ""))


@app.command("list")
def list_command(all_: bool = typer.Option(False, "--all", help="Include resolved alerts."),
                 limit: int = typer.Option(50, "--limit", min=1, help="At most this many, newest first."),
                 as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Firing alerts (with --all, resolved ones too), newest first."""
    alerts = list_alerts(load_config(), include_resolved=all_, limit=limit)
    if as_json:
        typer.echo(json.dumps(alerts, indent=2))
        return
    if not alerts:
        typer.echo("no firing alerts" if not all_ else "no alerts")
        return
    for alert in alerts:
        typer.secho(_line(alert), fg=STATE_COLOURS.get(alert["state"]))


@app.command("ack")
def ack_command(alert_id: int = typer.Argument(..., help="Alert id (from `sophia alerts list`)."),
                by: str = typer.Option(None, "--by", help="Who acknowledges; default: your user name.")) -> None:
    """Acknowledge an alert: someone is on it, so no reminders."""
    alert = acknowledge(load_config(), alert_id, by or getpass.getuser())
    typer.echo(f"alert #{alert['id']} ({alert['rule']}) acknowledged by {alert['acked_by']}")


@app.command("snooze")
def snooze_command(alert_id: int = typer.Argument(..., help="Alert id (from `sophia alerts list`)."),
                   duration: str = typer.Option(..., "--for", help="How long: 30m, 2h, 1d, 1w.")) -> None:
    """Silence an alert for a while (no reminder, no resolved message; a re-fire stays silent too)."""
    try:
        delta = parse_duration(duration)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--for") from None
    alert = snooze(load_config(), alert_id, delta)
    typer.echo(f"alert #{alert['id']} ({alert['rule']}) snoozed until {_when(alert['snoozed_until'])} UTC")


@app.command("evaluate")
def evaluate_command(no_send: bool = typer.Option(False, "--no-send", help="Record, send nothing."),
                     rules: Path = typer.Option(None, "--rules", help="alerts.yaml to use instead of the "
                                                "configured one."),
                     as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Evaluate every rule now (through the query door) and deliver what changed."""
    config = load_config()
    report = evaluate_alerts(config, rules=load_rules(config, rules), send=not no_send)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        for transition in report.transitions:
            typer.echo(f"{transition.event:<9} #{transition.alert_id} {transition.rule}"
                       f"{' / ' + transition.key if transition.key else ''}: {transition.summary}")
        typer.echo(report.summary())
    if report.errors:
        report.raise_for_errors()


@app.command("check")
def check_command(rules: Path = typer.Option(None, "--rules", help="alerts.yaml to check.")) -> None:
    """Validate alerts.yaml (keys, durations, targets, metric names) without evaluating anything."""
    config = load_config()
    loaded = load_rules(config, rules)
    typer.echo(f"{rules or rules_path(config)}: {len(loaded)} rule(s) OK")

