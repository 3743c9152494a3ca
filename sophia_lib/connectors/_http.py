"""One HTTP session for every connector: vendor throttle signals, backoff with jitter, pacing,
token refresh on expiry, and a bounded total time.

:class:`VendorSession` is a ``requests.Session``, so dlt's ``RESTClient`` and paginators can use it
as they are (``RESTClient(base_url, session=VendorSession(...))``); everything here happens in
:meth:`VendorSession.send`, once, for all vendors. A vendor says how it signals trouble by
subclassing :class:`ThrottlePolicy` (Salesforce's 403 ``REQUEST_LIMIT_EXCEEDED``, Slack's HTTP-200
``ok: false``, Linear's ``RATELIMITED`` GraphQL error, HubSpot's ``policyName`` …).
"""

from __future__ import annotations

import enum
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from sophia_lib.connectors.errors import SourceAuthError, SourceRequestError, SourceUnavailableError

log = logging.getLogger("sophia.connectors")


class Signal(enum.Enum):
    OK = "ok"
    THROTTLE = "throttle"          # the vendor asks us to slow down: wait (Retry-After) and retry
    AUTH_EXPIRED = "auth_expired"  # refresh the token once and retry
    TRANSIENT = "transient"        # 5xx, timeouts, resets, malformed bodies: back off and retry
    FATAL = "fatal"                # the request itself is wrong (bad credentials, bad query): stop


@dataclass(frozen=True)
class Verdict:
    signal: Signal
    message: str = ""
    retry_after: float | None = None


def retry_after_seconds(response: requests.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds; HTTP dates are treated as 'soon')."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return 1.0


def body_json(response: requests.Response) -> Any:
    """The response's JSON, or None when the body is not JSON (parsed once: later calls reuse it)."""
    try:
        parsed = response.json()
    except ValueError:
        return None
    _keep_json(response, parsed)
    return parsed


def _keep_json(response: requests.Response, parsed: Any) -> None:
    """Serve ``parsed`` from ``response.json()`` from now on (a page is parsed once, not once per reader)."""
    response.json = lambda **_: parsed  # type: ignore[method-assign]
    response.sophia_json_kept = True  # type: ignore[attr-defined]


class ThrottlePolicy:
    """How a vendor signals throttling and errors. Override :meth:`classify` for vendor quirks."""

    def classify(self, response: requests.Response) -> Verdict:
        status = response.status_code
        if status == 429:
            return Verdict(Signal.THROTTLE, self.message(response), retry_after_seconds(response))
        if status == 401:
            return Verdict(Signal.AUTH_EXPIRED, self.message(response))
        if status in (408, 425) or status >= 500:
            return Verdict(Signal.TRANSIENT, self.message(response), retry_after_seconds(response))
        if status >= 400:
            return Verdict(Signal.FATAL, self.message(response))
        return Verdict(Signal.OK)

    def message(self, response: requests.Response) -> str:
        """The vendor's own words for an error (its envelope's message), else the status line."""
        data = body_json(response)
        text = _find_message(data) if data is not None else None
        return text or f"HTTP {response.status_code} {response.reason or ''}".strip()


def _find_message(data: Any) -> str | None:
    """Find a human message in common error envelopes (message, error_description, errors[0]…)."""
    if isinstance(data, list) and data:
        return _find_message(data[0])
    if not isinstance(data, dict):
        return data if isinstance(data, str) else None
    for key in ("message", "error_description", "title", "detail", "error"):
        value = data.get(key)
        if isinstance(value, str) and value:
            code = data.get("errorCode") or data.get("code") or data.get("category")
            return f"{value} ({code})" if isinstance(code, str) and code and code not in value else value
    for key in ("errors", "o:errorDetails"):
        nested = data.get(key)
        if nested:
            return _find_message(nested)
    return None


class Pacer:
    """Spaces requests at least ``1/rate`` seconds apart (thread-safe): vendors with small budgets
    (Gong, Notion ~3 req/s) are paced ahead of time instead of hitting their limit."""

    def __init__(self, rate_per_s: float) -> None:
        self.interval = 1.0 / rate_per_s
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> float:
        """Sleep until this request's turn; returns the seconds slept."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)
        return max(0.0, start - now)


class Auth:
    """Puts credentials on a request. Token-based auth also refreshes (see _auth.py)."""

    def apply(self, request: requests.PreparedRequest) -> None:
        raise NotImplementedError

    def refresh(self, force: bool = False) -> bool:
        """Get a fresh token; False when this auth cannot refresh (static keys)."""
        return False


@dataclass
class RetrySettings:
    """Bounds on retrying: attempts, total time, backoff (exponential with full jitter)."""

    max_attempts: int = 8
    max_elapsed_s: float = 300.0
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    timeout: tuple[float, float] = (5.0, 60.0)   # connect, read


class VendorSession(requests.Session):
    """A requests session that speaks one vendor's throttle dialect and never hangs."""

    def __init__(self, vendor: str, auth: Auth | None = None, policy: ThrottlePolicy | None = None,
                 pacer: Pacer | None = None, retry: RetrySettings | None = None,
                 on_retry: Callable[[str, Verdict], None] | None = None, sleep: Callable[[float], None] = time.sleep
                 ) -> None:
        super().__init__()
        self.vendor = vendor
        self.vendor_auth = auth
        self.policy = policy or ThrottlePolicy()
        self.pacer = pacer
        self.retry = retry or RetrySettings()
        self.on_retry = on_retry
        self.sleep = sleep
        self.retries = 0
        self.requests_sent = 0
        self.answer_s = 0.0  # seconds waiting for the vendor's answers (summed over threads): the vendor's share
        self.paced_s = 0.0  # seconds held back by the pacer (the vendor's rate limit, kept ahead of time)
        self._counting = threading.Lock()  # a connector may send from a few threads (Slack's thread replies)
        self.headers["User-Agent"] = "sophia-connector/0.1 (+https://github.com/sophia-analytics)"

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # noqa: C901
        kwargs.setdefault("timeout", self.retry.timeout)
        # Response hooks (dlt's RESTClient adds a raise-for-status one) run only on the final good
        # answer: retrying must see 429s and 5xx before anything raises.
        hooks = request.hooks.get("response", [])
        request.hooks["response"] = []
        started = time.monotonic()
        attempt = 0
        refreshed = False
        last = Verdict(Signal.TRANSIENT, "no attempt made")
        while True:
            attempt += 1
            if self.vendor_auth is not None:
                self.vendor_auth.apply(request)
            paced = self.pacer.wait() if self.pacer is not None else 0.0
            with self._counting:
                self.requests_sent += 1
                self.paced_s += paced
            sent = time.monotonic()
            try:
                response = super().send(request, **kwargs)
                with self._counting:
                    self.answer_s += time.monotonic() - sent
                verdict = self.policy.classify(response)
                if verdict.signal is Signal.OK and not _json_intact(response):
                    verdict = Verdict(Signal.TRANSIENT, "malformed or truncated JSON body")
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                verdict = Verdict(Signal.TRANSIENT, f"{type(exc).__name__}: {_short(exc)}")
            if verdict.signal is Signal.OK:
                for hook in hooks:
                    response = hook(response, **kwargs) or response
                return response
            last = verdict
            if verdict.signal is Signal.FATAL:
                raise SourceRequestError(self.vendor, verdict.message, status=response.status_code, url=request.url)
            if verdict.signal is Signal.AUTH_EXPIRED:
                if refreshed or self.vendor_auth is None or not self.vendor_auth.refresh(force=True):
                    raise SourceAuthError(self.vendor, verdict.message)
                refreshed = True
                continue
            elapsed = time.monotonic() - started
            wait = self._backoff(attempt, verdict)
            if attempt >= self.retry.max_attempts or elapsed + wait > self.retry.max_elapsed_s:
                raise SourceUnavailableError(self.vendor, last.message, attempts=attempt, elapsed_s=elapsed)
            with self._counting:
                self.retries += 1
            log.info("%s: %s (%s); retry %d in %.1fs", self.vendor, verdict.signal.value, verdict.message,
                     attempt, wait)
            if self.on_retry is not None:
                self.on_retry(self.vendor, verdict)
            self.sleep(wait)

    def _backoff(self, attempt: int, verdict: Verdict) -> float:
        if verdict.retry_after is not None:
            return min(verdict.retry_after, self.retry.max_elapsed_s)
        ceiling = min(self.retry.backoff_cap_s, self.retry.backoff_base_s * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)


def _json_intact(response: requests.Response) -> bool:
    """A JSON answer must parse (a truncated page or a proxy's HTML is retried, never loaded).

    The parsed body is kept on the response so callers do not parse it twice.
    """
    if "json" not in response.headers.get("content-type", "") or not response.content:
        return True
    if getattr(response, "sophia_json_kept", False):  # body_json parsed it already (a policy's classify)
        return True
    try:
        parsed = json.loads(response.content)
    except ValueError:
        return False
    _keep_json(response, parsed)
    return True


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) < 200 else text[:200] + "…"
