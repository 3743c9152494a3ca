"""Load and explain ``sophia.yaml``.

Lookup order for the file: ``SOPHIA_CONFIG`` (must exist), else ``./sophia.yaml``,
else built-in defaults that run the demo. Environment variables override the file.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from sophia_lib.config.typing import (
    CONFIG_BASE,
    AppDbConfig,
    SandboxConfig,
    SecretRef,
    SecretsConfig,
    SophiaConfig,
    SourceConfig,
    SyncConfig,
    WarehouseConfig,
)
from sophia_lib.errors import ConfigError

__all__ = [
    "AppDbConfig",
    "SandboxConfig",
    "SecretRef",
    "yaml_problem",
    "SecretsConfig",
    "SophiaConfig",
    "SourceConfig",
    "SyncConfig",
    "WarehouseConfig",
    "config_path",
    "load_config",
    "redacted",
]

ENV_PREFIX = "SOPHIA_"


def config_path() -> Path | None:
    """The config file in force, or None when the built-in defaults apply."""
    env = os.environ.get("SOPHIA_CONFIG")
    if env:
        path = Path(env)
        if not path.is_file():
            raise ConfigError(
                f"SOPHIA_CONFIG points at {path}, which does not exist.",
                fix="create that file, or unset SOPHIA_CONFIG to use ./sophia.yaml or the built-in defaults",
            )
        return path
    local = Path.cwd() / "sophia.yaml"
    return local if local.is_file() else None


def yaml_problem(exc: yaml.YAMLError) -> str:
    """`` at line L, column C: <problem>`` — where and what, for every "X is not valid YAML" message."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f"{where}: {getattr(exc, 'problem', None) or exc}"


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}.", fix="check the path and its permissions") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"{path} is not valid YAML{yaml_problem(exc)}.",
            fix="fix the YAML syntax there (indentation, a missing ':' or an unclosed quote)",
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path} must be a mapping of sections (warehouse:, app_db:, …), not a {type(data).__name__}.",
            fix="start the file with top-level keys such as 'warehouse:'",
        )
    return data


def load_config(path: str | Path | None = None) -> SophiaConfig:
    """Read, merge with the environment, and validate the configuration.

    Raises ConfigError naming the key, the bad value and the fix.
    """
    file = Path(path) if path is not None else config_path()
    if file is not None and not file.is_file():
        raise ConfigError(f"config file {file} does not exist.", fix="check the path")
    data = _read_yaml(file) if file is not None else {}
    token = CONFIG_BASE.set(file.resolve().parent if file is not None else None)
    try:
        return SophiaConfig(**data)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, file), fix=None) from None
    finally:
        CONFIG_BASE.reset(token)


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = SophiaConfig
    for part in loc:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return model
        annotation = model.model_fields[part].annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
    return model


def _env_name(loc: tuple[Any, ...]) -> str:
    return ENV_PREFIX + "__".join(str(p).upper() for p in loc)


def _explain(exc: ValidationError, file: Path | None) -> str:
    source = str(file) if file else "the built-in defaults"
    lines = [f"invalid configuration ({source} merged with SOPHIA_* environment variables):"]
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        key = ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            parent = _model_at(loc[:-1])
            valid = sorted(parent.model_fields) if parent else []
            guess = difflib.get_close_matches(str(loc[-1]), valid, n=1)
            hint = f" — did you mean '{guess[0]}'?" if guess else ""
            lines.append(f"- {key}: unknown key{hint or '.'} Valid keys here: {', '.join(valid)}.")
            lines.append("  fix: rename or remove it (typos are errors so no setting is silently ignored)")
            continue
        if loc and loc[-1] == "[key]":
            valid = [str(v) for v in (err.get("ctx") or {}).get("expected", "").replace("'", "").replace(
                " or ", ", ").split(", ") if v]
            name = str(loc[-2])
            guess = difflib.get_close_matches(name, valid, n=1)
            hint = f" — did you mean '{guess[0]}'?" if guess else "."
            lines.append(f"- {'.'.join(str(p) for p in loc[:-1])}: unknown name{hint} Valid: {', '.join(valid)}.")
            lines.append("  fix: rename or remove it")
            continue
        value = err.get("input")
        sensitive = any(word in key for word in ("password", "secret", "token"))
        if err["type"] == "missing":
            shown = "(missing)"
        else:
            shown = "(hidden)" if sensitive else repr(_hide_url_password(value))
        message = err["msg"].removeprefix("Value error, ")
        lines.append(f"- {key} = {shown}: {message}.")
        lines.append(f"  fix: correct '{key}' in {source}, or set {_env_name(loc)}" if not sensitive
                     else f"  fix: set '{key}' to {{secret: NAME}} in {source}")
    return "\n".join(lines)


def _hide_url_password(value: Any) -> Any:
    if isinstance(value, str) and "://" in value and "@" in value:
        from sqlalchemy.engine import make_url

        try:
            return make_url(value).render_as_string(hide_password=True)
        except Exception:
            return "(a URL, hidden because it may carry a password)"
    return value


def redacted(config: SophiaConfig) -> dict[str, Any]:
    """The resolved config as plain data, secrets shown only as their reference names."""

    def walk(value: Any) -> Any:
        if isinstance(value, SecretRef):
            return str(value)
        if isinstance(value, BaseModel):
            return {name: walk(getattr(value, name)) for name in type(value).model_fields}
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if hasattr(value, "isoformat"):
            return value.isoformat()
        if isinstance(value, list | tuple):
            return [walk(v) for v in value]
        return value

    return walk(config)
