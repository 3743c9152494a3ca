"""The data policy (``policy.yaml``): per role, which datasets, which rows, which columns are masked.

Read once by the query service and validated here, so a typo or an unsafe rule stops the service
with a message naming the key and the fix instead of silently exposing data. Patterns are globs:
datasets ``schema.table`` (``marts.*``), columns ``schema.table.column`` where a shorter pattern
matches the last parts (``email`` and ``*.email`` are the column anywhere, ``people.email`` that
column of any ``people`` table). Rules are checked in order; the first mask rule naming a column
decides its style.

User attributes come from hub group names (``sophia-region-emea`` → ``region = emea`` with
``group_prefix: sophia-region-``) and are bound as parameters into row-filter predicates, never
formatted into SQL.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import sqlglot
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlglot import exp

from sophia_lib.config import yaml_problem
from sophia_lib.config.typing import TRole
from sophia_lib.query.errors import ForbiddenError, PolicyError
from sophia_lib.roles import ROLES

DEFAULT_POLICY = Path(__file__).with_name("policy.yaml")
TMaskStyle = Literal["hash", "partial", "null"]
ATTRIBUTE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
RAW_PROBE = "raw_probe"


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class AttributeRule(_Rule):
    """A user attribute taken from the user's hub groups."""

    group_prefix: Annotated[str, Field(min_length=1, description="Groups starting with this give the value.")]
    description: str = ""


class MaskRule(_Rule):
    """Columns whose values a role sees masked."""

    columns: Annotated[list[str], Field(min_length=1, description="Column patterns (schema.table.column).")]
    except_: list[str] = Field(default_factory=list, alias="except", description="Column patterns left as is.")
    style: TMaskStyle = Field(description="hash (salted sha256 prefix), partial (j***@acme.com, ***1234), null.")

    @field_validator("columns", "except_")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if not pattern or len(pattern.split(".")) > 3:
                raise ValueError(f"column pattern {pattern!r} must be column, table.column or schema.table.column")
        return [p.lower() for p in value]

    def matches(self, schema: str, table: str, column: str) -> bool:
        name = f"{schema}.{table}.{column}".lower()
        return _any_column(self.columns, name) and not _any_column(self.except_, name)


class RowFilter(_Rule):
    """A predicate over a table's own columns that every row the role sees must satisfy."""

    tables: Annotated[list[str], Field(min_length=1, description="Dataset patterns (schema.table) it applies to.")]
    predicate: Annotated[str, Field(min_length=1, description="SQL condition; :attribute binds a user attribute.")]
    missing_attribute: Literal["no_rows", "skip"] = Field(
        default="no_rows", description="A user without the attribute sees no rows (no_rows) or all rows (skip).")
    missing_column: Literal["deny", "skip"] = Field(
        default="deny", description="A matched table lacking a column the predicate needs is refused (deny) or "
        "left unfiltered (skip).")
    description: str = ""

    @functools.cached_property
    def parsed(self) -> exp.Expression:
        return sqlglot.parse_one(self.predicate, read="duckdb")

    @functools.cached_property
    def attributes(self) -> tuple[str, ...]:
        return tuple(sorted({str(p.this) for p in self.parsed.find_all(exp.Placeholder)}))

    @functools.cached_property
    def columns(self) -> tuple[str, ...]:
        return tuple(sorted({c.name.lower() for c in self.parsed.find_all(exp.Column)}))

    @model_validator(mode="after")
    def _predicate(self) -> RowFilter:
        try:
            parsed = sqlglot.parse(self.predicate, read="duckdb")
        except sqlglot.errors.ParseError as exc:
            raise ValueError(f"predicate {self.predicate!r} is not valid SQL: {_first_line(exc)}") from None
        if len(parsed) != 1 or parsed[0] is None or isinstance(parsed[0], exp.Query | exp.Command):
            raise ValueError(f"predicate {self.predicate!r} must be one condition, e.g. region = :region")
        for placeholder in parsed[0].find_all(exp.Placeholder):
            if not ATTRIBUTE.match(str(placeholder.this or "")):
                raise ValueError(f"predicate {self.predicate!r}: parameters are :attribute names (lower case)")
        for table_pattern in self.tables:
            _check_dataset_pattern(table_pattern)
        return self

    def applies_to(self, schema: str, table: str) -> bool:
        return _any_dataset(self.tables, schema, table)


class RolePolicy(_Rule):
    """What one role may read."""

    description: str = ""
    datasets: list[str] = Field(default_factory=list, description="Dataset patterns (schema.table) it may read.")
    masks: list[MaskRule] = Field(default_factory=list)
    row_filters: list[RowFilter] = Field(default_factory=list)

    @field_validator("datasets")
    @classmethod
    def _datasets(cls, value: list[str]) -> list[str]:
        for pattern in value:
            _check_dataset_pattern(pattern)
        return [p.lower() for p in value]

    def allows(self, schema: str, table: str) -> bool:
        return _any_dataset(self.datasets, schema, table)


class Policy(_Rule):
    """The whole of policy.yaml."""

    version: Literal[1] = 1
    attributes: dict[str, AttributeRule] = Field(default_factory=dict)
    roles: dict[TRole, RolePolicy]

    @model_validator(mode="after")
    def _complete_and_safe(self) -> Policy:
        for name in self.attributes:
            if not ATTRIBUTE.match(name):
                raise ValueError(f"attribute name {name!r}: lower-case letters, digits and '_'")
        missing = [r for r in ROLES if r not in self.roles]
        if missing:
            raise ValueError(f"no entry for role(s) {', '.join(missing)}; every role needs one (an empty "
                             "datasets list means that role reads nothing)")
        for role, rules in self.roles.items():
            if role != "super_user":
                unsafe = [p for p in rules.datasets if fnmatch.fnmatchcase(RAW_PROBE, p.split(".")[0])]
                if unsafe:
                    raise ValueError(f"roles.{role}.datasets: {', '.join(unsafe)} would open the raw_* source "
                                     "tables, which only super_user may read; name core.* / marts.* instead")
            for rule in rules.row_filters:
                unknown = [a for a in rule.attributes if a not in self.attributes]
                if unknown:
                    raise ValueError(f"roles.{role}.row_filters: predicate {rule.predicate!r} uses "
                                     f":{', :'.join(unknown)}, not declared under attributes:")
        return self

    def scope(self, role: TRole, groups: Iterable[str]) -> PolicyScope:
        """The rules in force for a member of ``groups`` holding ``role``."""
        groups = list(groups)
        attributes = {name: tuple(sorted({g[len(a.group_prefix):] for g in groups if g.startswith(a.group_prefix)
                                          and len(g) > len(a.group_prefix)}))
                      for name, a in self.attributes.items()}
        return PolicyScope(role, self.roles[role], {k: v for k, v in attributes.items() if v})


@dataclass(frozen=True)
class TableRules:
    """How one base table is exposed to one scope: masked columns (name → style) and row predicates."""

    masks: Mapping[str, TMaskStyle]
    predicates: tuple[exp.Expression, ...]
    params: Mapping[str, Any]


@dataclass(frozen=True)
class PolicyScope:
    """A role's rules with one user's attribute values: everyone with the same scope sees the same data,
    so the scope (with the snapshot and the query) is the cache key."""

    role: TRole
    rules: RolePolicy
    attributes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        attrs = ";".join(f"{k}={','.join(v)}" for k, v in sorted(self.attributes.items()))
        return f"{self.role}|{attrs}"

    def allows(self, schema: str, table: str) -> bool:
        return self.rules.allows(schema, table)

    def table_rules(self, schema: str, table: str, columns: Iterable[str], param_prefix: str) -> TableRules:
        """Masks and row predicates for ``schema.table`` (with these columns); raises ForbiddenError when
        a row filter cannot be applied to it (fail closed)."""
        columns = [c.lower() for c in columns]
        masks: dict[str, TMaskStyle] = {}
        for column in columns:
            rule = next((m for m in self.rules.masks if m.matches(schema, table, column)), None)
            if rule is not None:
                masks[column] = rule.style
        predicates: list[exp.Expression] = []
        params: dict[str, Any] = {}
        for n, rule in enumerate(self.rules.row_filters):
            if not rule.applies_to(schema, table):
                continue
            lacking = [c for c in rule.columns if c not in columns]
            if lacking:
                if rule.missing_column == "skip":
                    continue
                raise ForbiddenError(
                    f"{schema}.{table} is not readable by role {self.role}: its row filter "
                    f"({rule.predicate}) needs column(s) {', '.join(lacking)}, which the table lacks.",
                    fix="ask a super user to add the column or change the row filter in policy.yaml")
            if any(not self.attributes.get(a) for a in rule.attributes):
                if rule.missing_attribute == "skip":
                    continue
                predicates.append(exp.false())
                continue
            predicates.append(_bind(rule, self.attributes, f"{param_prefix}f{n}_", params))
        return TableRules(masks, tuple(predicates), params)


def _bind(rule: RowFilter, attributes: Mapping[str, tuple[str, ...]], prefix: str,
          params: dict[str, Any]) -> exp.Expression:
    """The predicate once per combination of attribute values, OR-ed, each placeholder renamed uniquely."""
    combos: list[dict[str, str]] = [{}]
    for name in rule.attributes:
        combos = [{**c, name: v} for c in combos for v in attributes[name]]
    alternatives = []
    for i, combo in enumerate(combos):
        predicate = rule.parsed.copy()
        for placeholder in list(predicate.find_all(exp.Placeholder)):
            attr = str(placeholder.this)
            param = f"{prefix}{i}_{attr}"
            params[param] = combo[attr]
            placeholder.replace(exp.Placeholder(this=param))
        alternatives.append(exp.paren(predicate, copy=False))
    return exp.or_(*alternatives, copy=False) if len(alternatives) > 1 else alternatives[0]


def _check_dataset_pattern(pattern: str) -> None:
    if len(pattern.split(".")) != 2 or not all(pattern.split(".")):
        raise ValueError(f"dataset pattern {pattern!r} must be schema.table, e.g. marts.* or core.accounts")


def _any_dataset(patterns: Iterable[str], schema: str, table: str) -> bool:
    name = f"{schema}.{table}".lower()
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _any_column(patterns: Iterable[str], name: str) -> bool:
    for pattern in patterns:
        parts = pattern.count(".") + 1
        full = pattern if parts == 3 else "*." * (3 - parts) + pattern
        if fnmatch.fnmatchcase(name, full):
            return True
    return False


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def parse_policy(data: Any, source: str = "policy.yaml") -> Policy:
    """Validate a policy mapping; PolicyError names each bad key."""
    if not isinstance(data, dict):
        raise PolicyError(f"{source} must be a mapping with roles: (and optionally attributes:).",
                          fix="start the file with 'roles:'; see docs/security.md")
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
            message = err["msg"].removeprefix("Value error, ")
            problems.append(f"  {loc or '(top)'}: {message}")
        raise PolicyError(f"{source} is not a valid policy:\n" + "\n".join(problems),
                          fix="correct those keys; docs/security.md describes every one") from None


def load_policy(path: str | Path | None = None) -> Policy:
    """Read and validate ``path`` (default: the policy shipped with Sophia)."""
    file = Path(path) if path is not None else DEFAULT_POLICY
    try:
        text = file.read_text()
    except OSError as exc:
        raise PolicyError(f"cannot read the policy file {file}: {exc.strerror}.",
                          fix="set query.policy in sophia.yaml to an existing file, or leave it out for the "
                          "shipped policy") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{file} is not valid YAML{yaml_problem(exc)}.",
                          fix="fix the YAML syntax there") from None
    return parse_policy(data, str(file))
