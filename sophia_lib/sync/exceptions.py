"""Errors of the sync stage. A source's own failure (auth, outage, bad request) is a
:class:`~sophia_lib.connectors.errors.SourceError`; these are about running the sync itself."""

from __future__ import annotations

from sophia_lib.errors import ConfigError, SophiaError, TransientError


class SyncError(SophiaError):
    """A sync could not be run."""

    reason = "sync"


class UnknownSourceError(ConfigError, SyncError):
    """A source named on the command line is not a connector or is not configured."""

    reason = "unknown_source"


class SourceBusyError(TransientError, SyncError):
    """Another process is syncing the same source."""

    reason = "already_running"
