"""Raw → core → marts, on the pandas API (cuDF through ``cudf.pandas`` on GPU nodes).

Every step is a function ``step(ctx: TransformContext) -> None`` and runs in the order of
:data:`STEPS` inside one publish, so core and marts of one refresh always agree. Importing this
package registers the whole chain as the warehouse's ``transforms`` snapshot builder.
"""

from __future__ import annotations

from collections.abc import Callable

from sophia_lib.transforms.context import TransformContext
from sophia_lib.transforms.entities import entities
from sophia_lib.transforms.finance import finance_core
from sophia_lib.transforms.marts_customers import customer_marts
from sophia_lib.transforms.marts_finance import finance_marts
from sophia_lib.transforms.marts_sales import sales_marts
from sophia_lib.transforms.marts_work import work_marts
from sophia_lib.transforms.sales import sales_core
from sophia_lib.transforms.support import support_core
from sophia_lib.transforms.work import core_work
from sophia_lib.warehouse.base import SnapshotBuilder
from sophia_lib.warehouse.builders import register_builder

TStep = Callable[[TransformContext], None]

STEPS: list[TStep] = [
    # core (entity resolution first: every other core table maps its source ids through its xrefs)
    entities,
    sales_core,
    finance_core,
    support_core,
    core_work,
    # marts
    sales_marts,
    finance_marts,
    customer_marts,
    work_marts,
]


def build(builder: SnapshotBuilder) -> None:
    """Run every step against the snapshot being published."""
    ctx = TransformContext(builder, builder.as_of)
    for step in STEPS:
        step(ctx)


register_builder("transforms", build)

__all__ = ["STEPS", "TransformContext", "build"]
