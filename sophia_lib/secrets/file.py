"""The default backend: one Fernet-encrypted file, ``<var_dir>/secrets.enc``.

On disk the file is a small JSON envelope ``{"format": 1, "key_id": …, "token": …}``. ``token`` is
the Fernet encryption (AES-128-CBC + HMAC-SHA256, from ``cryptography``) of the whole JSON map
name → {value, updated_at, version}, so names are hidden too. ``key_id`` is a one-way HMAC
fingerprint of the key; it lets us tell "encrypted with another key" apart from "damaged file",
which Fernet alone reports the same way.

The key comes from ``SOPHIA_SECRETS_KEY`` (a urlsafe-base64 Fernet key) or else from
``<var_dir>/secrets.key``, created 0600 on the first write. A key file readable by group or others
is refused. Writes take an inter-process lock, write a 0600 temp file and ``os.replace`` it, so a
reader never sees half a file; any error (wrong key, damaged file) is raised before anything is
written, so nothing is ever overwritten on error.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes, hmac
from filelock import FileLock
from filelock import Timeout as LockTimeout

from sophia_lib.errors import SecretError, TransientError
from sophia_lib.secrets.backends import SecretBackend, SecretRecord, now_iso, register_backend

KEY_ENV = "SOPHIA_SECRETS_KEY"
FORMAT = 1
LOCK_TIMEOUT_S = 10.0
GENERATE_KEY = 'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'


class SecretStoreBusyError(TransientError, TimeoutError):
    """Another process holds the credential store's write lock."""

    reason = "secret_store_busy"


def key_id(key: bytes) -> str:
    """A short public fingerprint of a Fernet key (HMAC-SHA256 keyed by it); reveals nothing of the key."""
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(b"sophia secrets key id")
    return mac.finalize()[:8].hex()


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":  # pragma: no cover - directories cannot be opened on Windows
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@register_backend
class FileBackend(SecretBackend):
    """Secrets in ``<var_dir>/secrets.enc``, encrypted with a Fernet key (see the module docstring)."""

    name = "file"

    def __init__(self, var_dir: str | Path, *, key: str | None = None, lock_timeout: float = LOCK_TIMEOUT_S) -> None:
        self.folder = Path(var_dir)
        self.path = self.folder / "secrets.enc"
        self.key_path = self.folder / "secrets.key"
        self._key_override = key
        self.lock_timeout = lock_timeout

    @classmethod
    def from_config(cls, config: Any, **options: Any) -> FileBackend:
        return cls(options.pop("var_dir", config.var_dir), **options)

    def location(self) -> str:
        return str(self.path)

    # -- the key ---------------------------------------------------------------------------------

    def _env_key(self) -> bytes | None:
        raw = self._key_override if self._key_override is not None else os.environ.get(KEY_ENV)
        if not raw:
            return None
        try:
            Fernet(raw)
        except (ValueError, TypeError):  # the text is not quoted: it may be a real key with a typo
            raise SecretError(
                f"{KEY_ENV} is not a valid key (it must be 32 bytes in urlsafe base64, 44 characters).",
                fix=f"set {KEY_ENV} to the key used before, or generate a new one with: {GENERATE_KEY}",
            ) from None
        return raw.encode()

    def _read_key_file(self) -> bytes:
        if os.name == "posix":
            mode = stat.S_IMODE(self.key_path.stat().st_mode)
            if mode & 0o077:
                raise SecretError(
                    f"refusing to use the key file {self.key_path}: it is readable by group or others "
                    f"(mode {mode:04o}).",
                    fix=f"chmod 600 {self.key_path}",
                )
        raw = self.key_path.read_bytes().strip()
        try:
            Fernet(raw)
        except (ValueError, TypeError):
            raise SecretError(
                f"the key file {self.key_path} does not hold a valid key.",
                fix=f"restore it from backup, or set {KEY_ENV} to the key used before",
            ) from None
        return raw

    def _key(self, *, create: bool) -> bytes | None:
        """The key in force; None when there is none yet and ``create`` is false."""
        env = self._env_key()
        if env is not None:
            return env
        if self.key_path.exists():
            return self._read_key_file()
        if not create:
            return None
        if self.path.exists():  # a new key would make the existing secrets unreadable forever
            raise SecretError(
                f"{self.path} exists but its key is missing ({KEY_ENV} is unset and {self.key_path} does not exist).",
                fix=f"set {KEY_ENV} to the key used before, or restore {self.key_path} from backup",
            )
        key = Fernet.generate_key()
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # pragma: no cover - another process won the race; use its key
            return self._read_key_file()
        with os.fdopen(fd, "wb") as f:
            f.write(key + b"\n")
            f.flush()
            os.fsync(f.fileno())
        return key

    def _wrong_key_fix(self) -> str:
        if self._key_override is not None or os.environ.get(KEY_ENV):
            return (f"set {KEY_ENV} to the key used before, or unset it if {self.key_path} holds that key "
                    f"(or move {self.path} away to start an empty store: its secrets are then lost)")
        return (f"set {KEY_ENV} to the key used before, or restore {self.key_path} from backup "
                f"(or move {self.path} away to start an empty store: its secrets are then lost)")

    # -- reading and writing ---------------------------------------------------------------------

    def _damaged(self, detail: str) -> SecretError:
        return SecretError(
            f"the secrets file {self.path} is damaged ({detail}).",
            fix=f"restore {self.path} from backup; nothing was changed. If no backup exists, move it away "
            "and store the secrets again with `sophia credentials set NAME`",
        )

    def _load(self, *, create_key: bool = False) -> tuple[dict[str, dict[str, Any]], bytes | None]:
        """The decrypted map and the key; ({}, key-or-None) when there is no file yet."""
        try:
            blob = self.path.read_bytes()
        except FileNotFoundError:  # an empty store: the key is only needed (and made) for a first write
            return {}, (self._key(create=True) if create_key else None)
        except OSError as exc:
            raise SecretError(f"cannot read {self.path}: {exc.strerror}.",
                              fix="check the file's owner and permissions") from None
        key = self._key(create=False)
        try:
            envelope = json.loads(blob)
            token = envelope["token"].encode()
            stored_id = envelope["key_id"]
            fmt = envelope["format"]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise self._damaged("not a Sophia secrets envelope") from None
        if fmt != FORMAT:
            raise self._damaged(f"unknown format {fmt!r}; this Sophia reads format {FORMAT}")
        if key is None:
            raise SecretError(
                f"{self.path} exists but its key is missing ({KEY_ENV} is unset and {self.key_path} does not exist).",
                fix=f"set {KEY_ENV} to the key used before, or restore {self.key_path} from backup",
            )
        if stored_id != key_id(key):
            raise SecretError(f"the secrets file {self.path} was encrypted with another key.",
                              fix=self._wrong_key_fix())
        try:
            plain = Fernet(key).decrypt(token)
        except InvalidToken:
            raise self._damaged("the encrypted content fails its integrity check") from None
        try:  # from None everywhere: a JSONDecodeError would carry the decrypted text in .doc
            data = json.loads(plain)
            secrets = data["secrets"]
            if not isinstance(secrets, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise self._damaged("the decrypted content is not the expected JSON") from None
        return secrets, key

    def _save(self, secrets: dict[str, dict[str, Any]], key: bytes) -> None:
        plain = json.dumps({"secrets": secrets}, sort_keys=True).encode()
        envelope = {"format": FORMAT, "key_id": key_id(key), "token": Fernet(key).encrypt(plain).decode()}
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".secrets.", suffix=".tmp", dir=self.folder)  # mkstemp: mode 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(json.dumps(envelope).encode())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(self.folder)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.path) + ".lock", timeout=self.lock_timeout, mode=0o600)
        try:
            lock.acquire()
        except LockTimeout:
            raise SecretStoreBusyError(
                f"another process has held the credential store's lock ({lock.lock_file}) for "
                f"{self.lock_timeout:g}s.",
                fix="retry in a moment; if no `sophia` process is running, delete the .lock file",
            ) from None
        try:
            yield
        finally:
            lock.release()

    # -- the backend interface -------------------------------------------------------------------

    @staticmethod
    def _record(name: str, entry: dict[str, Any]) -> SecretRecord:
        return SecretRecord(name, entry["value"], entry.get("version"), entry.get("updated_at"))

    def get(self, name: str) -> SecretRecord | None:
        secrets, _ = self._load()
        entry = secrets.get(name)
        return self._record(name, entry) if entry is not None else None

    def put(self, name: str, value: str) -> SecretRecord:
        with self._locked():
            secrets, key = self._load(create_key=True)
            assert key is not None
            old = secrets.get(name)
            entry = {"value": value, "updated_at": now_iso(), "version": (old or {}).get("version", 0) + 1}
            secrets[name] = entry
            self._save(secrets, key)
        return self._record(name, entry)

    def remove(self, name: str) -> bool:
        with self._locked():
            secrets, key = self._load()
            if name not in secrets or key is None:
                return False
            del secrets[name]
            self._save(secrets, key)
        return True

    def records(self) -> list[SecretRecord]:
        secrets, _ = self._load()
        return [self._record(name, secrets[name]) for name in sorted(secrets)]
