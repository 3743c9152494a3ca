"""Connectors: one module per vendor, each declaring a :class:`~sophia_lib.connectors.spec.Connector`.

Modules in this package register themselves with :func:`register` and are discovered on first use.
Connectors import only the warehouse and secrets layers, never the sandbox: the sandbox is the
outside world, and a connector that shared its simulator's code would prove nothing.
"""

from __future__ import annotations

import importlib
import pkgutil

from sophia_lib.connectors.spec import Connector, SourceContext, Stream, emit

__all__ = ["Connector", "SourceContext", "Stream", "connector", "connectors", "emit", "register"]

_REGISTRY: dict[str, Connector] = {}


def register(spec: Connector) -> Connector:
    """Make a connector available by name (call at the bottom of its module)."""
    _REGISTRY[spec.name] = spec
    return spec


def connectors() -> dict[str, Connector]:
    """Every connector, by name."""
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_") and module.name not in ("spec", "errors", "catalog"):
            importlib.import_module(f"{__name__}.{module.name}")
    return dict(sorted(_REGISTRY.items()))


def connector(name: str) -> Connector:
    """One connector; an unknown name lists the valid ones."""
    known = connectors()
    if name not in known:
        raise KeyError(f"unknown source {name!r}; valid: {', '.join(known)}")
    return known[name]
