"""constraintlab: a fine-tuning dataset seen as a system of equations on the LoRA adapter.

>>> import constraintlab
>>> report = constraintlab.analyze("data.jsonl")          # the built-in reference model
>>> report.summary, report.pairs, report.examples, report.zones
>>> report.plot_spectrum()
>>> ordered = constraintlab.order("data.jsonl", "gradual")   # OrderResult
>>> ordered.write("ordered.jsonl")
>>> constraintlab.clean("data.jsonl").write("clean.jsonl")          # CleanResult
>>> constraintlab.select("data.jsonl", 0.3).write("subset.jsonl")   # SelectResult

The heavy stages (torch, transformers) load on first use, so ``import constraintlab`` is fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from constraintlab._version import __version__

if TYPE_CHECKING:
    from constraintlab.actions import CleanResult, SelectResult, clean, select
    from constraintlab.api import OrderResult, analyze, order
    from constraintlab.io import read_examples
    from constraintlab.report.report import Report

__all__ = ["CleanResult", "OrderResult", "Report", "SelectResult", "__version__", "analyze",
           "clean", "order", "read_examples", "select"]

_LAZY = {"analyze": "constraintlab.api", "order": "constraintlab.api",
         "OrderResult": "constraintlab.api", "Report": "constraintlab.report.report",
         "read_examples": "constraintlab.io", "clean": "constraintlab.actions",
         "select": "constraintlab.actions", "CleanResult": "constraintlab.actions",
         "SelectResult": "constraintlab.actions"}


def __dir__() -> list[str]:
    """The public API (lazy names included), so ``dir(constraintlab)`` and tab completion show
    it before first use."""
    return sorted({*__all__, *(n for n in globals() if n.startswith("__"))})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'constraintlab' has no attribute {name!r}")
