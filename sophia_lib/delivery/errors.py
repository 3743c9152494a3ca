"""Errors of the delivery channels: a bad setting (not worth retrying) or a failed attempt (retried)."""

from __future__ import annotations

from sophia_lib.errors import ConfigError, SophiaError, TransientError


class DeliveryError(SophiaError):
    """A message could not be delivered."""

    reason = "delivery"


class DeliveryConfigError(DeliveryError, ConfigError):
    """The channel is not configured, or a target is malformed: retrying will not help."""

    reason = "delivery_config"


class DeliveryFailedError(TransientError, DeliveryError):
    """One attempt failed (server unreachable, timeout, refused for now): worth retrying."""

    reason = "delivery_failed"
