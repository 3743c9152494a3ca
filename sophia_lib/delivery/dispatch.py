"""Send a message to its targets with retries, recording every attempt in ``deliveries``.

Each (message, target) gets one row, written *before* the first attempt (status ``pending``) so a crash
mid-send leaves a trace; each attempt then updates ``attempts`` and appends to ``error``; the row ends
``sent`` or ``failed``. A failed attempt is retried after ``delivery.backoff_s`` × 2^(n-1) seconds, up to
``delivery.retries`` times, unless the error says retrying cannot help (no server configured, unknown
channel, login or address refused). :func:`retry_failed` picks failed rows up again later.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from sophia_lib.appdb import AppDb, open_app_db
from sophia_lib.appdb.models import Delivery
from sophia_lib.config import SophiaConfig
from sophia_lib.delivery.email import send_email
from sophia_lib.delivery.errors import DeliveryError, DeliveryFailedError
from sophia_lib.delivery.message import Message, Target, parse_target
from sophia_lib.delivery.slack import post_slack
from sophia_lib.errors import SophiaError, TransientError

log = logging.getLogger("sophia.delivery")
ERROR_CHARS = 4000
TRANSIENT = DeliveryFailedError.reason


@dataclass
class DeliveryOutcome:
    delivery_id: int
    target: str
    status: str
    attempts: int
    error: str | None = None


def send_once(config: SophiaConfig, target: Target, message: Message) -> None:
    """One attempt on one channel (no retry, no record)."""
    if target.channel == "email":
        send_email(config, target.address, message)
    else:
        post_slack(config, target.address, message)


def deliver(config: SophiaConfig, message: Message, targets: Iterable[str | Target], *, kind: str = "alert",
            alert_id: int | None = None, job_run_id: int | None = None, app_db: AppDb | None = None,
            sleep: Callable[[float], None] = time.sleep) -> list[DeliveryOutcome]:
    """Send ``message`` to every target; never raises for a delivery failure (look at the outcomes, or the
    ``deliveries`` rows). A malformed target is recorded as a failed delivery too."""
    db = app_db or open_app_db(config)
    try:
        outcomes = []
        for spec in targets:
            outcomes.append(_deliver_one(config, db, message, spec, kind, alert_id, job_run_id, sleep))
        return outcomes
    finally:
        if app_db is None:
            db.close()


def _deliver_one(config: SophiaConfig, db: AppDb, message: Message, spec: str | Target, kind: str,
                 alert_id: int | None, job_run_id: int | None, sleep: Callable[[float], None]) -> DeliveryOutcome:
    with db.session() as s:
        row = Delivery(kind=kind, alert_id=alert_id, job_run_id=job_run_id, channel=str(spec).partition(":")[0][:32],
                       recipient=str(spec).partition(":")[2][:256], status="pending", subject=message.subject,
                       message=message.to_record())
        s.add(row)
        s.flush()
        delivery_id = row.id
    try:
        target = spec if isinstance(spec, Target) else parse_target(spec)
    except DeliveryError as exc:
        return _finish(db, delivery_id, str(spec), 0, [f"[{exc.reason}] {exc}"], sent=False)
    return _attempts(config, db, delivery_id, target, message, previous=0, sleep=sleep)


def _attempts(config: SophiaConfig, db: AppDb, delivery_id: int, target: Target, message: Message, *,
              previous: int, sleep: Callable[[float], None]) -> DeliveryOutcome:
    errors: list[str] = []
    attempt = previous
    with db.session() as s:
        row = s.get(Delivery, delivery_id)
        earlier = [row.error] if row is not None and row.error else []
    for n in range(config.delivery.retries + 1):
        attempt += 1
        try:
            send_once(config, target, message)
        except SophiaError as exc:
            fix = f" (fix: {exc.fix})" if exc.fix else ""
            errors.append(f"attempt {attempt} [{exc.reason}]: {exc.message}{fix}")
            _record_attempt(db, delivery_id, attempt, earlier + errors)
            log.warning("delivery #%d to %s failed (attempt %d): %s", delivery_id, target, attempt, exc.message)
            if not isinstance(exc, TransientError) or n == config.delivery.retries:
                return _finish(db, delivery_id, str(target), attempt, earlier + errors, sent=False)
            sleep(config.delivery.backoff_s * 2 ** n)
            continue
        return _finish(db, delivery_id, str(target), attempt, earlier + errors, sent=True)
    raise AssertionError("unreachable")  # pragma: no cover


def _record_attempt(db: AppDb, delivery_id: int, attempt: int, errors: list[str]) -> None:
    with db.session() as s:
        row = s.get(Delivery, delivery_id)
        if row is not None:
            row.attempts = attempt
            row.error = "\n".join(errors)[-ERROR_CHARS:]


def _finish(db: AppDb, delivery_id: int, target: str, attempts: int, errors: list[str], *,
            sent: bool) -> DeliveryOutcome:
    with db.session() as s:
        row = s.get(Delivery, delivery_id)
        assert row is not None
        row.attempts = attempts
        row.status = "sent" if sent else "failed"
        row.error = "\n".join(errors)[-ERROR_CHARS:] if errors else None
        if sent:
            row.sent_at = datetime.now(UTC)
        return DeliveryOutcome(delivery_id, target, row.status, attempts, row.error)


def retry_failed(config: SophiaConfig, *, max_age: timedelta = timedelta(days=1), app_db: AppDb | None = None,
                 sleep: Callable[[float], None] = time.sleep, now: datetime | None = None) -> list[DeliveryOutcome]:
    """Try again every failed delivery younger than ``max_age`` whose message was kept. Returns the outcomes."""
    now = now or datetime.now(UTC)
    db = app_db or open_app_db(config)
    try:
        with db.session() as s:
            rows = s.scalars(select(Delivery).where(Delivery.status == "failed", Delivery.message.is_not(None),
                                                    Delivery.created_at >= now - max_age)
                             .order_by(Delivery.id)).all()
            pending = [(r.id, r.channel, r.recipient, r.attempts, r.message) for r in rows
                       if (r.error or "").rstrip().splitlines()[-1:] and f"[{TRANSIENT}]" in r.error.splitlines()[-1]]
        outcomes = []
        for delivery_id, channel, recipient, attempts, record in pending:
            try:
                target, message = parse_target(f"{channel}:{recipient}"), Message.from_record(record or {})
            except DeliveryError as exc:
                log.warning("delivery #%d cannot be retried: %s", delivery_id, exc.message)
                continue
            outcomes.append(_attempts(config, db, delivery_id, target, message, previous=attempts, sleep=sleep))
        return outcomes
    finally:
        if app_db is None:
            db.close()
