"""Errors of the query door. Each carries the HTTP status the service answers with, so the service,
the client and the CLI all show the same message and fix."""

from __future__ import annotations

from sophia_lib.errors import ConfigError, SophiaError


class QueryError(SophiaError):
    """Base of the query door's errors."""

    reason = "query"
    status: int = 400


class BadQueryError(QueryError, ValueError):
    """The request or its SQL is malformed, or names something that does not exist."""

    reason = "bad_query"
    status = 400


class ForbiddenError(QueryError, PermissionError):
    """The caller's role may not read this (a table, a statement kind, a function)."""

    reason = "forbidden"
    status = 403


class NotAuthenticatedError(QueryError, PermissionError):
    """No token, or a token the hub does not accept (forged, expired, revoked)."""

    reason = "not_authenticated"
    status = 401


class NoRoleError(ForbiddenError):
    """A valid hub user who is in no Sophia group."""

    reason = "no_role"
    status = 403


class ServiceUnavailableError(QueryError):
    """The query service, the hub or the warehouse cannot be reached."""

    reason = "unavailable"
    status = 503


class PolicyError(ConfigError):
    """policy.yaml is missing, malformed or unsafe."""

    reason = "policy"
