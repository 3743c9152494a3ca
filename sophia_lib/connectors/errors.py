"""Errors a sync can end with; each names the source and says what to do."""

from __future__ import annotations

from sophia_lib.errors import SophiaError, TerminalError, TransientError


class SourceError(SophiaError):
    """A source could not be synced."""

    reason = "source"

    def __init__(self, source: str, message: str, *, fix: str | None = None) -> None:
        self.source = source
        self.vendor_message = message
        super().__init__(f"{source}: {message}", fix=fix)


class SourceAuthError(SourceError, TerminalError):
    """Credentials are wrong, revoked or lack a scope."""

    reason = "source_auth"

    def __init__(self, source: str, message: str) -> None:
        super().__init__(source, f"authentication failed: {message}",
                         fix=f"re-authorize {source} (check the client id/secret, the refresh token and its scopes)"
                         f" and store the new values with `sophia credentials set`")


class SourceRequestError(SourceError, TerminalError):
    """The vendor refused the request itself (4xx other than auth and throttling)."""

    reason = "source_request"

    def __init__(self, source: str, message: str, *, status: int | None = None, url: str | None = None) -> None:
        self.status = status
        where = f" (HTTP {status} for {url})" if status else ""
        super().__init__(source, f"the vendor refused a request{where}: {message}",
                         fix="check the source's base_url and options in sophia.yaml")


class SourceUnavailableError(SourceError, TransientError):
    """Retries ran out: outage, persistent throttling, timeouts."""

    reason = "source_unavailable"

    def __init__(self, source: str, message: str, *, attempts: int, elapsed_s: float) -> None:
        super().__init__(source, f"gave up after {attempts} attempts in {elapsed_s:.0f}s: {message}",
                         fix="the next scheduled sync retries; nothing loaded so far is lost")


class SourceConfigError(SourceError, TerminalError):
    """A source's configuration or credentials reference is missing or wrong."""

    reason = "source_config"
