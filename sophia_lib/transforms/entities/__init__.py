"""Entity resolution: accounts, people and employees from every source, each with its cross-reference
of source records (``core.accounts``/``account_xref``, ``core.people``/``person_xref``,
``core.employees``/``employee_xref``). Runs first: every other core step maps its source ids through
these xrefs. Rules and measured precision/recall: docs/data-model.md, "Entities"."""

from __future__ import annotations

from sophia_lib.transforms.entities.step import entities

__all__ = ["entities"]
