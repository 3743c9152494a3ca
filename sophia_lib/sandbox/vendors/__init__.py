"""Simulated vendors, one module each, registered by name.

Modules in this package register themselves with :func:`register`; they are
discovered on first use, so adding a vendor is adding a file.
"""

from __future__ import annotations

import importlib
import pkgutil

from sophia_lib.sandbox.simulator.base import SimulatedVendor

_REGISTRY: dict[str, type[SimulatedVendor]] = {}


def register(cls: type[SimulatedVendor]) -> type[SimulatedVendor]:
    """Class decorator: make a vendor simulator available under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    _REGISTRY[cls.name] = cls
    return cls


def vendor_classes() -> dict[str, type[SimulatedVendor]]:
    """Every registered vendor simulator, by name (imports the modules of this package once)."""
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")
    return dict(sorted(_REGISTRY.items()))


def vendor_class(name: str) -> type[SimulatedVendor]:
    classes = vendor_classes()
    if name not in classes:
        raise KeyError(f"unknown vendor {name!r}; valid: {', '.join(classes)}")
    return classes[name]
