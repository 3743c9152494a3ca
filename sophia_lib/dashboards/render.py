"""Run one dashboard notebook headless (papermill) and turn it into a static page (nbconvert).

The page hides code, prompts and tracebacks; plotly charts stay interactive through plotly.js, which
the page loads from ``plotly_src`` (the dashboards service serves it) or carries inline. A failed run
raises :class:`RenderError` naming the failing cell, with the executed notebook kept for the author.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from sophia_lib.config.typing import SophiaConfig
from sophia_lib.errors import SophiaError

TRACEBACK = re.compile(r"Traceback \(most recent call last\)|-{60,}\s*\n?\s*\w+(Error|Exception)\b")


class RenderError(SophiaError):
    """A dashboard notebook failed: ``cell_index`` (of the notebook as written), error name and value."""

    reason = "render_failed"

    def __init__(self, message: str, *, fix: str | None = None, cell_index: int | None = None,
                 ename: str = "", evalue: str = "", source: str = "") -> None:
        super().__init__(message, fix=fix)
        self.cell_index = cell_index
        self.ename = ename
        self.evalue = evalue
        self.source = source


@dataclass
class Rendered:
    html: str
    notebook: nbformat.NotebookNode
    duration_s: float


def plotly_js() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def execute(notebook: Path, parameters: Mapping[str, Any], env: Mapping[str, str], *, kernel: str = "python3",
            timeout_s: float = 300, cwd: Path | None = None) -> nbformat.NotebookNode:
    """Execute ``notebook`` with papermill in a kernel whose environment is ``env`` plus PATH basics only.

    The kernel never inherits this process's environment: the dashboards service's own hub token must
    not reach notebook code unless ``env`` passes it on purpose (a snapshot scope's credentials).
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    kernel_env = {k: v for k, v in os.environ.items() if k in INHERITED}
    kernel_env.update(env)
    try:
        return papermill.execute_notebook(
            str(notebook), None, parameters=dict(parameters), kernel_name=kernel, progress_bar=False,
            log_output=False, execution_timeout=int(timeout_s), cwd=str(cwd or notebook.parent),
            km=_kernel_manager(kernel, kernel_env))
    except PapermillExecutionError as exc:
        cell = _written_index(notebook, exc.cell_index)
        raise RenderError(f"{notebook.name} failed in cell {cell}: {exc.ename}: {_first_line(exc.evalue)}",
                          fix="open the notebook, run it top to bottom and fix that cell",
                          cell_index=cell, ename=exc.ename, evalue=exc.evalue,
                          source=_cell_source(notebook, cell)) from None


def config_env(config: SophiaConfig) -> dict[str, str]:
    """What a dashboard kernel needs to find the same configuration (data health reads the app database)."""
    from sophia_lib.config import config_path

    env = {"SOPHIA_VAR_DIR": str(config.var_dir)}
    if config.app_db.url:
        env["SOPHIA_APP_DB__URL"] = config.app_db.url
    path = config_path()
    if path is not None:
        env["SOPHIA_CONFIG"] = str(path.resolve())
    return env


INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV", "SOPHIA_CONFIG",
             "SOPHIA_VAR_DIR")


def _kernel_manager(kernel: str, env: Mapping[str, str]):  # -> AsyncKernelManager
    from jupyter_client.manager import AsyncKernelManager

    class ScopedKernelManager(AsyncKernelManager):
        async def _async_pre_start_kernel(self, **kwargs: Any) -> Any:
            kwargs["env"] = dict(env)
            return await super()._async_pre_start_kernel(**kwargs)

    return ScopedKernelManager(kernel_name=kernel)


def _written_index(notebook: Path, cell_index: int) -> int:
    """papermill counts the cell it injects (after the ``parameters`` cell, or first when there is none);
    map back to the notebook as its author wrote it."""
    cells = nbformat.read(notebook, as_version=4).cells
    tagged = [i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])]
    injected_at = tagged[0] + 1 if tagged else 0
    return cell_index - 1 if cell_index > injected_at else cell_index


def _cell_source(notebook: Path, index: int) -> str:
    cells = nbformat.read(notebook, as_version=4).cells
    return cells[index].source if 0 <= index < len(cells) else ""


def _first_line(text: str) -> str:
    return (text or "").strip().splitlines()[0][:300] if (text or "").strip() else ""


def to_html(notebook: nbformat.NotebookNode, *, title: str, plotly_src: str | None = None) -> str:
    """Static HTML: no code, no prompts, no error outputs or stderr; plotly.js loaded once in the head."""
    from nbconvert import HTMLExporter

    clean = nbformat.from_dict(notebook)
    for cell in clean.cells:
        if cell.cell_type == "markdown":
            cell.source = ""
        if cell.cell_type != "code":
            continue
        cell.outputs = [o for o in cell.get("outputs", []) if o.get("output_type") != "error"
                        and not (o.get("output_type") == "stream" and o.get("name") == "stderr")]
    clean.cells = [c for c in clean.cells if c.cell_type == "code" and c.get("outputs")]
    clean.metadata["title"] = title
    exporter = HTMLExporter(template_name="lab", exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True, embed_images=True)
    body, _ = exporter.from_notebook_node(clean, resources={"metadata": {"name": title}})
    script = (f'<script src="{plotly_src}" charset="utf-8"></script>' if plotly_src else
              f'<script charset="utf-8">{plotly_js().read_text()}</script>')
    body = body.replace("</head>", f'{script}\n<meta name="viewport" content="width=device-width, initial-scale=1">'
                        "\n</head>", 1)
    if TRACEBACK.search(body):
        raise RenderError(f"the page for {title!r} would show a traceback.",
                          fix="a cell printed one: catch the error in the notebook and show a message")
    return re.sub(r"\n{3,}", "\n\n", body)
