"""Named registry of snapshot build steps (the transforms plug in here).

``register_builder("core", fn)`` adds a step; :func:`build_all` runs every registered step in
registration order against the snapshot being published. With none registered, a publish holds the
raw_* tables only. The warehouse never imports the transforms (imports point down), so whoever
registers them (the transforms package, on import) must be imported first — the CLI does that.
"""

from __future__ import annotations

from sophia_lib.errors import WarehouseError
from sophia_lib.warehouse.base import SnapshotBuilder, TBuild

_BUILDERS: dict[str, TBuild] = {}


def register_builder(name: str, fn: TBuild, *, replace: bool = False) -> TBuild:
    """Add a build step. Registering a taken name is an error unless ``replace=True``."""
    if name in _BUILDERS and not replace and _BUILDERS[name] is not fn:
        raise WarehouseError(f"a snapshot builder named {name!r} is already registered.",
                             fix="pick another name, or pass replace=True to swap it")
    _BUILDERS[name] = fn
    return fn


def unregister_builder(name: str) -> None:
    _BUILDERS.pop(name, None)


def registered_builders() -> dict[str, TBuild]:
    return dict(_BUILDERS)


def build_all(builder: SnapshotBuilder) -> None:
    """The ``build`` callable for :meth:`Warehouse.publish` that runs every registered step."""
    for fn in list(_BUILDERS.values()):
        fn(builder)
