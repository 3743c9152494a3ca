"""System ids in each vendor's own style, drawn from the seeded stream (never uuid4 or time).

Monotone sequences (:func:`sequence`) keep numeric ids unique and increasing with creation order, as
they are in the real systems, and let ``advance`` continue past the highest id already used.
"""

from __future__ import annotations

import numpy as np

BASE62 = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # ASCII order: sorts like numbers
_B62 = np.frombuffer(BASE62, dtype=np.uint8)
_SF_SUFFIX = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345", dtype=np.uint8)
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_SLACK = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8)

SALESFORCE_PREFIX = {
    "account": "001",
    "contact": "003",
    "opportunity": "006",
    "user": "005",
    "task": "00T",
    "event": "00U",
    "opportunity_history": "008",
}


def _rows_to_str(chars: np.ndarray) -> np.ndarray:
    """(n, k) uint8 ASCII → object array of n str."""
    n, k = chars.shape
    if n == 0:
        return np.empty(0, dtype=object)
    return np.ascontiguousarray(chars).view(f"S{k}").ravel().astype(str).astype(object)


def sequence(rng: np.random.Generator, n: int, start: int, max_step: int) -> np.ndarray:
    """n strictly increasing ints after ``start`` with random gaps (1..max_step)."""
    return start + np.cumsum(rng.integers(1, max_step + 1, n, dtype=np.int64))


def numeric(rng: np.random.Generator, n: int, start: int, max_step: int) -> np.ndarray:
    """HubSpot / NetSuite / Gong / Asana / Looker style numeric-string ids."""
    return sequence(rng, n, start, max_step).astype(str).astype(object)


def salesforce(kind: str, numbers: np.ndarray) -> np.ndarray:
    """18-character case-safe Salesforce ids: key prefix + pod ``5e`` + ``0`` + 9 base62 digits + checksum.

    The 3-character suffix encodes which of the 15 characters are upper-case, exactly as Salesforce
    computes it, so a connector can convert between 15- and 18-character forms.
    """
    prefix = SALESFORCE_PREFIX[kind].encode()
    n = len(numbers)
    body = np.empty((n, 15), dtype=np.uint8)
    body[:, 0:3] = np.frombuffer(prefix, dtype=np.uint8)
    body[:, 3:6] = np.frombuffer(b"5e0", dtype=np.uint8)
    x = np.asarray(numbers, dtype=np.int64).copy()
    for i in range(14, 5, -1):
        body[:, i] = _B62[x % 62]
        x //= 62
    upper = ((body >= 65) & (body <= 90)).reshape(n, 3, 5).astype(np.int64)
    bits = upper @ (1 << np.arange(5))
    return _rows_to_str(np.concatenate([body, _SF_SUFFIX[bits]], axis=1))


def salesforce_number(sf_id: str) -> int:
    """The record number inside a Salesforce id made by :func:`salesforce`."""
    value = 0
    for ch in sf_id[6:15].encode():
        value = value * 62 + BASE62.index(bytes([ch]))
    return value


def _hex_rows(raw: np.ndarray) -> np.ndarray:
    out = np.empty((raw.shape[0], raw.shape[1] * 2), dtype=np.uint8)
    out[:, 0::2] = _HEX[raw >> 4]
    out[:, 1::2] = _HEX[raw & 15]
    return out


def uuids(rng: np.random.Generator, n: int) -> np.ndarray:
    """Version-4-shaped UUID strings (Linear, Notion) from the stream."""
    raw = rng.integers(0, 256, (n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    h = _hex_rows(raw)
    dash = np.full((n, 1), ord("-"), dtype=np.uint8)
    return _rows_to_str(
        np.concatenate(
            [h[:, :8], dash, h[:, 8:12], dash, h[:, 12:16], dash, h[:, 16:20], dash, h[:, 20:]], axis=1
        )
    )


def hex_ids(rng: np.random.Generator, n: int, nbytes: int = 12) -> np.ndarray:
    """Intercom-style 24-hex-digit ids."""
    return _rows_to_str(_hex_rows(rng.integers(0, 256, (n, nbytes), dtype=np.uint8)))


def slack(rng: np.random.Generator, n: int, lead: str) -> np.ndarray:
    """Slack ``U…`` / ``C…`` ids: the lead letter and 10 upper-case alphanumerics."""
    body = _SLACK[rng.integers(0, len(_SLACK), (n, 10))]
    head = np.full((n, 1), ord(lead), dtype=np.uint8)
    return _rows_to_str(np.concatenate([head, body], axis=1))
