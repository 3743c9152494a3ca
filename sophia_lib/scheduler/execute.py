"""The child process of one job attempt: ``python -m sophia_lib.scheduler.execute`` (spec as JSON on stdin).

It runs the notebook with papermill and writes ``{"status", "cell_index", "error"}`` to the spec's
``result`` path. It lives in its own process (and session) so the scheduler can enforce a hard
timeout by killing it and its kernel, and so nothing a notebook does can take the scheduler down.
On Linux it asks to be killed when its parent dies, so an orphan never runs on unrecorded and
unlocked (its kernel notices its parent is gone and exits too).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from sophia_lib.scheduler import notebooks

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(3)


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Execute the notebook; the outcome as a dict (never raises for a notebook's own failure)."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    output = Path(spec["output"])
    try:
        papermill.execute_notebook(
            spec["input"], str(output), parameters=spec.get("parameters") or {}, kernel_name=spec["kernel"],
            cwd=spec.get("cwd"), progress_bar=False, log_output=True, report_mode=False)
    except PapermillExecutionError as exc:  # its cell_index counts papermill's own cells: locate it ourselves
        return _failure(output, f"{exc.ename}: {exc.evalue}")
    except Exception as exc:  # DeadKernelError, kernel start failures, unreadable notebooks, ...
        name = type(exc).__name__
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if name == "DeadKernelError":
            detail = "the kernel died while running this cell (killed, out of memory, or os._exit)"
        return _failure(output, f"{name}: {detail}".rstrip(": "), mark=(name, detail))
    return {"status": "succeeded", "cell_index": None, "error": None}


def _failure(output: Path, headline: str, mark: tuple[str, str] | None = None) -> dict[str, Any]:
    """The failed outcome: the cell it stopped in (as written) and its error with the traceback."""
    nb = notebooks.read(output)
    failure = notebooks.locate_failure(nb) if nb is not None else None
    if nb is None or failure is None:
        return {"status": "failed", "cell_index": None, "error": headline}
    if mark is not None:
        notebooks.mark_failed(nb, failure.executed_index, *mark)
        notebooks.write(nb, output)
    return {"status": "failed", "cell_index": failure.source_index, "error": failure.error or headline}


def main() -> None:
    spec = json.loads(sys.stdin.read())
    _die_with_parent(int(spec["parent_pid"]))
    result = run(spec)
    path = Path(spec["result"])
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(path)
    sys.exit(0 if result["status"] == "succeeded" else 1)


if __name__ == "__main__":
    main()
