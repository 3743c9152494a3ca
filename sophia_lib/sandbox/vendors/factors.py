"""Factors.ai, simulated: the Account Journey API (its only documented read API).

``GET /open/v1/account/{account_domain}/journey?from=&to=&event_name=&user_name=`` with
``Authorization: Bearer <project private token>`` [doc: help.factors.ai "Account Journey API"].

The response shape is the account *birdview* as the Factors backend builds it (VENDOR-APIS.md §11 marks
it [inferred]; *verify* with a live project): ``domain_name``, ``leftpane_props`` (account properties,
here firmographics plus an engagement score and level), ``milestones`` and ``account_timeline`` — one
entry per visitor (identified people by e-mail, anonymous visitors by id) with their ``user_activities``
(``event_id``, ``event_name``, ``event_type``, ``timestamp`` in Unix seconds, ``properties``).

Rendered from ``touchpoints`` joined to the accounts Factors knows (``presence`` rows of system
``factors``: ``system_id`` is the account domain, ``domain`` the variant Factors shows; either finds the
account, ``www.`` and scheme ignored) and to ``people`` for visitor e-mails. No
pagination: one call per domain and ``from``/``to`` window (default: the last 30 days; a date-only ``to``
means the end of that day). Throttle: 429 with the JSON string ``"Rate limit exceeded. Please try again
later."``; auth failures: 401 ``{"error": "Missing authorization header" | "Invalid token"}``.
"""

from __future__ import annotations

import bisect
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sophia_lib.sandbox.simulator.base import Reply, SimulatedVendor
from sophia_lib.sandbox.simulator.faults import Fault
from sophia_lib.sandbox.vendors import register

CHANNEL_SOURCE = {"organic": "google", "paid_search": "google", "paid_social": "linkedin", "email": "hubspot",
                  "event": "event", "direct": "(direct)", "referral": "partner"}
CHANNEL_MEDIUM = {"organic": "organic", "paid_search": "cpc", "paid_social": "paid_social", "email": "email",
                  "event": "offline", "direct": "(none)", "referral": "referral"}
_WINDOW = re.compile(r"^\d{4}-\d{2}-\d{2}( \d{2}:\d{2}:\d{2}(\.\d{1,6})?)?$")


def normalize_domain(value: str) -> str:
    """``https://WWW.Acme.com/`` → ``acme.com`` (how a domain is matched to an account)."""
    text = value.strip().lower()
    text = re.sub(r"^[a-z]+://", "", text).split("/")[0]
    return text.removeprefix("www.")


def _uuids(keys: pd.Series) -> list[str]:
    """Deterministic UUID-shaped ids from keys, vectorised (two 64-bit hashes → 128 bits)."""
    values = pd.Series(keys.astype(str).to_numpy(dtype=object))
    hi = pd.util.hash_pandas_object(values, index=False, hash_key="factors-sandbox1").to_numpy()
    lo = pd.util.hash_pandas_object(values, index=False, hash_key="factors-sandbox2").to_numpy()
    hexes = (f"{a:016x}{b:016x}" for a, b in zip(hi.tolist(), lo.tolist(), strict=True))
    return [f"{h[:8]}-{h[8:12]}-5{h[13:16]}-a{h[17:20]}-{h[20:]}" for h in hexes]


def _rows(columns: dict[str, Any]) -> list[dict[str, Any]]:
    """Column lists → row dicts (faster than DataFrame.to_dict on Arrow-backed strings)."""
    names = list(columns)
    lists = [list(v) if not isinstance(v, list) else v for v in columns.values()]
    return [dict(zip(names, row, strict=True)) for row in zip(*lists, strict=True)]


class _Journey:
    """One account's activities, sorted by time, with their visitors."""

    __slots__ = ("domain", "props", "timestamps", "activities", "users")

    def __init__(self, domain: str, props: dict[str, Any], timestamps: list[int],
                 activities: list[dict[str, Any]], users: list[dict[str, Any]]) -> None:
        self.domain, self.props, self.timestamps = domain, props, timestamps
        self.activities, self.users = activities, users


@register
class Factors(SimulatedVendor):
    name = "factors"
    PRIVATE_TOKEN = "factors-sandbox-private-token-halcyon"

    def setup_credentials(self) -> None:
        self.tokens.add_static(self.PRIVATE_TOKEN, "project-private-token")

    def credentials(self) -> dict[str, str]:
        return {"private_token": self.PRIVATE_TOKEN}

    def demo_options(self) -> dict[str, str]:
        """The account domains to track (a Factors project is configured with its target accounts)."""
        return {"domains": ",".join(sorted({j.domain for j in self.journeys.values()}))}

    def routes(self) -> list[tuple[str, Any, list[str]]]:
        return [("/open/v1/account/{account_domain}/journey", self.journey, ["GET"]),
                ("/{path:path}", self.not_found, ["GET", "POST", "PUT", "PATCH", "DELETE"])]

    # --- Factors' answers -----------------------------------------------------------------------------
    def throttle_response(self, request: Request, fault: Fault) -> Response:
        return JSONResponse("Rate limit exceeded. Please try again later.", status_code=429)

    def error_response(self, request: Request, status: int, message: str) -> Response:
        return JSONResponse({"error": message, "err": {"code": str(status), "display_message": message,
                                                        "details": "", "tracking_id": ""}}, status_code=status)

    def expired_token_response(self, request: Request) -> Response:
        return JSONResponse({"error": "Invalid token"}, status_code=401)

    async def not_found(self, request: Request) -> Response:
        return JSONResponse({"error": "Not found"}, status_code=404)

    def _auth(self, request: Request) -> None:
        header = request.headers.get("authorization")
        if not header:
            raise Reply(JSONResponse({"error": "Missing authorization header"}, status_code=401))
        scheme, _, token = header.partition(" ")
        value = token.strip() if scheme.lower() == "bearer" else header.strip()
        if self.tokens.check(value) is None:
            raise Reply(self.expired_token_response(request))

    # --- rendering ---------------------------------------------------------------------------------------
    def render(self) -> None:
        c = self.company
        pres = c.presence_of("account", "factors")
        pres = pres[pres["deleted_at"].isna()].sort_values(["is_duplicate", "system_id"]).drop_duplicates("entity_id")
        accounts = c.live("accounts").set_index("account_id")
        known = pres.set_index("entity_id")
        touches = c.live("touchpoints")
        touches = touches[touches["account_id"].isin(known.index)].sort_values(["occurred_at", "touch_id"])
        people = c["people"].set_index("person_id")

        anonymous = touches["person_id"].isna().to_numpy()
        emails = touches["person_id"].map(people["email"]).astype(object)
        emails = emails.where(emails.notna(), None).map(lambda e: e.strip().lower() if isinstance(e, str) else e)
        email_of = emails.tolist()
        visitor_key = np.where(anonymous, "anon/" + touches["account_id"].astype(str),
                               "person/" + touches["person_id"].astype(str))
        codes, uniques = pd.factorize(pd.Series(visitor_key, dtype=object))
        visitor_ids = _uuids(pd.Series(uniques))
        user_ids = [visitor_ids[k] for k in codes.tolist()]
        stamps = pd.to_datetime(touches["occurred_at"], utc=True)
        epoch = (stamps.dt.tz_convert(None).to_numpy(dtype="datetime64[s]").astype(np.int64)).tolist()
        url = touches["page_url"].astype(str).str.replace(r"^https?://", "", regex=True)
        path = url.str.replace(r"^[^/]+", "", regex=True)
        is_app = url.str.startswith("app.")
        n = len(touches)
        activities = _rows({
            "event_id": _uuids(touches["touch_id"]),
            "event_name": url.tolist(),
            "event_type": ["PV"] * n,
            "display_name": np.where(is_app, "App Session", "Page View").tolist(),
            "alias_name": [""] * n,
            "timestamp": epoch,
            "icon": np.where(is_app, "app", "window").tolist(),
        })
        props = _rows({
            "$page_url": url.tolist(), "$page_title": path.tolist(),
            "$channel": touches["channel"].astype(str).tolist(),
            "$campaign": touches["campaign"].fillna("").astype(str).tolist(),
            "$source": touches["channel"].map(CHANNEL_SOURCE).fillna("").tolist(),
            "$medium": touches["channel"].map(CHANNEL_MEDIUM).fillna("").tolist(),
            "$page_count": touches["page_views"].astype(int).tolist(),
            "$engagement_score": touches["engagement_score"].astype(float).round(1).tolist(),
        })
        for activity, prop in zip(activities, props, strict=True):
            activity["properties"] = prop

        recent = stamps >= c.now - pd.Timedelta(days=30)
        score = touches["engagement_score"].where(recent.to_numpy(), 0.0).groupby(touches["account_id"]).sum()
        journeys: dict[str, _Journey] = {}
        groups = pd.Series(np.arange(len(touches))).groupby(touches["account_id"].to_numpy()).indices
        firmo = accounts[["industry", "country", "employee_count"]].to_dict("index")
        for row in known.reset_index().to_dict("records"):  # one small dict per account, not per touch
            account_id = row["entity_id"]
            domain = normalize_domain(str(row["system_id"]))
            shown = normalize_domain(row["domain"]) if isinstance(row["domain"], str) else domain
            acct = firmo.get(account_id)
            engagement = round(float(score.get(account_id, 0.0)), 1)
            left = {
                "$domain": row["domain"] if isinstance(row["domain"], str) else domain,
                "$company_name": row["name"] if isinstance(row["name"], str) else None,
                "$industry": None if acct is None else acct["industry"],
                "$country": None if acct is None else acct["country"],
                "$employee_count": None if acct is None or pd.isna(acct["employee_count"]) else
                int(acct["employee_count"]),
                "$engagement_score": engagement,
                "$engagement_level": "Hot" if engagement >= 100 else "Warm" if engagement >= 30 else
                "Cool" if engagement > 0 else "Ice",
            }
            idx = groups.get(account_id, np.empty(0, dtype=int))
            seen: dict[str, dict[str, Any]] = {}
            for i in idx.tolist():
                if user_ids[i] not in seen:
                    seen[user_ids[i]] = {"user_id": user_ids[i], "is_anonymous": bool(anonymous[i]),
                                         "user_name": user_ids[i] if anonymous[i] or email_of[i] is None
                                         else email_of[i],
                                         "properties": {"$country": left["$country"]}, "extra_prop": ""}
                activities[i]["_user"] = user_ids[i]
            journey = _Journey(shown, left, [epoch[i] for i in idx.tolist()],
                               [activities[i] for i in idx.tolist()], list(seen.values()))
            journeys[domain] = journeys[shown] = journey  # the canonical domain and the one Factors shows
        self.journeys = journeys

    # --- endpoint ------------------------------------------------------------------------------------------
    def _window(self, raw: str | None, default: datetime, end_of_day: bool) -> datetime:
        if raw is None or raw == "":
            return default
        text = raw.strip()
        if not _WINDOW.match(text):
            raise Reply(self.error_response_400(f"Invalid time format: {raw}. Use 'YYYY-MM-DD HH:MM:SS.ffffff' "
                                                f"or 'YYYY-MM-DD'."))
        try:
            moment = datetime.fromisoformat(text).replace(tzinfo=UTC)
        except ValueError:
            raise Reply(self.error_response_400(f"Invalid time: {raw}")) from None
        if end_of_day and len(text) == 10:
            moment += timedelta(days=1) - timedelta(microseconds=1)
        return moment

    @staticmethod
    def error_response_400(message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=400)

    async def journey(self, request: Request) -> Response:
        self._auth(request)
        domain = normalize_domain(request.path_params["account_domain"])
        journey = self.journeys.get(domain)
        if journey is None:
            return JSONResponse({"error": "Account not found"}, status_code=404)
        now = self.company.now.to_pydatetime()
        params = request.query_params
        start = self._window(params.get("from"), now - timedelta(days=30), False)
        end = self._window(params.get("to"), now, True)
        if start > end:
            return self.error_response_400("'from' must be before 'to'")
        lo = bisect.bisect_left(journey.timestamps, int(start.timestamp()))
        hi = bisect.bisect_right(journey.timestamps, int(end.timestamp()))
        window = self.page(request, journey.activities, lo, hi - lo)
        event_filter = (params.get("event_name") or "").lower()
        user_filter = (params.get("user_name") or "").lower()
        users = {u["user_id"]: u for u in journey.users}
        timeline: dict[str, dict[str, Any]] = {}
        for activity in window:
            user = users.get(activity.get("_user"))
            if user is None or event_filter not in str(activity.get("event_name", "")).lower() \
                    or user_filter not in str(user["user_name"]).lower():
                continue
            entry = timeline.setdefault(user["user_id"], {**user, "user_activities": []})
            entry["user_activities"].append({k: v for k, v in activity.items() if k != "_user"})
        return JSONResponse({"domain_name": journey.domain, "leftpane_props": journey.props, "milestones": {},
                             "account_timeline": list(timeline.values())})
