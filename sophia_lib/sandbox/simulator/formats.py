"""Timestamp and cursor formats as vendors write them on the wire."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pandas as pd


def _dt(ts: Any) -> datetime | None:
    if ts is None or (not isinstance(ts, str) and pd.isna(ts)):
        return None
    stamp = pd.Timestamp(ts)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return stamp.tz_convert("UTC").to_pydatetime()


def iso_z(ts: Any, ms: bool = True) -> str | None:
    """2019-10-30T03:30:17.883Z (HubSpot, Notion, Linear, Asana, Gong-style ISO)."""
    dt = _dt(ts)
    if dt is None:
        return None
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{dt.microsecond // 1000:03d}Z" if ms else "Z")


def iso_offset(ts: Any) -> str | None:
    """2024-01-15T10:22:33+00:00 (ISO 8601 with a numeric offset)."""
    dt = _dt(ts)
    return None if dt is None else dt.replace(microsecond=0).isoformat()


def salesforce(ts: Any) -> str | None:
    """2024-01-15T10:22:33.000+0000 (Salesforce datetime)."""
    dt = _dt(ts)
    return None if dt is None else dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}+0000"


def date_only(ts: Any) -> str | None:
    dt = _dt(ts)
    return None if dt is None else dt.strftime("%Y-%m-%d")


def epoch_s(ts: Any) -> int | None:
    dt = _dt(ts)
    return None if dt is None else int(dt.timestamp())


def epoch_ms(ts: Any) -> int | None:
    dt = _dt(ts)
    return None if dt is None else int(dt.timestamp() * 1000)


def parse_any(value: str | int | float) -> datetime:
    """Parse an ISO string, epoch seconds or epoch milliseconds into aware UTC datetime."""
    if isinstance(value, int | float) or (isinstance(value, str) and value.strip().lstrip("-").isdigit()):
        number = float(value)
        if number > 1e11:  # milliseconds
            number /= 1000.0
        return datetime.fromtimestamp(number, tz=UTC)
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return stamp.tz_convert("UTC").to_pydatetime()


def encode_cursor(state: dict[str, Any]) -> str:
    """An opaque cursor (base64 JSON), as vendors hand out."""
    raw = json.dumps(state, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    """Inverse of encode_cursor; raises ValueError on anything else."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        state = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except Exception:
        raise ValueError(f"invalid cursor {cursor!r}") from None
    if not isinstance(state, dict):
        raise ValueError(f"invalid cursor {cursor!r}")
    return state
