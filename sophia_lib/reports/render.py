"""One report copy: execute its notebook as a role (papermill), then static HTML (code hidden) and PDF.

::

    <reports.output_dir>/<report>/<stamp>/<role>[-<department>]/<notebook>.ipynb|.html|.pdf

Execution and the HTML page reuse the dashboards' renderer (:mod:`sophia_lib.dashboards.render`): the
kernel gets only the role's query credentials, never this process's environment, and the page hides
code, prompts and error output. The summary the notebook displayed with
:meth:`sophia_lib.reports.kit.Report.finish` is read back for the mail body and the Slack message.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nbformat

from sophia_lib.config.typing import SophiaConfig
from sophia_lib.dashboards.render import RenderError, execute, to_html
from sophia_lib.errors import SophiaError
from sophia_lib.reports.catalog import ReportSpec, check_department
from sophia_lib.reports.kit import SUMMARY_MIME
from sophia_lib.reports.pdf import html_to_pdf


class ReportError(SophiaError):
    reason = "report_failed"


@dataclass
class RenderedReport:
    """A rendered copy: its files and the summary the notebook produced."""

    report: str
    title: str
    role: str | None
    department: str | None
    folder: Path
    notebook: Path
    html: Path
    pdf: Path | None
    summary: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0

    @property
    def sentences(self) -> list[str]:
        return list(self.summary.get("summary") or [])


def output_dir(config: SophiaConfig) -> Path:
    return config.reports.output_dir or Path(config.var_dir) / "reports"


def new_run_folder(config: SophiaConfig, report: str) -> Path:
    folder = output_dir(config) / report / datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def prune_runs(config: SophiaConfig, report: str) -> None:
    """Keep the newest ``reports.keep_runs`` rendered runs of ``report``."""
    import shutil

    root = output_dir(config) / report
    runs = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.name) if root.is_dir() else []
    for old in runs[:-config.reports.keep_runs]:
        shutil.rmtree(old, ignore_errors=True)


def summary_of(notebook: nbformat.NotebookNode) -> dict[str, Any]:
    """The record :meth:`Report.finish` displayed (the last one), or {} when the notebook made none."""
    found: dict[str, Any] = {}
    for cell in notebook.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            data = output.get("data", {})
            if SUMMARY_MIME in data:
                value = data[SUMMARY_MIME]
                found = json.loads(value) if isinstance(value, str) else dict(value)
    return found


def _without_summary(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    clean = nbformat.from_dict(notebook)
    for cell in clean.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.get("outputs", []) if SUMMARY_MIME not in o.get("data", {})]
    return clean


def render_copy(config: SophiaConfig, spec: ReportSpec, env: Mapping[str, str], folder: Path, *,
                department: str | None = None, parameters: Mapping[str, Any] | None = None,
                pdf: bool = True) -> RenderedReport:
    """Execute ``spec``'s notebook with the kernel environment ``env`` (a role's query credentials) into
    ``folder``; write the executed notebook, the HTML page and (``pdf``) the PDF. Raises :class:`ReportError`
    naming the failing cell."""
    check_department(spec, department)
    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    title = spec.title_for(department)
    try:
        executed = execute(spec.notebook, {**spec.parameters_for(department), **(parameters or {})}, env,
                           kernel=config.dashboards.kernel, timeout_s=config.reports.render_timeout_s)
    except RenderError as exc:
        raise ReportError(f"report {spec.name}{f' ({department})' if department else ''} failed: {exc.message}",
                          fix=exc.fix or "open the notebook and fix that cell") from None
    stem = spec.notebook.stem
    notebook_path = folder / f"{stem}.ipynb"
    nbformat.write(executed, notebook_path)
    summary = summary_of(executed)
    try:
        page = to_html(_without_summary(executed), title=title)
    except RenderError as exc:
        raise ReportError(f"report {spec.name}: {exc.message}", fix=exc.fix) from None
    html_path = folder / f"{stem}.html"
    html_path.write_text(page, encoding="utf-8")
    pdf_path = html_to_pdf(html_path, folder / f"{stem}.pdf", chromium=config.reports.chromium) if pdf else None
    return RenderedReport(spec.name, summary.get("title") or title, summary.get("role"), department, folder,
                          notebook_path, html_path, pdf_path, summary, round(time.perf_counter() - started, 2))
