"""Reports: the weekly executive summary, monthly department scorecards and quarterly business review.

- :mod:`.narrative`: "Pipeline rose 12 % to $4.1M." from a metric, its prior value and its unit.
- :mod:`.kit`: what the notebooks in ``notebooks/reports/`` are made of (header, narrative, tiles, charts).
- :mod:`.catalog`: the reports, their notebooks and the dashboards that explain them.
- :mod:`.render`: execute a report as a role (papermill), HTML with code hidden, PDF (:mod:`.pdf`, Chromium).
- :mod:`.distribution`: one copy per recipient role, mailed (PDF attached) and posted to Slack; the
  scheduler's after-job hook. See docs/reports.md.

Names load lazily: a report kernel imports :mod:`.kit` only.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Change": "narrative", "change_sentence": "narrative", "format_value": "narrative",
    "REPORTS": "catalog", "get_report": "catalog",
    "RenderedReport": "render", "ReportError": "render", "render_copy": "render",
    "Distribution": "distribution", "distribute": "distribution",
    "TokenPerRole": "auth", "role_auth": "auth",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sophia_lib.reports' has no attribute {name!r}")
    return getattr(importlib.import_module(f"sophia_lib.reports.{_EXPORTS[name]}"), name)
