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


TAuthenticator = Literal["generic", "google", "azuread"]
TSpawner = Literal["local", "systemd", "kubernetes"]
TGpu = Literal["none", "whole", "mig", "shared"]
_PROFILE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


class HubProfile(Section):
    """One server profile people choose from when they start a server (CPU, a whole GPU, a GPU share)."""

    name: str = Field(description="Short name: lowercase letters, digits and '-'.")
    display_name: str = Field(description="What the spawn form shows.")
    description: str = Field(default="", description="One line under the name on the spawn form.")
    groups: list[str] = Field(default_factory=list, description="IdP groups offered this profile; empty: everyone "
                              "whose role has a server.")
    gpu: TGpu = Field(default="none", description="none, whole (one GPU), mig (a MIG slice: set mig_profile), "
                      "shared (a time-sliced share of a GPU).")
    mig_profile: str | None = Field(default=None, description="MIG profile such as 1g.12gb (gpu: mig).")
    cuda_visible_devices: str | None = Field(default=None, description="local/systemd: CUDA_VISIBLE_DEVICES for "
                                             "this profile (a GPU index or a MIG UUID); default: 0 when gpu is set.")
    cpu_limit: float | None = Field(default=None, gt=0, description="CPU cores (systemd, kubernetes).")
    mem_limit: str | None = Field(default=None, description="Memory limit such as 16G (systemd, kubernetes).")
    image: str | None = Field(default=None, description="Container image (kubernetes); default: hub.image.")
    default: bool = Field(default=False, description="Preselected on the spawn form.")

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not _PROFILE_NAME.match(value):
            raise ValueError(f"profile names are lowercase letters, digits and '-' starting with a letter; "
                             f"got {value!r}")
        return value

    @model_validator(mode="after")
    def _mig(self) -> HubProfile:
        if self.gpu == "mig" and not self.mig_profile:
            raise ValueError(f"profile {self.name!r} has gpu: mig but no mig_profile (e.g. 1g.12gb)")
        return self


def _default_profiles() -> list[HubProfile]:
    gpu_groups = ["sophia-super-users", "sophia-analysts", "sophia-developers"]
    return [
        HubProfile(name="cpu", display_name="CPU", description="JupyterLab with the Sophia (CPU) kernel.",
                   default=True),
        HubProfile(name="gpu", display_name="GPU (whole)", gpu="whole", groups=gpu_groups,
                   description="One whole GPU; adds the Sophia (GPU) kernel (cuDF)."),
        HubProfile(name="gpu-slice", display_name="GPU (MIG slice)", gpu="mig", mig_profile="1g.12gb",
                   groups=gpu_groups, description="A MIG slice of a GPU; adds the Sophia (GPU) kernel (cuDF)."),
    ]


class HubConfig(Section):
    """``hub:`` — JupyterHub: where it listens, how people sign in, which IdP group is which Sophia role,
    how servers are spawned. Built by sophia_lib.hub (docs/operations.md)."""

    ip: str = Field(default="127.0.0.1", description="Interface the hub's proxy listens on.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port of the hub (the public URL's port).")
    public_url: str | None = Field(default=None, description="The URL people open; default http://ip:port. The "
                                   "OAuth callback is <public_url>/hub/oauth_callback.")
    internal_port: int = Field(default=8081, ge=1, le=65535, description="Port of the hub process itself "
                               "(loopback; the proxy and the servers talk to it).")
    proxy_api_port: int = Field(default=8001, ge=1, le=65535, description="Port of the proxy's REST API (loopback).")
    group_roles: dict[str, TRole] = Field(
        default_factory=lambda: {"sophia-super-users": "super_user", "sophia-analysts": "analyst",
                                 "sophia-executives": "executive_viewer", "sophia-developers": "developer"},
        description="IdP group → Sophia role. A user in several groups gets the most privileged role.",
    )
    authenticator: TAuthenticator = Field(default="generic", description="generic (any OIDC provider), google, "
                                          "azuread (Microsoft Entra ID).")
    sandbox_idp: bool | None = Field(
        default=None, description="Sign in against the sandbox identity provider with its demo client. Default: "
        "true with the built-in defaults (no sophia.yaml, i.e. the demo), false when a sophia.yaml is used.")
    oidc_issuer: str | None = Field(default=None, description="generic: the provider's issuer URL; the endpoints "
                                    "come from its /.well-known/openid-configuration.")
    authorize_url: str | None = Field(default=None, description="generic: authorization endpoint (overrides "
                                      "discovery).")
    token_url: str | None = Field(default=None, description="generic: token endpoint (overrides discovery).")
    userdata_url: str | None = Field(default=None, description="generic: userinfo endpoint (overrides discovery).")
    client_id: str | None = Field(default=None, description="OAuth client id registered with the provider.")
    client_secret: SecretRef | None = Field(default=None, description="OAuth client secret: {secret: NAME}.")
    tenant_id: str | None = Field(default=None, description="azuread: the Entra tenant id.")
    hosted_domain: str | None = Field(default=None, description="google: the Workspace domain people sign in with.")
    google_service_account_key_file: Path | None = Field(
        default=None, description="google: service-account key file used to read Workspace groups.")
    google_admin_email: str | None = Field(default=None, description="google: Workspace admin the service account "
                                           "acts as to read groups.")
    scopes: list[str] | None = Field(default=None, description="OAuth scopes; default per authenticator.")
    username_claim: str | None = Field(default=None, description="Claim that becomes the hub username; default per "
                                       "authenticator (preferred_username, email, or name).")
    groups_claim: str = Field(default="groups", description="Claim in the userinfo/ID token that holds the groups.")
    auth_refresh_age_s: int = Field(default=300, ge=0, description="Re-read a user's groups from the provider this "
                                    "often (and before each spawn); 0: only at login and spawn.")
    crypt_key: SecretRef | None = Field(default=None, description="Key encrypting auth state (64 hex chars): "
                                        "{secret: NAME}; default: generated once and kept in the credential store "
                                        "as HUB_CRYPT_KEY.")
    db_url: str | None = Field(default=None, description="JupyterHub's own database; default: sqlite under "
                               "var_dir/hub.")
    spawner: TSpawner = Field(default="local", description="local (demo: processes as the hub's OS user), systemd "
                              "(bare metal), kubernetes (KubeSpawner).")
    home_dir: str | None = Field(default=None, description="local: a person's home folder, {username} expanded; "
                                 "default var_dir/hub/home/{username}.")
    image: str = Field(default="sophia/notebook:latest", description="kubernetes: default single-user image.")
    profiles: list[HubProfile] = Field(default_factory=_default_profiles, description="Server profiles offered by "
                                       "group; GPU profiles are dropped by the local spawner on a host without GPU.")
    cull_idle_after_s: int = Field(default=3600, ge=0, description="Stop a user's server idle this long; 0: never.")
    service_user: str | None = Field(
        default=None, description="OS user the hub starts the query, dashboards and scheduler services as (the "
        "owner of var_dir; the hub must run as root); default: the hub's own user.")
    services: list[Literal["query", "dashboards", "scheduler"]] = Field(
        default_factory=lambda: ["query", "dashboards", "scheduler"],
        description="Sophia services the hub starts (each only once its `sophia` command exists); all are declared "
        "either way, so roles can grant access to them.")
    dashboards_port: int = Field(default=8703, ge=1, le=65535, description="Port of the dashboards service.")
    scheduler_port: int = Field(default=8704, ge=1, le=65535, description="Port of the scheduler service's "
                                "health page.")
    metrics_token: SecretRef | None = Field(default=None, description="Token a Prometheus scraper uses for "
                                            "/hub/metrics: {secret: NAME}; no scraper service when unset.")

    @model_validator(mode="after")
    def _sandbox_default(self) -> HubConfig:
        if self.sandbox_idp is None:
            self.sandbox_idp = CONFIG_BASE.get() is None
        return self

    def base_url(self) -> str:
        """The URL people open (``public_url``, else http://ip:port), without a trailing slash."""
        return (self.public_url or f"http://{self.ip}:{self.port}").rstrip("/")

    def oauth_callback_url(self) -> str:
        """Where the identity provider sends people back after they sign in."""
        return f"{self.base_url()}/hub/oauth_callback"


class QueryConfig(Section):
    """``query:`` — the query door's service (sophia_lib.query): policy, cache, where it listens."""

    host: str = Field(default="127.0.0.1", description="Interface the query service listens on.")
    port: int = Field(default=8702, ge=1, le=65535, description="Port of the query service.")
    policy: Path | None = Field(default=None, description="policy.yaml; default: the one shipped with Sophia.")
    hub_api_url: str | None = Field(
        default=None, description="JupyterHub's API URL, to verify tokens; default: JUPYTERHUB_API_URL (set by the "
        "hub for its services), else http://127.0.0.1:8081/hub/api.")
    hub_api_token: SecretRef | None = Field(
        default=None, description="The service's own hub token when run alone; default: JUPYTERHUB_API_TOKEN.")
    service_name: str = Field(default="query", description="The service's name in the hub's services list.")
    required_scope: str | None = Field(
        default="access:services!service=query",
        description="Scope a caller's token must carry; null accepts any valid hub token of a Sophia user.")
    identity_cache_s: float = Field(default=10.0, ge=0, le=300,
                                    description="Seconds a verified token's identity is reused.")
    trusted_services: list[str] = Field(
        default_factory=lambda: ["dashboards", "scheduler"],
        description="Hub services whose token may declare an audience (X-Sophia-Audience) and read as it.")
    viewer_scope: str | None = Field(
        default="access:services!service=dashboards",
        description="A user token lacking required_scope but holding this one (the dashboards service's sign-in "
        "token of a viewer) reads as that viewer; null turns live dashboards' reads off.")
    cache: Literal["memory", "redis", "off"] = Field(default="memory", description="Result cache backend.")
    cache_max_mb: int = Field(default=256, ge=1, description="Size of the in-process result cache.")
    redis_url: str | None = Field(default=None, description="redis://host:6379/0 when cache is redis.")
    redis_password: SecretRef | None = Field(default=None, description="Redis password (credential store).")
    mask_salt: SecretRef | None = Field(
        default=None, description="Salt of hash masking; default: a random salt kept in var_dir/query/mask.salt.")
    max_rows: int = Field(default=1_000_000, ge=1, description="Largest result one query may return.")
    workers: int = Field(default=8, ge=1, le=128, description="Queries the service runs at the same time.")
    snapshot_poll_s: float = Field(default=1.0, gt=0, le=60,
                                   description="How often the service looks for a newly published snapshot.")

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, value: str | None) -> str | None:
        if value is not None:
            if not value.startswith(("redis://", "rediss://", "unix://")):
                raise ValueError(f"redis_url must start with redis://, rediss:// or unix://; got {value!r}")
            if "@" in value.split("//", 1)[1].split("/", 1)[0] and ":" in value.split("//", 1)[1].split("@", 1)[0]:
                raise ValueError("the URL carries an inline password; set query.redis_password: {secret: NAME}")
        return value


class MetricsConfig(Section):
    """``metrics:`` — the metric layer (sophia_lib.metrics)."""

    path: Path | None = Field(default=None, description="metrics.yaml; default: the one shipped with Sophia.")


class SchedulerConfig(Section):
    """``scheduler:`` — the job scheduler (sophia_lib.scheduler, docs/scheduling.md)."""

    schedule: Path | None = Field(default=None, description="schedule.yaml; default: pipelines/schedule.yaml of "
                                  "the Sophia checkout.")
    timezone: str = Field(default="UTC", description="IANA time zone that cron schedules are read in.")
    runs_dir: Path | None = Field(default=None, description="Executed notebooks (.ipynb, .html); default: "
                                  "var_dir/runs.")
    max_parallel: int = Field(default=2, ge=1, le=32, description="Jobs running at the same time.")
    kernel: str = Field(default="python3", description="Jupyter kernel that runs job notebooks.")
    keep_runs: int = Field(default=500, ge=1, description="Executed notebooks kept per job; older files are "
                           "deleted (their run records stay).")

    @field_validator("schedule", "runs_dir")
    @classmethod
    def _relative_to_config(cls, value: Path | None) -> Path | None:
        if value is None or value.is_absolute():
            return value
        return (CONFIG_BASE.get() or Path.cwd()) / value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as UTC or Europe/Paris") from None
        return value


class DeliveryConfig(Section):
    """``delivery:`` — how alerts and reports reach people (sophia_lib.delivery, docs/alerts.md): SMTP mail and
    Slack incoming webhooks. Each attempt is recorded in the app DB; a failed one is retried with backoff."""

    smtp_host: str | None = Field(default=None, description="SMTP server; unset: nothing can be mailed (a mail "
                                  "delivery then fails, recorded, naming this key).")
    smtp_port: int = Field(default=587, ge=1, le=65535, description="SMTP port (587 STARTTLS, 465 SSL, 25 plain).")
    smtp_security: Literal["starttls", "ssl", "none"] = Field(
        default="starttls", description="starttls (upgrade the connection), ssl (TLS from the start), none.")
    smtp_user: str | None = Field(default=None, description="SMTP login; unset: no authentication.")
    smtp_password: SecretRef | None = Field(default=None, description="SMTP password: {secret: NAME}.")
    mail_from: str = Field(default="sophia@localhost", description="From address of every mail.")
    slack_webhooks: dict[str, SecretRef] = Field(
        default_factory=dict, description="Slack channel name → its incoming-webhook URL as {secret: NAME} "
        "(the URL is a credential); rules and reports name the channel, e.g. slack:alerts.")
    timeout_s: float = Field(default=10.0, gt=0, le=300, description="Connect/read timeout of one attempt.")
    retries: int = Field(default=3, ge=0, le=10, description="Retries after a failed attempt.")
    backoff_s: float = Field(default=2.0, ge=0, le=600, description="Wait before the first retry; doubles each time.")


class AlertsConfig(Section):
    """``alerts:`` — alert rules evaluated after each refresh (sophia_lib.alerts, docs/alerts.md)."""

    rules: Path | None = Field(default=None, description="alerts.yaml; default: pipelines/alerts.yaml of the Sophia "
                               "checkout.")
    dashboards_url: str | None = Field(
        default=None, description="Base URL of the dashboards service for the link in each alert; default: "
        "<hub public URL>/services/dashboards.")

    @field_validator("rules")
    @classmethod
    def _relative_to_config(cls, value: Path | None) -> Path | None:
        if value is None or value.is_absolute():
            return value
        return (CONFIG_BASE.get() or Path.cwd()) / value


class DashboardsConfig(Section):
    """``dashboards:`` — the dashboards service (sophia_lib.dashboards, docs/dashboards.md)."""

    registry: Path | None = Field(default=None, description="dashboards.yaml listing the built-in dashboards; "
                                  "default: notebooks/dashboards/dashboards.yaml of the Sophia checkout.")
    snapshots_dir: Path | None = Field(default=None, description="Rendered snapshots and published notebooks; "
                                       "default: var_dir/dashboards.")
    keep_snapshots: int = Field(default=3, ge=1, le=100, description="Rendered snapshots kept (the current one "
                                "and older ones for rollback).")
    kernel: str = Field(default="python3", description="Jupyter kernel that runs dashboard notebooks.")
    render_timeout_s: int = Field(default=300, ge=10, description="Longest one cell of a dashboard may run.")
    render_parallel: int = Field(default=2, ge=1, le=32, description="Dashboards rendered at the same time.")
    live_max_kernels: int = Field(default=20, ge=1, le=1000, description="Live (Voila) kernels at once; more "
                                  "viewers get a 'busy, try again' page.")
    live_idle_cull_s: int = Field(default=600, ge=30, description="A live kernel idle this long is shut down.")

    @field_validator("registry", "snapshots_dir")
    @classmethod
    def _relative_to_config(cls, value: Path | None) -> Path | None:
        if value is None or value.is_absolute():
            return value
        return (CONFIG_BASE.get() or Path.cwd()) / value


TDepartment = Literal["sales", "marketing", "customer_success", "finance", "operations"]


class ReportRecipient(Section):
    """One recipient of a report: where it goes and the role its copy is produced under."""

    to: str = Field(description="email:someone@example.com or slack:CHANNEL (a delivery.slack_webhooks name).")
    role: TRole = Field(description="The role the recipient's copy is produced under (its policy and masks).")
    department: TDepartment | None = Field(
        default=None, description="monthly_department_scorecards only: that department's scorecard; unset: all five.")

    @field_validator("to")
    @classmethod
    def _target(cls, value: str) -> str:
        if not re.match(r"^(email|slack):\S+$", value.strip()):
            raise ValueError(f"{value!r} is not a delivery target; write email:someone@example.com or slack:CHANNEL")
        return value.strip()


class ReportsConfig(Section):
    """``reports:`` — who gets the scheduled reports, and as which role (sophia_lib.reports, docs/reports.md)."""

    audiences: dict[str, list[ReportRecipient]] = Field(
        default_factory=dict, description="Report (job) name → its recipients, each {to, role[, department]}; "
        "each distinct role gets its own copy, executed under that role.")
    tokens: dict[TRole, SecretRef] = Field(
        default_factory=dict, description="Role → {secret: NAME}: the hub API token of a report user in that role's "
        "group, used to execute that role's copies through the query door.")
    output_dir: Path | None = Field(default=None, description="Rendered copies (HTML, PDF, executed notebook); "
                                    "default: var_dir/reports.")
    chromium: Path | None = Field(default=None, description="Chromium that prints PDFs; default: /usr/bin/chromium "
                                  "when present, else Playwright's own browser.")
    render_timeout_s: int = Field(default=300, ge=10, description="Longest one cell of a report notebook may run.")
    keep_runs: int = Field(default=20, ge=1, le=10000, description="Rendered runs kept per report.")

    @field_validator("output_dir", "chromium")
    @classmethod
    def _relative_to_config(cls, value: Path | None) -> Path | None:
        if value is None or value.is_absolute():
            return value
        return (CONFIG_BASE.get() or Path.cwd()) / value


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
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    dashboards: DashboardsConfig = Field(default_factory=DashboardsConfig)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    reports: ReportsConfig = Field(default_factory=ReportsConfig)

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
