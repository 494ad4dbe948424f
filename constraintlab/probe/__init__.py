"""Probe: take a real LoRA update on chosen examples and measure what it does to others.

Public API: :class:`ProbeConfig` (every setting), :func:`probe` (data + selection -> result),
:func:`probe_examples` (a loaded model + example lists -> result), :class:`ProbeResult`.
See :mod:`constraintlab.probe.update` for what is measured and the first-order predictions.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from constraintlab.probe.config import OPTIMIZERS, ProbeConfig

if TYPE_CHECKING:
    from constraintlab.probe.update import (
        ProbeResult,
        parse_ids,
        probe,
        probe_examples,
        sample_rest,
        select,
        zone_members,
    )

__all__ = ["OPTIMIZERS", "ProbeConfig", "ProbeResult", "parse_ids", "probe", "probe_examples",
           "sample_rest", "select", "zone_members"]


def __getattr__(name: str) -> Any:
    # torch loads on first use, so the CLI starts fast
    if name in __all__:
        return getattr(importlib.import_module("constraintlab.probe.update"), name)
    raise AttributeError(f"module 'constraintlab.probe' has no attribute {name!r}")
