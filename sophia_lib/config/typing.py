"""The shape of ``sophia.yaml``: typed sections, validated once at load.

Every section forbids unknown keys, so a typo is an error instead of a silently
ignored setting. Secrets are never values here, only references
(``{secret: NAME}``) that :mod:`sophia_lib.secrets` resolves at use time.
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

TSandboxSize = Literal["small", "medium", "large"]
SECRET_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class Section(BaseModel):
    """Base of every config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class SecretRef(Section):
    """A reference to a secret held by the credential store: ``{secret: NAME}``."""

    secret: Annotated[str, Field(description="Name of the secret in the credential store.")]

    @model_validator(mode="before")
    @classmethod
    def _reference_not_value(cls, value: object) -> object:
        if isinstance(value, str | int | float):
            raise ValueError(
                "an inline secret value is not allowed; write {secret: NAME} here and keep the value in the "
                "credential store (or the environment variable SOPHIA_SECRET_NAME)"
            )
        return value

    @field_validator("secret")
    @classmethod
    def _name(cls, value: str) -> str:
        if not SECRET_NAME.match(value):
            raise ValueError(
                f"secret names are letters, digits and '_' starting with a letter; got {value!r}"
            )
        return value

    def __str__(self) -> str:
        return f"{{secret: {self.secret}}}"


def _no_inline_password(url: str, key: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError with a terse text
        raise ValueError(
            f"not a SQLAlchemy URL ({exc}); write e.g. 'duckdb:///var/warehouse' or "
            "'postgresql+psycopg://user@host:5432/dbname'"
        ) from None
    if parsed.password:
        raise ValueError(
            f"the URL carries an inline password; remove it and set {key}.password: "
            "{secret: NAME} instead (secrets never sit in config files)"
        )
    return url


class WarehouseConfig(Section):
    """Where data lives. DuckDB files by default; PostgreSQL in production."""

    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL. duckdb:///DIR (a folder of snapshot files) or postgresql+psycopg://…; "
        "default: duckdb under var_dir/warehouse.",
    )
    password: SecretRef | None = Field(default=None, description="Database password (PostgreSQL).")
    keep_snapshots: int = Field(default=5, ge=2, le=100, description="Published snapshots kept for rollback.")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        _no_inline_password(value, "warehouse")
        scheme = value.split(":", 1)[0].split("+", 1)[0]
        if scheme not in ("duckdb", "postgresql"):
            raise ValueError(f"unsupported warehouse scheme {scheme!r}; valid: duckdb, postgresql")
        return value


class AppDbConfig(Section):
    """Application state: sync runs, job runs, alerts, published dashboards, audit log."""

    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default: sqlite under var_dir/app.db. PostgreSQL in production.",
    )
    password: SecretRef | None = Field(default=None, description="Database password (PostgreSQL).")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        _no_inline_password(value, "app_db")
        scheme = value.split(":", 1)[0].split("+", 1)[0]
        if scheme not in ("sqlite", "postgresql"):
            raise ValueError(f"unsupported app_db scheme {scheme!r}; valid: sqlite, postgresql")
        return value


class SandboxConfig(Section):
    """The synthetic company and its vendor API simulator (demo and tests)."""

    size: TSandboxSize = Field(default="medium", description="small (tests), medium (demo), large (bench).")
    seed: int = Field(default=42, ge=0, description="Same seed, byte-identical data.")
    host: str = Field(default="127.0.0.1", description="Interface the simulator listens on.")
    port: int = Field(default=8700, ge=1, le=65535, description="Port of the vendor API simulator.")
    idp_port: int = Field(default=8701, ge=1, le=65535, description="Port of the local OIDC identity provider.")
    feeds_sources: bool | None = Field(
        default=None,
        description="Sync every source not configured under `sources:` from this sandbox, with its demo credentials. "
        "Default: true with the built-in defaults (no sophia.yaml, i.e. the demo), false when a sophia.yaml is used.",
    )


CONFIG_BASE: ContextVar[Path | None] = ContextVar("CONFIG_BASE", default=None)
"""Folder that relative paths are resolved against (the config file's folder) while loading."""


TSourceName = Literal[
    "salesforce", "hubspot", "netsuite", "gong", "intercom", "slack", "asana", "linear", "notion", "looker",
    "factors",
]


class SourceConfig(Section):
    """One data source: where it is, which credentials (by reference) and options."""

    enabled: bool = Field(default=True, description="Sync this source.")
    base_url: str | None = Field(default=None, description="API base URL; default: the vendor's real URL.")
    credentials: dict[str, SecretRef] = Field(
        default_factory=dict,
        description="Credential name (as the connector names it, e.g. refresh_token) → {secret: NAME}.",
    )
    options: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Non-secret vendor options (e.g. account_id, client_id)."
    )
    start_date: date = Field(default=date(2024, 1, 1), description="Oldest data the first sync pulls.")
    streams: list[str] | None = Field(default=None, description="Only these streams; default: all.")
    schema_changes: Literal["evolve", "freeze"] = Field(
        default="evolve", description="evolve: new fields become columns (recorded as schema events); freeze: a "
        "new field or changed type fails the sync until someone looks.")

    @field_validator("base_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://; got {value!r}")
        return value


class SyncConfig(Section):
    """How syncs run."""

    parallelism: int = Field(default=4, ge=1, le=16, description="Sources synced at the same time.")
    max_retry_s: float = Field(default=300, gt=0, description="Give up on a source after retrying this long.")
    request_timeout_s: float = Field(default=60, gt=0, description="Read timeout of one HTTP request.")


class SecretsConfig(Section):
    """Where credentials live (values never sit in sophia.yaml)."""

    backend: str = Field(default="file", description="file (encrypted var_dir/secrets.enc), env (read-only "
                         "SOPHIA_SECRET_<NAME>), vault, or a backend registered by entry point.")
    vault_url: str | None = Field(default=None, description="Vault address; default: VAULT_ADDR. Token: VAULT_TOKEN.")
    vault_mount: str = Field(default="secret", description="Mount path of the KV v2 engine.")
    vault_prefix: str = Field(default="sophia", description="Path prefix under the mount.")


TRole = Literal["super_user", "analyst", "executive_viewer", "developer"]


class HubConfig(Section):
    """``hub:`` — JupyterHub: where it listens, how people sign in, which IdP group is which Sophia role.
    Owned by hub/jupyterhub_config.py (docs/operations.md)."""

    ip: str = Field(default="127.0.0.1", description="Interface the hub's proxy listens on.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port of the hub (the public URL's port).")
    group_roles: dict[str, TRole] = Field(
        default_factory=lambda: {"sophia-super-users": "super_user", "sophia-analysts": "analyst",
                                 "sophia-executives": "executive_viewer", "sophia-developers": "developer"},
        description="IdP group → Sophia role. A user in several groups gets the most privileged role.",
    )


class QueryConfig(Section):
    """``query:`` — the query door's service (sophia_lib.query): policy, cache, where it listens."""

    host: str = Field(default="127.0.0.1", description="Interface the query service listens on.")
    port: int = Field(default=8702, ge=1, le=65535, description="Port of the query service.")
    policy: Path | None = Field(default=None, description="policy.yaml; default: the one shipped with Sophia.")


class MetricsConfig(Section):
    """``metrics:`` — the metric layer (sophia_lib.metrics)."""

    path: Path | None = Field(default=None, description="metrics.yaml; default: the one shipped with Sophia.")


class SophiaConfig(BaseSettings):
    """Top level of sophia.yaml. Every key can be overridden by an environment variable:
    ``SOPHIA_<SECTION>__<KEY>`` (e.g. ``SOPHIA_WAREHOUSE__URL``); environment wins over the file."""

    model_config = SettingsConfigDict(
        env_prefix="SOPHIA_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    var_dir: Path = Field(default=Path("var"), description="Folder for embedded state (warehouse, app db).")
    warehouse: WarehouseConfig = Field(default_factory=WarehouseConfig)
    app_db: AppDbConfig = Field(default_factory=AppDbConfig)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    sources: dict[TSourceName, SourceConfig] = Field(
        default_factory=dict, description="Data sources by name; see docs/connectors.md."
    )
    sync: SyncConfig = Field(default_factory=SyncConfig)
    secrets: SecretsConfig = Field(default_factory=SecretsConfig)
    hub: HubConfig = Field(default_factory=HubConfig)
    query: QueryConfig = Field(default_factory=QueryConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)

    @model_validator(mode="after")
    def _embedded_defaults(self) -> SophiaConfig:
        if not self.var_dir.is_absolute():
            self.var_dir = (CONFIG_BASE.get() or Path.cwd()) / self.var_dir
        if self.sandbox.feeds_sources is None:
            self.sandbox.feeds_sources = CONFIG_BASE.get() is None
        if self.warehouse.url is None:
            self.warehouse.url = f"duckdb:///{self.var_dir / 'warehouse'}"
        if self.app_db.url is None:
            self.app_db.url = f"sqlite:///{self.var_dir / 'app.db'}"
        return self

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):  # noqa: D102
        # Environment first, then the values read from sophia.yaml (passed as init kwargs).
        return (env_settings, init_settings)
