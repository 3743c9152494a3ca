"""``sophia reports``: list the reports, render one as a role, send one to its audience. Parses and calls
sophia_lib only."""

from __future__ import annotations

from pathlib import Path

import typer

from sophia_lib.config import load_config

app = typer.Typer(help="Scheduled reports (notebooks/reports/): list, render as a role, send to the audience.",
                  no_args_is_help=True)


@app.command("list")
def list_reports() -> None:
    """Every report, its notebook and how many recipients sophia.yaml gives it."""
    from sophia_lib.reports.catalog import REPORTS

    config = load_config()
    for spec in REPORTS.values():
        count = len(config.reports.audiences.get(spec.name, []))
        typer.echo(f"{spec.name:32} {spec.notebook.name:34} {count} recipient(s)")


@app.command("render")
def render(
    name: str = typer.Argument(..., help="The report (a job name such as weekly_exec_summary, or its notebook)."),
    department: str = typer.Option(None, "--department", help="monthly scorecard: sales, marketing, "
                                   "customer_success, finance or operations (default: all five)."),
    as_role: str = typer.Option(None, "--as", help="Produce the copy a recipient of this role gets (its token from "
                                "reports.tokens); default: as you, with your own token."),
    out: Path = typer.Option(None, "--out", help="Folder for the .ipynb, .html and .pdf (default: under "
                             "reports.output_dir)."),
    pdf: bool = typer.Option(True, "--pdf/--no-pdf", help="Also print the PDF (Chromium)."),
) -> None:
    """Render one copy of a report to HTML and PDF, and print its summary."""
    from sophia_lib.errors import ConfigError
    from sophia_lib.query.client import default_token
    from sophia_lib.reports.auth import ROLE_ENV, query_url, role_auth
    from sophia_lib.reports.catalog import get_report
    from sophia_lib.reports.render import new_run_folder, render_copy

    config = load_config()
    spec = get_report(name)
    if as_role:
        env = role_auth(config).env(as_role)  # type: ignore[arg-type]
    else:
        token = default_token()
        if not token:
            raise ConfigError("no hub token to render the report with.",
                              fix="export SOPHIA_QUERY_TOKEN (create one at <hub>/hub/token), or pass --as ROLE")
        env = {"SOPHIA_QUERY_URL": query_url(config), "SOPHIA_QUERY_TOKEN": token, ROLE_ENV: ""}
    folder = out or new_run_folder(config, spec.name) / (as_role or "me")
    copy = render_copy(config, spec, env, folder, department=department, pdf=pdf)
    typer.echo(f"{copy.title} as {copy.role} in {copy.duration_s:.1f} s")
    for sentence in copy.sentences:
        typer.echo(f"  • {sentence}")
    typer.echo(f"html: {copy.html}")
    if copy.pdf:
        typer.echo(f"pdf:  {copy.pdf}")


@app.command("send")
def send(name: str = typer.Argument(..., help="The report to send to its reports.audiences recipients.")) -> None:
    """Render a copy per recipient role and mail / post it now; exits 1 when a delivery or a copy failed."""
    from sophia_lib.reports.distribution import distribute

    config = load_config()
    result = distribute(config, name)
    for outcome in result.deliveries:
        colour = "green" if outcome.status == "sent" else "red"
        typer.secho(f"{outcome.target}: {outcome.status}", fg=colour)
        if outcome.error and outcome.status != "sent":
            typer.echo(f"    {outcome.error.splitlines()[-1]}")
    typer.echo(result.summary())
    if any(o.status != "sent" for o in result.deliveries):
        raise typer.Exit(1)
