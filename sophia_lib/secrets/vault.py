"""HashiCorp Vault backend (production): the KV version 2 secrets engine, through ``hvac``.

Secret NAME lives at ``<mount>/data/<prefix>/NAME`` as ``{"value": …}``; Vault keeps the versions
and times. Settings, explicit options first: ``url`` (config ``secrets.vault_url``, else
``VAULT_ADDR``), ``mount`` (``secrets.vault_mount``, default ``secret``), ``prefix``
(``secrets.vault_prefix``, default ``sophia``) and ``token`` (``VAULT_TOKEN``; never in config).
The token's policy needs create/read/update/delete/list on ``<mount>/data/<prefix>/*`` and
``<mount>/metadata/<prefix>/*``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any, TypeVar

from sophia_lib.errors import MissingDependencyError, SecretError, TransientError
from sophia_lib.secrets import redact
from sophia_lib.secrets.backends import SecretBackend, SecretRecord, register_backend

DEFAULT_MOUNT = "secret"
DEFAULT_PREFIX = "sophia"
T = TypeVar("T")


class VaultUnavailableError(TransientError, ConnectionError):
    """Vault does not answer, is sealed, or is throttling."""

    reason = "vault_unavailable"


def _hvac() -> Any:
    try:
        import hvac
    except ImportError:
        raise MissingDependencyError("hvac", "The vault secrets backend") from None
    return hvac


def _vault_time(value: str | None) -> str | None:
    """Vault's RFC 3339 time with nanoseconds, as ISO 8601 to the second like the other backends."""
    if not value:
        return None
    return re.sub(r"\.\d+", "", value).replace("Z", "+00:00")


def _errors(err: Any, default: str) -> str:
    """Vault's own error strings (never data), without their trailing full stops."""
    return ", ".join(str(e).rstrip(".") for e in (err.errors or [])) or default


def _setting(config: Any, key: str) -> Any:
    section = getattr(config, "secrets", None)  # the lead's `secrets:` section, once it exists
    return getattr(section, key, None) if section is not None else None


@register_backend
class VaultBackend(SecretBackend):
    """Secrets in Vault's KV v2 engine (see the module docstring)."""

    name = "vault"

    def __init__(self, url: str | None = None, *, token: str | None = None, mount: str = DEFAULT_MOUNT,
                 prefix: str = DEFAULT_PREFIX, timeout: float = 15.0) -> None:
        hvac = _hvac()
        self.url = url or os.environ.get("VAULT_ADDR")
        if not self.url:
            raise SecretError("the vault secrets backend has no Vault URL.",
                              fix="set secrets.vault_url in sophia.yaml, or export VAULT_ADDR=https://vault…:8200")
        token = token or os.environ.get("VAULT_TOKEN")
        if not token:
            raise SecretError(f"the vault secrets backend has no token for {self.url}.",
                              fix="export VAULT_TOKEN=… (a token whose policy covers the Sophia paths)")
        redact.remember(token)
        self.mount = mount.strip("/")
        self.prefix = prefix.strip("/")
        self._client = hvac.Client(url=self.url, token=token, timeout=timeout)
        self._kv = self._client.secrets.kv.v2
        self._exc = hvac.exceptions

    @classmethod
    def from_config(cls, config: Any, **options: Any) -> VaultBackend:
        for option, key in (("url", "vault_url"), ("mount", "vault_mount"), ("prefix", "vault_prefix")):
            if options.get(option) is None and _setting(config, key) is not None:
                options[option] = _setting(config, key)
        return cls(**{k: v for k, v in options.items() if v is not None})

    def location(self) -> str:
        return f"Vault {self.url} {self.mount}/{self.prefix}"

    def _path(self, name: str = "") -> str:
        return "/".join(p for p in (self.prefix, name) if p)

    def _call(self, what: str, fn: Callable[..., T], **kwargs: Any) -> T | None:
        """Run one hvac call, turning its errors into Sophia errors that never echo a response body.

        None when the path does not exist (Vault answers 404 with an empty ``errors`` list); a 404
        that carries errors ("no handler for route") means the mount itself is missing.
        """
        import requests

        exc = self._exc
        try:
            return fn(mount_point=self.mount, **kwargs)
        except exc.InvalidPath as err:
            if not err.errors:
                return None
            raise SecretError(f"Vault at {self.url} could not {what}: {_errors(err, 'not found')}.",
                              fix=f"check the KV v2 engine is mounted at '{self.mount}' "
                              f"(vault secrets enable -path={self.mount} kv-v2)") from None
        except (exc.Forbidden, exc.Unauthorized) as err:
            raise SecretError(
                f"Vault at {self.url} refused to {what} ({_errors(err, 'permission denied')}).",
                fix=f"check that VAULT_TOKEN is valid and that its policy allows this on {self.mount}/data/"
                f"{self.prefix}/* and {self.mount}/metadata/{self.prefix}/*",
            ) from None
        except (exc.VaultDown, exc.InternalServerError, exc.BadGateway, exc.RateLimitExceeded,
                exc.VaultNotInitialized) as err:
            raise VaultUnavailableError(
                f"Vault at {self.url} could not {what}: {type(err).__name__} "
                f"({_errors(err, 'no detail')}).",
                fix="retry later; check `vault status` (sealed? standby without a leader?)",
            ) from None
        except requests.RequestException as err:
            raise VaultUnavailableError(f"cannot reach Vault at {self.url} to {what} ({type(err).__name__}).",
                                        fix="check secrets.vault_url / VAULT_ADDR and that Vault is running") from None
        except exc.VaultError as err:  # 400 and the like: Vault's own words, which never carry data
            raise SecretError(f"Vault at {self.url} could not {what}: {_errors(err, str(err.args[0]))}.",
                              fix=f"check the KV v2 engine is mounted at '{self.mount}' "
                              f"(vault secrets enable -path={self.mount} kv-v2)") from None

    def get(self, name: str) -> SecretRecord | None:
        answer = self._call(f"read secret {name!r}", self._kv.read_secret_version, path=self._path(name),
                            raise_on_deleted_version=True)
        return self._from_answer(name, answer)

    def _from_answer(self, name: str, answer: Any) -> SecretRecord | None:
        if answer is None:
            return None
        data = (answer.get("data") or {}).get("data") or {}
        meta = (answer.get("data") or {}).get("metadata") or {}
        value = data.get("value")
        if not isinstance(value, str):
            raise SecretError(
                f"Vault entry {self.mount}/{self._path(name)} has no text field 'value'.",
                fix=f"store it through Sophia: sophia credentials set {name}",
            )
        return SecretRecord(name, value, meta.get("version"), _vault_time(meta.get("created_time")))

    def put(self, name: str, value: str) -> SecretRecord:
        answer = self._call(f"write secret {name!r}", self._kv.create_or_update_secret, path=self._path(name),
                            secret={"value": value})
        meta = (answer or {}).get("data") or {}
        return SecretRecord(name, value, meta.get("version"), _vault_time(meta.get("created_time")))

    def remove(self, name: str) -> bool:
        if self._metadata(name) is None:
            return False
        self._call(f"delete secret {name!r}", self._kv.delete_metadata_and_all_versions, path=self._path(name))
        return True

    def _metadata(self, name: str) -> dict[str, Any] | None:
        return self._call(f"read the metadata of {name!r}", self._kv.read_secret_metadata, path=self._path(name))

    def names(self) -> list[str]:
        answer = self._call("list secrets", self._kv.list_secrets, path=self._path())
        keys = ((answer or {}).get("data") or {}).get("keys") or []
        return sorted(k for k in keys if not k.endswith("/"))  # "folder/" entries are deeper paths

    def records(self) -> list[SecretRecord]:
        found = []
        for name in self.names():
            record = self.get(name)
            if record is not None:  # deleted between the list and the read
                found.append(record)
        return found
