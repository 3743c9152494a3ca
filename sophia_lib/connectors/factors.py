"""Factors.ai: the activity timeline of each target account (the Account Journey API).

Wire (VENDOR-APIS.md §11): ``GET /open/v1/account/{domain}/journey?from=…`` with
``Authorization: Bearer <project private token>``; no pagination, one call per account domain and time
window. The answer is the account "birdview": visitors (``account_timeline``) with their
``user_activities``; each activity becomes one row of ``journey_events`` (key ``event_id``).

* Which domains: Factors has no endpoint listing the accounts it knows (the journey call is its only
  documented read API), and a connector must not read another source's raw tables at extract time
  (the CRM's accounts may not be synced yet, and the dependency would run backwards). So the domains
  are configuration: ``options["domains"]`` (a list or a comma-separated string), e.g. the target-
  account list the marketing team keeps in Factors.
* Incremental: a cursor **per domain** (the newest activity loaded, in the resource's dlt state): a
  domain added to the list later still gets its whole history from ``start_date``. Each call asks
  ``from = cursor - lag`` (:data:`LAG_S`, for late-ingested events); ``to`` is left out, so Factors
  uses its own "now". The merge on ``event_id`` removes the overlap.
* Deletes: Factors exposes none; events are immutable. A domain Factors does not know answers 404
  ``Account not found``: it is logged and skipped, the other domains still load.
* Throttling: 429 with the JSON string "Rate limit exceeded…" (no ``Retry-After``): backed off.
* Domains are fetched ``workers`` at a time (default 4); rows and cursors are handled in the list's order.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dlt
from dlt.sources.helpers.rest_client import RESTClient

from sophia_lib.connectors import register
from sophia_lib.connectors._auth import HeaderAuth
from sophia_lib.connectors._streams import in_order_concurrently
from sophia_lib.connectors.errors import SourceConfigError, SourceRequestError
from sophia_lib.connectors.spec import Connector, SourceContext, Stream, coerce

log = logging.getLogger("sophia.connectors.factors")
LAG_S = 3600.0
WORKERS = 4  # domains fetched at the same time (one call each: there is no paging to follow)

EVENTS = Stream(
    "journey_events", ("event_id",), cursor="timestamp", required=("account_domain", "user_id"),
    columns={"event_id": "text", "account_domain": "text", "timestamp": "timestamp", "user_id": "text",
             "user_name": "text", "is_anonymous": "bool", "event_name": "text", "event_type": "text",
             "display_name": "text", "page_url": "text", "channel": "text", "campaign": "text", "source": "text",
             "medium": "text", "page_count": "bigint", "engagement_score": "double", "properties": "json"},
    description="Activities of visitors of each configured account domain (page views, app sessions …)")


def domains(options: dict[str, Any]) -> list[str]:
    """The configured account domains, normalised (``https://www.Acme.com/`` → ``acme.com``), unique."""
    raw = options.get("domains") or []
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    out: dict[str, None] = {}
    for item in items:
        text = str(item).strip().lower().split("://")[-1].split("/")[0].removeprefix("www.")
        if text:
            out[text] = None
    return list(out)


def flatten(domain: str, journey: dict[str, Any]) -> list[dict[str, Any]]:
    """A birdview → one row per activity, with its visitor and the common ``$`` properties flattened."""
    rows = []
    for visitor in journey.get("account_timeline") or []:
        for event in visitor.get("user_activities") or []:
            props = event.get("properties") or {}
            rows.append({
                "event_id": event.get("event_id"), "account_domain": domain, "timestamp": event.get("timestamp"),
                "user_id": visitor.get("user_id"), "user_name": visitor.get("user_name"),
                "is_anonymous": visitor.get("is_anonymous"), "event_name": event.get("event_name"),
                "event_type": event.get("event_type"), "display_name": event.get("display_name"),
                "page_url": props.get("$page_url"), "channel": props.get("$channel"),
                "campaign": props.get("$campaign"), "source": props.get("$source"), "medium": props.get("$medium"),
                "page_count": props.get("$page_count"), "engagement_score": props.get("$engagement_score"),
                "properties": props})
    return rows


def _window(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def source(ctx: SourceContext) -> Any:
    """The dlt source of Factors account journeys (domains from ``options["domains"]``)."""
    wanted = domains(ctx.options)
    if not wanted:
        raise SourceConfigError(ctx.name, "no account domains configured (Factors has no endpoint listing them)",
                                fix="set sources.factors.options.domains to the account domains to follow, "
                                    "e.g. [acme.com, globex.com]")
    client = RESTClient(base_url=ctx.base_url, session=ctx.session(auth=HeaderAuth.bearer(ctx.secret("private_token"))))
    lag = timedelta(seconds=float(ctx.options.get("lag_s", LAG_S)))

    workers = max(1, int(ctx.options.get("workers") or WORKERS))

    @dlt.resource(**EVENTS.hints())
    def journey_events() -> Iterator[Any]:
        state = dlt.current.resource_state().setdefault("cursor_by_domain", {})
        windows = {d: None if ctx.full_refresh else state.get(d) for d in wanted}

        def journey(domain: str) -> tuple[str, list[dict[str, Any]] | None]:
            last = windows[domain]
            since = coerce(last, "timestamp") - lag if last else ctx.start_date
            try:
                answer = client.get(f"/open/v1/account/{domain}/journey", params={"from": _window(since)}).json()
            except SourceRequestError as exc:
                if exc.status != 404:
                    raise
                log.warning("factors: account %s is unknown to Factors (%s); skipped", domain, exc.vendor_message)
                return domain, None
            return domain, flatten(domain, answer if isinstance(answer, dict) else {})

        for domain, rows in in_order_concurrently(journey, wanted, workers):
            if rows is None:
                continue
            yield from ctx.emit(EVENTS, rows)
            stamps = [r["timestamp"] for r in rows if isinstance(r["timestamp"], int | float)]
            if stamps:
                newest = datetime.fromtimestamp(max(stamps), tz=UTC).isoformat()
                state[domain] = max(newest, state.get(domain) or newest)

    @dlt.source(name="factors", max_table_nesting=0)
    def factors() -> list[Any]:
        return [journey_events]

    return factors()


register(Connector(
    name="factors", title="Factors.ai", default_base_url="https://api.factors.ai", credentials=("private_token",),
    streams=(EVENTS,), source=source, options={"domains": [], "lag_s": LAG_S, "workers": WORKERS},
    docs="The project's private token (Factors → Settings → Project → API token) and options.domains, the account "
         "domains whose journeys to sync (Factors has no endpoint listing its accounts).",
))
