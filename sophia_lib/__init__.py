"""Sophia: connectors, transforms, metrics and the query door for the analytics workbench."""

__version__ = "0.1.0"
