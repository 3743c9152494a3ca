"""Whose eyes a report copy is made for: the query service credentials of a role.

A report copy is executed with a hub token of the recipient's role, so the query door applies that
role's policy (datasets, masks, row filters) exactly as for the recipient's own dashboards. The hub
issues tokens to users, so each role that receives reports has a *report user* in that role's hub group
(e.g. ``report-executive`` in ``sophia-executives``), whose token sits in the credential store and is
named in ``reports.tokens`` (role → ``{secret: NAME}``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from sophia_lib.config.typing import SophiaConfig, TRole
from sophia_lib.errors import ConfigError

ROLE_ENV = "SOPHIA_REPORT_ROLE"


class RoleAuth(Protocol):
    """The environment a report kernel gets to query as ``role``."""

    url: str

    def env(self, role: TRole) -> dict[str, str]: ...


@dataclass
class TokenPerRole:
    """One hub token per role (``reports.tokens``, or a mapping given by tests and embedders)."""

    url: str
    tokens: Mapping[str, str] = field(default_factory=dict)

    def env(self, role: TRole) -> dict[str, str]:
        token = self.tokens.get(role)
        if not token:
            known = ", ".join(sorted(self.tokens)) or "none"
            raise ConfigError(f"no hub token to produce report copies for role {role} (roles with one: {known}).",
                              fix=f"create a report user in a hub group of role {role}, store its API token "
                              f"(`sophia credentials set NAME`) and set reports.tokens.{role}: {{secret: NAME}}")
        return {"SOPHIA_QUERY_URL": self.url, "SOPHIA_QUERY_TOKEN": token, ROLE_ENV: role}


def query_url(config: SophiaConfig) -> str:
    return os.environ.get("SOPHIA_QUERY_URL") or f"http://{config.query.host}:{config.query.port}"


def role_auth(config: SophiaConfig) -> TokenPerRole:
    """The tokens of ``reports.tokens``, resolved from the credential store."""
    from sophia_lib.secrets import resolve

    return TokenPerRole(query_url(config), {role: resolve(ref, config) for role, ref in config.reports.tokens.items()})


def adopt_job_token(environ: dict[str, str] | None = None) -> None:
    """In a scheduled job's kernel (``SOPHIA_JOB_ROLE`` set, no token given): query as the job's audience
    with that role's report token. A no-op anywhere else, so a notebook run by hand uses its author's token."""
    environ = os.environ if environ is None else environ  # type: ignore[assignment]
    role = environ.get("SOPHIA_JOB_ROLE")
    if not role or environ.get("SOPHIA_QUERY_TOKEN"):
        return
    from sophia_lib.config import load_config

    config = load_config()
    if role in config.reports.tokens:
        environ.update(role_auth(config).env(role))  # type: ignore[arg-type]
