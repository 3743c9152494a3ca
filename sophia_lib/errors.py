"""One error hierarchy for Sophia.

Every error a person can see descends from :class:`SophiaError`. Messages name the
problem *and* the fix; ``reason`` is a short stable label for metrics and audit.
Subclasses also inherit the matching builtin so ordinary ``except ValueError``
code keeps working.
"""

from __future__ import annotations


class SophiaError(Exception):
    """Base of every Sophia error."""

    reason: str = "error"

    def __init__(self, message: str, *, fix: str | None = None, reason: str | None = None) -> None:
        self.message = message
        self.fix = fix
        if reason:
            self.reason = reason
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return f"{self.message}\n  fix: {self.fix}" if self.fix else self.message


class TransientError(SophiaError):
    """Mixin-style base: worth retrying (outage, throttle, lock held)."""

    reason = "transient"


class TerminalError(SophiaError):
    """Retrying will not help until a person changes something."""

    reason = "terminal"


class ConfigError(TerminalError, ValueError):
    """sophia.yaml or an environment override is missing, malformed or wrong."""

    reason = "config"


class MissingDependencyError(TerminalError, ImportError):
    """An optional package is needed for this feature."""

    reason = "missing_dependency"

    def __init__(self, package: str, feature: str, extra: str | None = None) -> None:
        install = f"pip install 'sophia[{extra}]'" if extra else f"pip install {package}"
        super().__init__(f"{feature} needs the package '{package}', which is not installed.", fix=install)


class SecretError(TerminalError, KeyError):
    """A referenced secret cannot be found or decrypted."""

    reason = "secret"


class WarehouseError(SophiaError):
    """The warehouse cannot be opened, written or read."""

    reason = "warehouse"


class SnapshotError(WarehouseError):
    """A serving snapshot or the pointer to the current one is missing or corrupt."""

    reason = "snapshot"


class WriterBusyError(TransientError, WarehouseError):
    """Another process holds the warehouse writer lock."""

    reason = "writer_busy"


class AppDbError(SophiaError):
    """The application database cannot be opened, migrated or used."""

    reason = "app_db"


class AppDbUnreachableError(TransientError, AppDbError, ConnectionError):
    """The application database server does not answer (down, wrong host/port, firewalled)."""

    reason = "app_db_unreachable"
