"""How big each sandbox size is. ``small`` is for tests, ``medium`` for the demo, ``large`` for benchmarks."""

from __future__ import annotations

from dataclasses import dataclass, replace

from sophia_lib.errors import ConfigError


@dataclass(frozen=True)
class Size:
    name: str
    employees: int
    accounts: int
    people_per_account: float
    nb_opps_per_account: float  # new-business attempts per account (expansions come from these)
    deal_calls: int  # Gong calls on new-business deals (exec-sponsor and renewal calls come on top)
    activities_per_opp: float
    conversations: int
    messages: int
    tasks: int
    pages: int
    touches_per_account: float
    invoice_lines_per_invoice: float


SIZES: dict[str, Size] = {
    "small": Size(
        "small",
        employees=45,
        accounts=60,
        people_per_account=10,
        nb_opps_per_account=8.5,
        deal_calls=220,
        activities_per_opp=3,
        conversations=450,
        messages=5_000,
        tasks=450,
        pages=150,
        touches_per_account=6,
        invoice_lines_per_invoice=4,
    ),
    "medium": Size(
        "medium",
        employees=320,
        accounts=2_000,
        people_per_account=10,
        nb_opps_per_account=10.6,
        deal_calls=3_600,
        activities_per_opp=3,
        conversations=20_000,
        messages=200_000,
        tasks=30_000,
        pages=3_000,
        touches_per_account=6,
        invoice_lines_per_invoice=8,
    ),
}
SIZES["large"] = replace(
    SIZES["medium"],
    name="large",
    employees=2_400,
    accounts=20_000,
    deal_calls=36_000,
    conversations=200_000,
    messages=2_000_000,
    tasks=300_000,
    pages=30_000,
)


def size_of(name: str) -> Size:
    """The size called ``name``, or a ConfigError listing the valid ones."""
    if name not in SIZES:
        raise ConfigError(
            f"unknown sandbox size {name!r}; valid sizes are {', '.join(SIZES)}.",
            fix="pass --size small (tests), medium (demo) or large (benchmarks); or set sandbox.size",
        )
    return SIZES[name]


def check_seed(seed: object) -> int:
    """The seed as a non-negative int, or a ConfigError."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(
            f"sandbox seed must be a non-negative integer, got {seed!r}.",
            fix="pass --seed 42 (any integer >= 0), or set sandbox.seed in sophia.yaml",
        )
    return seed
