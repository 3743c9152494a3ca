"""Slack incoming webhooks (``delivery.slack_webhooks``: channel name → webhook URL as a secret)."""

from __future__ import annotations

from typing import Any

import httpx

from sophia_lib.config import SophiaConfig
from sophia_lib.delivery.errors import DeliveryConfigError, DeliveryFailedError
from sophia_lib.delivery.message import Message


def slack_payload(message: Message) -> dict[str, Any]:
    """Slack's message format: a plain ``text`` fallback and blocks with the link as a button."""
    text = f"*{message.subject}*\n{message.text}"
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}}]
    if message.link:
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Open dashboard"}, "url": message.link}]})
    fallback = text + (f"\n<{message.link}|Open dashboard>" if message.link else "")
    return {"text": fallback, "blocks": blocks}


def post_slack(config: SophiaConfig, channel: str, message: Message, client: httpx.Client | None = None) -> None:
    """Post one message. Raises :class:`DeliveryConfigError` (unknown channel, webhook gone or refused)
    or :class:`DeliveryFailedError` (unreachable, timeout, throttled, 5xx)."""
    ref = config.delivery.slack_webhooks.get(channel)
    if ref is None:
        known = ", ".join(sorted(config.delivery.slack_webhooks)) or "none"
        raise DeliveryConfigError(f"no Slack webhook is configured for channel {channel!r} (configured: {known}).",
                                  fix=f"add delivery.slack_webhooks.{channel}: {{secret: NAME}} to sophia.yaml and "
                                      "store the webhook URL as NAME (`sophia credentials set NAME`)")
    from sophia_lib.secrets import resolve

    url = resolve(ref, config)
    if not url.startswith(("https://", "http://")):
        raise DeliveryConfigError(f"the secret {ref.secret} for Slack channel {channel!r} is not a URL.",
                                  fix="store the incoming-webhook URL (https://hooks.slack.com/services/…) there")
    own = client is None
    http = client or httpx.Client(timeout=config.delivery.timeout_s)
    try:
        response = http.post(url, json=slack_payload(message))
    except httpx.HTTPError as exc:
        raise DeliveryFailedError(f"cannot reach the Slack webhook of channel {channel!r}: "
                                  f"{type(exc).__name__}: {exc}.",
                                  fix="check the network path to Slack; the delivery is retried") from None
    finally:
        if own:
            http.close()
    if response.status_code < 300:
        return
    body = response.text[:200]
    if response.status_code == 429 or response.status_code >= 500:
        raise DeliveryFailedError(f"Slack answered HTTP {response.status_code} for channel {channel!r}: {body}.",
                                  fix="Slack is throttling or failing; the delivery is retried")
    raise DeliveryConfigError(f"Slack refused the message for channel {channel!r}: HTTP {response.status_code} "
                              f"{body}.", fix="the webhook may be revoked or the channel archived: create a new "
                                              "webhook and store its URL in the secret")
