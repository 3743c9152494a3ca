"""What is sent, and to whom: a channel-neutral message and ``channel:address`` targets."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sophia_lib.delivery.errors import DeliveryConfigError

TChannel = Literal["email", "slack"]
CHANNELS: tuple[str, ...] = ("email", "slack")
EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
SLACK_CHANNEL = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class Attachment:
    """A file sent with a mail (Slack messages carry the link only). ``path`` when it came from a file,
    so a failed delivery can be retried later from the record."""

    filename: str
    content: bytes
    mime: str = "application/pdf"
    path: str | None = None

    @classmethod
    def from_file(cls, path: str | Path, mime: str = "application/pdf") -> Attachment:
        file = Path(path)
        return cls(file.name, file.read_bytes(), mime, str(file.resolve()))


@dataclass
class Message:
    """One message: ``text`` is the plain version (Slack, the mail's text part), ``html`` the mail body."""

    subject: str
    text: str
    html: str | None = None
    link: str | None = None
    attachments: list[Attachment] = field(default_factory=list)

    def to_record(self) -> dict[str, Any]:
        """What the ``deliveries`` row keeps to send it again (attachments by path only)."""
        return {"subject": self.subject, "text": self.text, "html": self.html, "link": self.link,
                "attachments": [{"filename": a.filename, "mime": a.mime, "path": a.path} for a in self.attachments]}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Message:
        attachments = []
        for item in record.get("attachments") or []:
            if not item.get("path"):
                raise DeliveryConfigError(f"attachment {item.get('filename')!r} was sent from memory and was not kept.",
                                          fix="send the message again from its source (e.g. rerun the report job)")
            attachments.append(Attachment.from_file(item["path"], item.get("mime") or "application/pdf"))
        return cls(record["subject"], record["text"], record.get("html"), record.get("link"), attachments)


@dataclass(frozen=True)
class Target:
    """One recipient on one channel: ``email:cfo@example.com`` or ``slack:alerts`` (a name under
    ``delivery.slack_webhooks``)."""

    channel: TChannel
    address: str

    def __str__(self) -> str:
        return f"{self.channel}:{self.address}"


def parse_target(spec: str) -> Target:
    """``"email:a@b.com"`` / ``"slack:alerts"`` → :class:`Target`; anything else is a clear error."""
    channel, sep, address = str(spec).partition(":")
    channel, address = channel.strip().lower(), address.strip()
    if not sep or channel not in CHANNELS:
        raise DeliveryConfigError(f"delivery target {spec!r} is not channel:address.",
                                  fix="write email:someone@example.com or slack:CHANNEL (a name under "
                                      "delivery.slack_webhooks in sophia.yaml)")
    if channel == "email" and not EMAIL.match(address):
        raise DeliveryConfigError(f"delivery target {spec!r}: {address!r} is not an email address.",
                                  fix="write email:someone@example.com")
    if channel == "slack" and not SLACK_CHANNEL.match(address.lstrip("#")):
        raise DeliveryConfigError(f"delivery target {spec!r}: {address!r} is not a channel name.",
                                  fix="write slack:NAME with NAME a key of delivery.slack_webhooks")
    return Target(channel, address.lstrip("#") if channel == "slack" else address)  # type: ignore[arg-type]
