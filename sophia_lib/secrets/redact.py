"""Keep secret values out of logs: a registry of values handed out in this process and a log filter.

Every value the store returns or stores is remembered here (in memory only). :class:`RedactSecrets`
replaces those values with ``***`` in a log record's message, arguments and formatted traceback.
:func:`install` (called by ``open_store``) applies it to every record of every logger when the
record is made, which also covers loggers and handlers created later; the class itself can be added
to a handler by logging configuration as usual.

Values shorter than :data:`MIN_LENGTH` are not redacted: hiding every "ab" in every log line would
make logs unreadable while protecting nothing (such a value is no secret).
"""

from __future__ import annotations

import logging
import threading
import traceback
from typing import Any

MASK = "***"
MIN_LENGTH = 4

_lock = threading.Lock()
_values: set[str] = set()
_ordered: tuple[str, ...] = ()  # longest first, so a value containing another is masked whole
_installed = False


def remember(value: str) -> None:
    """Add a value handed out by the store to the set that logs must never show."""
    global _ordered
    if not isinstance(value, str) or len(value) < MIN_LENGTH or value in _values:
        return
    with _lock:
        _values.add(value)
        _ordered = tuple(sorted(_values, key=len, reverse=True))


def forget_all() -> None:
    """Empty the registry (tests)."""
    global _ordered
    with _lock:
        _values.clear()
        _ordered = ()


def redact(text: str) -> str:
    """``text`` with every remembered value replaced by ``***``."""
    for value in _ordered:
        if value in text:
            text = text.replace(value, MASK)
    return text


def contains_secret(text: str) -> bool:
    return any(value in text for value in _ordered)


class RedactSecrets(logging.Filter):
    """Replace every value the credential store handed out with ``***``; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _ordered:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it to logging's own error handling
            return True
        if contains_secret(message):
            record.msg, record.args = redact(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text and contains_secret(record.exc_text):
            record.exc_text = redact(record.exc_text)
        if record.stack_info and contains_secret(record.stack_info):
            record.stack_info = redact(record.stack_info)
        return True


def install() -> None:
    """Redact every log record of this process from now on (idempotent).

    Done in the record factory rather than as a filter on the root logger because logger filters
    do not see records that propagate from child loggers, and handlers added later would miss it.
    """
    global _installed
    with _lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()
        redactor = RedactSecrets()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            redactor.filter(record)
            return record

        logging.setLogRecordFactory(factory)
        _installed = True
