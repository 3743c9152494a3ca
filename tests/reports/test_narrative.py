"""Narrative sentences: direction words, percent vs points, units from metrics.yaml, missing data."""

from __future__ import annotations

import math

import pytest

from sophia_lib.reports.narrative import Change, change_sentence, format_percent


@pytest.mark.parametrize(("change", "expected"), [
    (Change("pipeline", 4_100_000, 3_660_000, "currency"), "Pipeline rose 12 % to $4.1M."),
    (Change("bookings", 850_000, 1_000_000, "currency", "in Q3 2026"), "Bookings fell 15 % to $850.0k in Q3 2026."),
    (Change("deals won", 103, 100, "count"), "Deals won rose 3.0 % to 103."),
    (Change("customers", 1000, 1002, "count"), "Customers held at 1.0k."),
    (Change("win rate", 0.285, 0.317, "ratio"), "Win rate fell 3.2 pts to 28.5%."),
    (Change("churn", 0.02, 0.0201, "ratio"), "Churn held at 2.0%."),
    (Change("net new ARR", -193_700, 105_000, "currency"), "Net new ARR fell by $298.7k to -$193.7k."),
    (Change("bookings", 50_000, 0, "currency"), "Bookings rose by $50.0k to $50.0k."),
    (Change("bookings", 50_000, None, "currency"), "Bookings: $50.0k (no prior period to compare)."),
    (Change("accounts at risk", None, 3, "count", "in Oct 2026"), "No data on accounts at risk in Oct 2026."),
    (Change("cycle time", 16.1, 5.55, "days"), "Cycle time rose 190 % to 16.1 d."),
    (Change("first response time", 1620, 1718, "seconds"), "First response time fell 5.7 % to 27 min."),
])
def test_change_sentence(change: Change, expected: str) -> None:
    assert change_sentence(change) == expected


def test_nan_is_missing_and_good_news_follows_the_metric() -> None:
    assert change_sentence(Change("CSAT", math.nan, 4.0, "score")) == "No data on CSAT."
    assert Change("support load", 12, 10, "count", higher_is_better=False).good is False
    assert Change("bookings", 12, 10, "currency").good is True
    assert Change("bookings", 10, 10, "currency").good is None


def test_format_percent_keeps_a_decimal_only_for_small_moves() -> None:
    assert format_percent(0.1234) == "12 %"
    assert format_percent(-0.043) == "4.3 %"
    assert format_percent(0.0951) == "9.5 %"
