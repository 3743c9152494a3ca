"""Which dashboards exist and who may open them.

Built-in dashboards are declared in ``dashboards.yaml`` (beside the notebooks); dashboards analysts
publish come from the app database (:class:`~sophia_lib.appdb.models.PublishedDashboard`, newest live
version of each slug). A dashboard is visible to the members of its audience groups, and to super users.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import select

from sophia_lib.appdb import AppDb
from sophia_lib.appdb.models import PublishedDashboard
from sophia_lib.config.typing import SophiaConfig, TRole
from sophia_lib.errors import ConfigError

REPO_REGISTRY = Path(__file__).resolve().parents[2] / "notebooks" / "dashboards" / "dashboards.yaml"
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slug: str = Field(description="URL name: lowercase letters, digits and '-'.")
    title: str = Field(min_length=1)
    notebook: str = Field(description="Notebook file, relative to dashboards.yaml.")
    description: str = ""
    audience: list[str] = Field(min_length=1, description="Hub groups that may open it.")

    @field_validator("slug")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not SLUG.match(value):
            raise ValueError(f"slug {value!r}: use lowercase letters, digits and '-' (e.g. sales-emea)")
        return value


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    dashboards: list[_Entry]


@dataclass(frozen=True)
class Dashboard:
    """One dashboard the service lists. ``version`` and ``author`` are set for published ones."""

    slug: str
    title: str
    notebook: Path
    audience: tuple[str, ...]
    description: str = ""
    author: str | None = None
    version: int | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def published(self) -> bool:
        return self.author is not None

    def visible_to(self, groups: Iterable[str], role: TRole | None) -> bool:
        return role == "super_user" or bool(set(groups) & set(self.audience))


def registry_path(config: SophiaConfig) -> Path:
    return config.dashboards.registry or REPO_REGISTRY


def builtin(config: SophiaConfig) -> list[Dashboard]:
    """The dashboards of dashboards.yaml; a bad file names the key and the fix."""
    path = registry_path(config)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"dashboards registry {path} does not exist.",
                          fix="set dashboards.registry to your dashboards.yaml, or restore the shipped one") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}", fix="fix the YAML syntax") from None
    try:
        parsed = _File.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path}: {problems}", fix="see docs/dashboards.md for the format") from None
    seen: set[str] = set()
    out = []
    for entry in parsed.dashboards:
        if entry.slug in seen:
            raise ConfigError(f"{path}: slug {entry.slug!r} is listed twice.", fix="give each dashboard its own slug")
        seen.add(entry.slug)
        notebook = (path.parent / entry.notebook).resolve()
        if not notebook.is_file():
            raise ConfigError(f"{path}: dashboard {entry.slug!r} names {entry.notebook}, which does not exist.",
                              fix="correct the notebook path (relative to dashboards.yaml)")
        out.append(Dashboard(entry.slug, entry.title, notebook, tuple(entry.audience), entry.description))
    return out


def published(app_db: AppDb) -> list[Dashboard]:
    """The newest live (not unpublished) version of each published slug."""
    with app_db.session() as s:
        rows = s.scalars(select(PublishedDashboard).order_by(PublishedDashboard.slug,
                                                             PublishedDashboard.version.desc())).all()
    out: dict[str, Dashboard] = {}
    for row in rows:
        if row.slug in out:
            continue
        if row.unpublished_at is not None:
            out[row.slug] = None  # type: ignore[assignment]  # newest version withdrawn: slug is down
            continue
        out[row.slug] = Dashboard(row.slug, row.title, Path(row.notebook_path), tuple(row.audience_groups),
                                  author=row.author, version=row.version)
    return [d for d in out.values() if d is not None]


def load(config: SophiaConfig, app_db: AppDb | None = None) -> dict[str, Dashboard]:
    """Every dashboard by slug: built-in ones, then published ones (which may not reuse a built-in slug)."""
    dashboards = {d.slug: d for d in builtin(config)}
    if app_db is not None:
        for d in published(app_db):
            dashboards.setdefault(d.slug, d)
    return dashboards


def visible(dashboards: dict[str, Dashboard], groups: Iterable[str], role: TRole | None) -> list[Dashboard]:
    groups = list(groups)
    return [d for d in dashboards.values() if d.visible_to(groups, role)]
