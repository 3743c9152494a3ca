"""The credential store: secrets by name, encrypted at rest, never in config files, logs or tracebacks.

``open_store()`` gives a :class:`SecretStore` over the configured backend — ``file`` (default: an
encrypted ``<var_dir>/secrets.enc``), ``vault`` (HashiCorp Vault KV v2) or ``env`` (read-only
``SOPHIA_SECRET_<NAME>``) — with the env backend as a read fallback, so ``SOPHIA_SECRET_X`` always
works in CI and containers. :func:`resolve` turns a ``{secret: NAME}`` reference from sophia.yaml
into its value the same way.

Backend choice, first found: the ``backend`` argument, ``SOPHIA_SECRETS_BACKEND``, the config's
``secrets.backend``, ``file``. Every value the store hands out is remembered (in memory) and masked
as ``***`` in log records from then on (:class:`RedactSecrets`).
"""

from __future__ import annotations

import os
from typing import Any, TypedDict

from sophia_lib.config.typing import SecretRef, SophiaConfig
from sophia_lib.errors import SecretError
from sophia_lib.secrets import redact
from sophia_lib.secrets.backends import (
    ENV_PREFIX,
    EnvBackend,
    SecretBackend,
    SecretRecord,
    backend_class,
    backend_names,
    check_name,
    check_value,
    register_backend,
)
from sophia_lib.secrets.file import KEY_ENV, FileBackend, SecretStoreBusyError
from sophia_lib.secrets.redact import RedactSecrets
from sophia_lib.secrets.vault import VaultBackend, VaultUnavailableError

__all__ = [
    "BACKEND_ENV",
    "ENV_PREFIX",
    "KEY_ENV",
    "EnvBackend",
    "FileBackend",
    "RedactSecrets",
    "SecretBackend",
    "SecretInfo",
    "SecretRecord",
    "SecretStore",
    "SecretStoreBusyError",
    "VaultBackend",
    "VaultUnavailableError",
    "backend_names",
    "open_store",
    "register_backend",
    "resolve",
]

BACKEND_ENV = "SOPHIA_SECRETS_BACKEND"
DEFAULT_BACKEND = "file"


class SecretInfo(TypedDict):
    """What may be shown about a secret: never its value."""

    name: str
    backend: str
    updated_at: str | None
    version: int | None


class SecretStore:
    """Named secrets in one writable (or read-only) backend, with read fallbacks.

    ``get`` looks in the backend, then in each fallback (the env backend); ``set``, ``rotate`` and
    ``delete`` only touch the backend. Values leave only through ``get``; everything else returns
    :class:`SecretInfo`.
    """

    def __init__(self, backend: SecretBackend, fallbacks: list[SecretBackend] | None = None) -> None:
        self.backend = backend
        self.fallbacks = list(fallbacks or [])

    @property
    def backend_name(self) -> str:
        return self.backend.name

    def location(self) -> str:
        return self.backend.location()

    def __repr__(self) -> str:
        return f"<SecretStore {self.backend.name}: {self.backend.location()}>"

    def _info(self, record: SecretRecord, backend: SecretBackend) -> SecretInfo:
        return SecretInfo(name=record.name, backend=backend.name, updated_at=record.updated_at,
                          version=record.version)

    def _missing(self, name: str) -> SecretError:
        looked = [f"environment variable {ENV_PREFIX}{name}" if isinstance(b, EnvBackend) else b.location()
                  for b in (self.backend, *self.fallbacks)]
        if self.backend.writable:
            fix = f"sophia credentials set {name}   (or export {ENV_PREFIX}{name}=… for this process only)"
        else:
            fix = f"export {ENV_PREFIX}{name}=…"
        return SecretError(f"secret {name!r} is not set (looked in: {'; '.join(looked)}).", fix=fix,
                           reason="secret_missing")

    def lookup(self, name: str) -> tuple[SecretRecord, SecretBackend] | None:
        """The record and the backend that holds it, or None. Values are remembered for redaction."""
        check_name(name)
        for backend in (self.backend, *self.fallbacks):
            record = backend.get(name)
            if record is not None:
                redact.remember(record.value)
                return record, backend
        return None

    def get(self, name: str) -> str:
        """The value of secret ``name``. Never log or print it (logs mask it as ``***`` anyway)."""
        found = self.lookup(name)
        if found is None:
            raise self._missing(name)
        return found[0].value

    def set(self, name: str, value: str) -> SecretInfo:
        """Store ``value`` as a new version of ``name`` (version 1 when new)."""
        check_name(name)
        check_value(name, value)
        redact.remember(value)
        return self._info(self.backend.put(name, value), self.backend)

    def rotate(self, name: str, new_value: str) -> SecretInfo:
        """Replace an existing secret's value (a new version); SecretError when ``name`` is not stored yet."""
        check_name(name)
        check_value(name, new_value)
        if self.backend.get(name) is None:
            raise SecretError(f"cannot rotate secret {name!r}: it is not in {self.backend.location()}.",
                              fix=f"store it first: sophia credentials set {name}", reason="secret_missing")
        redact.remember(new_value)
        return self._info(self.backend.put(name, new_value), self.backend)

    def delete(self, name: str) -> None:
        """Remove ``name`` from the backend; SecretError when it is not there."""
        check_name(name)
        if not self.backend.remove(name):
            raise SecretError(f"cannot delete secret {name!r}: it is not in {self.backend.location()}.",
                              fix="see the stored names with `sophia credentials list`", reason="secret_missing")

    def names(self) -> list[str]:
        """Names stored in the backend (not the fallbacks), sorted."""
        return self.backend.names()

    def describe(self) -> list[SecretInfo]:
        """Name, backend, updated_at and version of every secret the store can see, backend first.

        A fallback's entries are listed only where the backend does not hold the same name.
        """
        seen: set[str] = set()
        rows: list[SecretInfo] = []
        for backend in (self.backend, *self.fallbacks):
            for record in backend.records():
                if record.name not in seen:
                    seen.add(record.name)
                    rows.append(self._info(record, backend))
        return rows


def _backend_name(config: SophiaConfig | None, backend: str | None) -> str:
    if backend:
        return backend
    if os.environ.get(BACKEND_ENV):
        return os.environ[BACKEND_ENV]
    section = getattr(config, "secrets", None)  # the lead's `secrets:` config section, once it exists
    return getattr(section, "backend", None) or DEFAULT_BACKEND


def open_store(config: SophiaConfig | None = None, *, backend: str | None = None, **options: Any) -> SecretStore:
    """The credential store for ``config`` (default: ``load_config()``).

    ``backend`` names the backend (see the module docstring for the default); ``options`` go to the
    backend's constructor (file: ``var_dir``, ``key``; vault: ``url``, ``mount``, ``prefix``,
    ``token``). Installs log redaction for the whole process.
    """
    if config is None:
        from sophia_lib.config import load_config

        config = load_config()
    redact.install()
    name = _backend_name(config, backend)
    primary = backend_class(name).from_config(config, **options)
    fallbacks: list[SecretBackend] = [] if isinstance(primary, EnvBackend) else [EnvBackend()]
    return SecretStore(primary, fallbacks)


def resolve(ref: SecretRef, config: SophiaConfig | None = None) -> str:
    """The value behind a ``{secret: NAME}`` reference: the configured backend, then ``SOPHIA_SECRET_<NAME>``.

    Pass the config in force when you have it (the store's location depends on its ``var_dir``).
    Never log or print the value.
    """
    return open_store(config).get(ref.secret)


def sandbox_secret_name(vendor: str, key: str) -> str:
    """Credential-store name of a sandbox demo credential or option (``SANDBOX_<VENDOR>_<KEY>``): written by
    the sandbox when it starts, read by the sync when ``sandbox.feeds_sources`` is on."""
    return f"SANDBOX_{vendor}_{key}".upper()
