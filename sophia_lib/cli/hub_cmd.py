"""``sophia hub``: start JupyterHub configured from sophia.yaml; ``sophia hub install-kernels``."""

from __future__ import annotations

import typer

from sophia_lib.config import load_config

app = typer.Typer(help="The hub: JupyterHub with Sophia's sign-in, roles, profiles and services.")


@app.callback(invoke_without_command=True)
def hub(ctx: typer.Context,
        debug: bool = typer.Option(False, "--debug", help="JupyterHub debug logging.")) -> None:
    """Start the hub (JupyterHub, its proxy and services) with the configuration; Ctrl-C stops it."""
    if ctx.invoked_subcommand is not None:
        return
    from sophia_lib.hub.run import run_hub

    run_hub(load_config(), echo=typer.echo, debug=debug)


@app.command("install-kernels")
def install_kernels(
    gpu: bool = typer.Option(None, "--gpu/--no-gpu", help="Install the GPU kernel; default: where cuDF imports."),
    prefix: str = typer.Option(None, "--prefix", help="Environment prefix; default: this Python's."),
) -> None:
    """Install "Sophia (CPU)" and, where cuDF imports, "Sophia (GPU)" (python -m cudf.pandas)."""
    from sophia_lib.hub.kernels import install_kernels as install

    for kernel in install(prefix=prefix, gpu=gpu):
        typer.echo(f"installed {kernel.display_name:<13} {kernel.name:<11} {kernel.path}")
