"""Delivery channels shared by alerts and reports: mail over SMTP and Slack incoming webhooks.

:func:`deliver` sends one :class:`Message` to each target (``email:someone@example.com``,
``slack:alerts``), retrying failures with backoff and recording every attempt in the app DB's
``deliveries`` table, so a message that could not be sent is visible (``status = failed`` with the
error), never silently lost; :func:`retry_failed` tries those again later.
"""

from __future__ import annotations

from sophia_lib.delivery.dispatch import DeliveryOutcome, deliver, retry_failed
from sophia_lib.delivery.errors import DeliveryConfigError, DeliveryError, DeliveryFailedError
from sophia_lib.delivery.message import Attachment, Message, Target, parse_target

__all__ = [
    "Attachment",
    "DeliveryConfigError",
    "DeliveryError",
    "DeliveryFailedError",
    "DeliveryOutcome",
    "Message",
    "Target",
    "deliver",
    "parse_target",
    "retry_failed",
]
