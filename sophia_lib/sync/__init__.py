"""The sync stage: vendor APIs → ``raw_<vendor>`` tables, one dlt pipeline per source.

    results = run_sync(load_config(), sources=["hubspot"], full_refresh=False)
    for r in results: r.status, r.error, r.streams["contacts"].rows_inserted
    source_health(load_config())        # per source: last success, lag, consecutive failures, last error

:mod:`.runner` runs the sources (locks, recovery, stats, quarantine, schema events), :mod:`.health`
reads the app DB back, :mod:`.progress` draws the bars, :mod:`.configuration` and
:mod:`.exceptions` hold the stage's settings and errors.
"""

from sophia_lib.sync.configuration import SyncSettings
from sophia_lib.sync.exceptions import SourceBusyError, SyncError, UnknownSourceError
from sophia_lib.sync.health import SourceHealth, source_health
from sophia_lib.sync.runner import SchemaChange, SourceRunResult, StreamResult, run_sync, select_sources

__all__ = [
    "SchemaChange",
    "SourceBusyError",
    "SourceHealth",
    "SourceRunResult",
    "StreamResult",
    "SyncError",
    "SyncSettings",
    "UnknownSourceError",
    "run_sync",
    "select_sources",
    "source_health",
]
