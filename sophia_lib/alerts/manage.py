"""What people do to alerts: list them, acknowledge one, snooze one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from sophia_lib.alerts.errors import AlertNotFoundError
from sophia_lib.appdb import AppDb, open_app_db
from sophia_lib.appdb.models import Alert, Delivery
from sophia_lib.config import SophiaConfig


def _db(config: SophiaConfig, app_db: AppDb | None) -> tuple[AppDb, bool]:
    return (app_db, False) if app_db is not None else (open_app_db(config), True)


def list_alerts(config: SophiaConfig, *, include_resolved: bool = False, limit: int = 100,
                app_db: AppDb | None = None) -> list[dict[str, Any]]:
    """Alerts, newest first (firing only unless ``include_resolved``), with their delivery counts."""
    db, own = _db(config, app_db)
    try:
        with db.session() as s:
            query = select(Alert).order_by(Alert.id.desc()).limit(limit)
            if not include_resolved:
                query = query.where(Alert.state == "firing")
            alerts = s.scalars(query).all()
            counts: dict[tuple[int, str], int] = {}
            if alerts:
                rows = s.execute(select(Delivery.alert_id, Delivery.status, func.count())
                                 .where(Delivery.alert_id.in_([a.id for a in alerts]))
                                 .group_by(Delivery.alert_id, Delivery.status)).all()
                counts = {(alert_id, status): n for alert_id, status, n in rows}
            return [_row(a, counts) for a in alerts]
    finally:
        if own:
            db.close()


def _row(alert: Alert, counts: dict[tuple[int, str], int]) -> dict[str, Any]:
    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {"id": alert.id, "rule": alert.rule, "key": alert.key, "kind": alert.kind, "state": alert.state,
            "severity": alert.severity, "summary": alert.summary, "link": alert.link,
            "first_fired_at": iso(alert.first_fired_at), "last_fired_at": iso(alert.last_fired_at),
            "resolved_at": iso(alert.resolved_at), "acked_by": alert.acked_by, "acked_at": iso(alert.acked_at),
            "snoozed_until": iso(alert.snoozed_until),
            "deliveries": {status: counts.get((alert.id, status), 0) for status in ("sent", "failed", "pending")}}


def acknowledge(config: SophiaConfig, alert_id: int, by: str, *, now: datetime | None = None,
                app_db: AppDb | None = None) -> dict[str, Any]:
    """Someone is on it: no more reminders for this alert (its "resolved" message still goes out)."""
    db, own = _db(config, app_db)
    try:
        with db.session() as s:
            alert = _get(s, alert_id)
            alert.acked_by, alert.acked_at = by, now or datetime.now(UTC)
            return _row(alert, {})
    finally:
        if own:
            db.close()


def snooze(config: SophiaConfig, alert_id: int, duration: timedelta, *, now: datetime | None = None,
           app_db: AppDb | None = None) -> dict[str, Any]:
    """Silence an alert for ``duration``: no reminder and no resolved message until then; if its key fires
    again meanwhile, the new episode is silent too."""
    if duration <= timedelta(0):
        from sophia_lib.alerts.errors import AlertError

        raise AlertError(f"snooze duration must be positive; got {duration}.", fix="e.g. --for 2h")
    db, own = _db(config, app_db)
    try:
        with db.session() as s:
            alert = _get(s, alert_id)
            alert.snoozed_until = (now or datetime.now(UTC)) + duration
            return _row(alert, {})
    finally:
        if own:
            db.close()


def _get(session: Any, alert_id: int) -> Alert:
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise AlertNotFoundError(f"there is no alert #{alert_id}.", fix="`sophia alerts list --all` shows the ids")
    return alert
