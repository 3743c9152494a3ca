"""Secret backends: the base class, the registry by name, and the read-only environment backend.

A backend stores named string values and knows, per name, a version number and when it was last
written. :class:`~sophia_lib.secrets.SecretStore` sits on top and adds the fallback to the
environment, the redaction registry and the error messages that name the fix.

Backends register by name (``register_backend``) or through the ``sophia.secret_backends``
entry-point group; an unknown name lists the valid ones.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import entry_points
from typing import Any, ClassVar

from sophia_lib.errors import ConfigError, SecretError

ENV_PREFIX = "SOPHIA_SECRET_"
"""``SOPHIA_SECRET_<NAME>`` holds secret NAME for the ``env`` backend (CI, containers)."""

ENTRY_POINT_GROUP = "sophia.secret_backends"
SECRET_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")  # same rule as {secret: NAME} in sophia.yaml


@dataclass(frozen=True)
class SecretRecord:
    """One stored secret. ``repr()`` never shows the value."""

    name: str
    value: str = field(repr=False)
    version: int | None = None
    updated_at: str | None = None


def now_iso() -> str:
    """UTC now as ISO 8601 with seconds, the ``updated_at`` format of every backend."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def check_name(name: str) -> str:
    """The name, or SecretError when it could not be written as ``{secret: NAME}`` in sophia.yaml."""
    if not isinstance(name, str) or not SECRET_NAME.match(name):
        raise SecretError(
            f"{name!r} is not a valid secret name.",
            fix="use letters, digits and '_' starting with a letter (e.g. HUBSPOT_REFRESH_TOKEN)",
        )
    return name


def check_value(name: str, value: object) -> str:
    """The value, or SecretError (which never quotes the value) when it is not a non-empty string."""
    if not isinstance(value, str) or not value:
        raise SecretError(f"the value given for secret {name!r} is empty or not text.",
                          fix="pass a non-empty string")
    return value


class SecretBackend:
    """Base of every backend. Override ``get``, ``put``, ``remove``, ``records`` and ``location``.

    ``get`` returns None when the name is absent (never raises for that); ``put`` writes a new
    version and returns the stored record; ``remove`` returns whether the name existed. Errors
    raised here must never contain a secret value (wrap vendor exceptions ``from None``).
    """

    name: ClassVar[str] = "?"
    writable: ClassVar[bool] = True

    @classmethod
    def from_config(cls, config: Any, **options: Any) -> SecretBackend:
        """Build the backend from the Sophia config and explicit options (options win)."""
        return cls(**options)

    def location(self) -> str:
        """Where the secrets live, for messages (a path, a URL); never a secret."""
        raise NotImplementedError

    def get(self, name: str) -> SecretRecord | None:
        raise NotImplementedError

    def put(self, name: str, value: str) -> SecretRecord:
        raise NotImplementedError

    def remove(self, name: str) -> bool:
        raise NotImplementedError

    def records(self) -> list[SecretRecord]:
        """Every stored secret, sorted by name (values included: only the store sees them)."""
        raise NotImplementedError

    def names(self) -> list[str]:
        return [r.name for r in self.records()]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.location()}>"


class EnvBackend(SecretBackend):
    """Read-only: secret NAME is the environment variable ``SOPHIA_SECRET_NAME``."""

    name = "env"
    writable = False

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        self._environ = environ

    @property
    def environ(self) -> Any:
        return os.environ if self._environ is None else self._environ

    def location(self) -> str:
        return f"environment variables {ENV_PREFIX}*"

    def get(self, name: str) -> SecretRecord | None:
        value = self.environ.get(ENV_PREFIX + name)
        return SecretRecord(name, value) if value else None

    def put(self, name: str, value: str) -> SecretRecord:
        raise SecretError(
            f"cannot store secret {name!r}: the env backend is read-only.",
            fix=f"export {ENV_PREFIX}{name}=… in the process environment, or choose a writable backend "
            f"(SOPHIA_SECRETS_BACKEND=file or vault)",
        )

    def remove(self, name: str) -> bool:
        raise SecretError(
            f"cannot delete secret {name!r}: the env backend is read-only.",
            fix=f"unset {ENV_PREFIX}{name} in the process environment",
        )

    def records(self) -> list[SecretRecord]:
        found = [
            SecretRecord(key.removeprefix(ENV_PREFIX), value)
            for key, value in self.environ.items()
            if key.startswith(ENV_PREFIX) and value and SECRET_NAME.match(key.removeprefix(ENV_PREFIX))
        ]
        return sorted(found, key=lambda r: r.name)


_BACKENDS: dict[str, type[SecretBackend]] = {}


def register_backend(cls: type[SecretBackend]) -> type[SecretBackend]:
    """Register a backend class under ``cls.name`` (the latest registration wins); usable as a decorator."""
    _BACKENDS[cls.name] = cls
    return cls


def _load_entry_points() -> None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _BACKENDS:
            _BACKENDS[ep.name] = ep.load()


def backend_names() -> list[str]:
    """Names of every available backend (built-in and from entry points), sorted."""
    _load_entry_points()
    return sorted(_BACKENDS)


def backend_class(name: str) -> type[SecretBackend]:
    """The backend registered as ``name``; ConfigError listing the valid names otherwise."""
    if name not in _BACKENDS:
        _load_entry_points()
    if name not in _BACKENDS:
        valid = sorted(_BACKENDS)
        guess = difflib.get_close_matches(name, valid, n=1)
        hint = f" — did you mean {guess[0]!r}?" if guess else "."
        raise ConfigError(
            f"unknown secrets backend {name!r}{hint} Valid backends: {', '.join(valid)}.",
            fix="set SOPHIA_SECRETS_BACKEND (or pass --backend) to one of those",
        )
    return _BACKENDS[name]


register_backend(EnvBackend)
