"""Probe: take a real LoRA update on chosen examples and measure what it does to others.

Public API: :class:`ProbeConfig` (every setting), :func:`probe` (data + selection -> result),
:func:`probe_examples` (a loaded model + example lists -> result), :class:`ProbeResult`.
See :mod:`constraintlab.probe.probe` for what is measured and the first-order predictions.
"""

from constraintlab.probe.config import OPTIMIZERS, ProbeConfig
from constraintlab.probe.probe import (
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
