"""constraintlab: a fine-tuning dataset seen as a system of equations on the LoRA adapter.

>>> import constraintlab
>>> report = constraintlab.analyze("data.jsonl")          # the built-in reference model
>>> report.summary, report.pairs, report.examples, report.zones
>>> report.plot_spectrum()

The heavy stages (torch, transformers) load on first use, so ``import constraintlab`` is fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from constraintlab._version import __version__

if TYPE_CHECKING:
    from constraintlab.api import analyze
    from constraintlab.io import read_examples
    from constraintlab.report.report import Report

__all__ = ["Report", "__version__", "analyze", "read_examples"]

_LAZY = {"analyze": "constraintlab.api", "Report": "constraintlab.report.report",
         "read_examples": "constraintlab.io"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'constraintlab' has no attribute {name!r}")
