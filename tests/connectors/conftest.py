"""Connector tests share the sandbox fixtures (company, server with fault injection), plus two helpers:
``sent`` records every request a connector's sessions send, ``source_error`` digs the connector's
error out of the exception dlt wraps it in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests

from sophia_lib.connectors._http import VendorSession
from sophia_lib.connectors.errors import SourceError
from tests.sandbox.conftest import fresh_company, serve, small_company  # noqa: F401


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[requests.PreparedRequest]:
    """Every request sent through a :class:`VendorSession` during the test (one per send, retries not
    repeated), as sent: method, url, headers (auth included), body."""
    records: list[requests.PreparedRequest] = []
    original = VendorSession.send

    def send(self: VendorSession, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        try:
            return original(self, request, **kwargs)
        finally:  # after send: the auth header is on the request by then
            records.append(request.copy())

    monkeypatch.setattr(VendorSession, "send", send)
    return records


@pytest.fixture
def source_error() -> Callable[[BaseException], SourceError]:
    """``source_error(exc)``: the :class:`SourceError` in ``exc``'s chain (dlt wraps it twice)."""

    def find(exc: BaseException) -> SourceError:
        seen: BaseException | None = exc
        while seen is not None:
            if isinstance(seen, SourceError):
                return seen
            seen = seen.__cause__ or seen.__context__
        raise AssertionError(f"no SourceError in the chain of {type(exc).__name__}: {exc}")

    return find
