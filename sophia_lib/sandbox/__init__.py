"""The sandbox: a deterministic synthetic company served in 11 vendors' wire formats.

It is the outside world for the demo and the tests; nothing in Sophia's data path imports it.
"""

from sophia_lib.sandbox.clock import advance
from sophia_lib.sandbox.company import Company
from sophia_lib.sandbox.generator import generate
from sophia_lib.sandbox.store import export_truth, load, save, truth

__all__ = ["Company", "advance", "export_truth", "generate", "load", "save", "truth"]
