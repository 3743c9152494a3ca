"""Reading executed notebooks: which cell failed and why, marking a cell failed, rendering HTML.

Papermill adds cells of its own to the executed notebook (the injected parameters, red error
banners), so a cell's position there is not its position in the job's notebook. Positions here are
in the notebook *as written* (:func:`source_index`), which is where its author looks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # nbformat costs a second to import (jsonschema): only the functions that need it do
    from nbformat import NotebookNode

PAPERMILL_TAGS = frozenset({"injected-parameters", "papermill-error-cell-tag"})
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass(frozen=True)
class CellFailure:
    """The cell a run stopped in: its index in the notebook as written and in the executed one."""

    source_index: int
    executed_index: int
    error: str | None  # "ZeroDivisionError: division by zero" + traceback, when the cell has an error output


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def read(path: Path) -> NotebookNode | None:
    """The notebook at ``path``, or None when it is missing or unreadable (a run killed before it was written)."""
    import nbformat

    try:
        return nbformat.read(path, as_version=4)
    except (OSError, ValueError):
        return None


def _tags(cell: NotebookNode) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def _papermill(cell: NotebookNode) -> dict:
    return cell.get("metadata", {}).get("papermill", {}) or {}


def source_index(nb: NotebookNode, executed_index: int) -> int:
    """Position in the notebook as written of the executed notebook's cell ``executed_index``."""
    return sum(1 for cell in nb.cells[:executed_index] if not _tags(cell) & PAPERMILL_TAGS)


def locate_failure(nb: NotebookNode) -> CellFailure | None:
    """The cell a run stopped in: the one papermill marked failed, else the one still marked running (a
    killed run), else the last one that started (papermill marks every cell completed when the kernel dies)."""
    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    index = next((i for i, c in code if _papermill(c).get("status") == "failed"), None)
    if index is None:
        index = next((i for i, c in code if _papermill(c).get("status") == "running"), None)
    if index is None:
        started = [i for i, c in code if _papermill(c).get("start_time")]
        index = started[-1] if started else None
    if index is None:
        return None
    return CellFailure(source_index(nb, index), index, error_output(nb.cells[index]))


def error_output(cell: NotebookNode) -> str | None:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            head = f"{output.get('ename', 'Error')}: {output.get('evalue', '')}".rstrip(": ")
            trace = strip_ansi("\n".join(output.get("traceback", [])))
            return f"{head}\n{trace}".rstrip()
    return None


def mark_failed(nb: NotebookNode, executed_index: int, ename: str, evalue: str) -> None:
    """Record in the executed notebook that cell ``executed_index`` failed (papermill does not when the
    kernel dies or the run is killed), so the rendered run shows where and why; later cells become pending."""
    import nbformat

    cell = nb.cells[executed_index]
    if not any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
        cell.setdefault("outputs", []).append(
            nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"]))
    cell.setdefault("metadata", {}).setdefault("papermill", {})["status"] = "failed"
    cell["metadata"]["papermill"]["exception"] = True
    for later in nb.cells[executed_index + 1:]:
        meta = _papermill(later)
        if meta and not meta.get("start_time"):
            meta["status"] = "pending"
    nb.metadata.setdefault("papermill", {})["exception"] = True


def write(nb: NotebookNode, path: Path) -> None:
    import nbformat

    tmp = path.with_name(f".{path.name}.tmp")
    nbformat.write(nb, tmp)
    tmp.replace(path)


def render_html(notebook: Path) -> Path | None:
    """``x.ipynb`` → ``x.html`` beside it (nbconvert, the lab template); None when there is no notebook."""
    nb = read(notebook)
    if nb is None:
        return None
    from nbconvert import HTMLExporter

    body, _resources = HTMLExporter(template_name="lab").from_notebook_node(nb)
    html = notebook.with_suffix(".html")
    tmp = html.with_name(f".{html.name}.tmp")
    tmp.write_text(body, encoding="utf-8")
    tmp.replace(html)
    return html
