"""Concentration: do a few examples carry the update?

Training on the data sums the examples' gradients, so an example pulls on the adapter in
proportion to its gradient norm. The squared norm ``e_i = ||g_i||^2`` is the example's energy
(the quantity the layer map splits over the LoRA sites); when a handful of examples hold most
of the total ``sum_i e_i`` (a long target, a target the model finds absurd, a mislabelled
record), they dominate every step and the rest of the data barely counts. Two numbers say how
even the pull is:

- ``half_energy_examples``: the fewest examples that together hold at least half the total
  energy (largest first, ties by id); ``half_energy_share`` = that / N is 0.5 when every
  example pulls equally and 1/N when one does all the work.
- ``effective_examples``: Kish's effective sample size of the energies,
  ``(sum e)^2 / sum e^2`` (N when equal, 1 when one example holds everything);
  ``effective_share`` = that / N.

Read from the encoder's exact gradient norms (``grad_norm``), not the sketch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from constraintlab.analysis.config import AnalysisConfig
from constraintlab.analysis.registry import Analyzer, Metric
from constraintlab.analysis.result import AnalyzerResult

__all__ = ["ConcentrationResult", "analyze_concentration"]

#: How many of the largest examples the summary lists (all are in examples.csv).
LISTED = 10


@dataclass
class ConcentrationResult(AnalyzerResult):
    """What :func:`analyze_concentration` found.

    Attributes
    ----------
    share : (N,) float64
        Each example's share of the total squared gradient norm (sums to 1).
    carries_half : (N,) bool
        The fewest examples that together hold at least half of it.
    """

    share: np.ndarray | None = None
    carries_half: np.ndarray | None = None


def analyze_concentration(grad_norm: np.ndarray, *, ids: np.ndarray | None = None,
                          config: AnalysisConfig | None = None) -> ConcentrationResult | None:
    """How evenly the examples' squared gradient norms share the update.

    Parameters
    ----------
    grad_norm : (N,) float
        Each example's gradient norm ``||g_i||`` (finite, >= 0).
    ids : (N,) int, optional
        Example ids (default ``0..N-1``).
    config : AnalysisConfig, optional
        Unused (no settings); taken as every analyzer's is.

    Returns
    -------
    ConcentrationResult or None
        None when there is nothing to share (no example, or every gradient is zero).
        Table: ``energy_share`` and ``carries_half_energy`` per example. Summary: ``n``,
        ``total_energy``, ``half_energy_examples``, ``half_energy_share``,
        ``effective_examples``, ``effective_share``, ``largest`` (the :data:`LISTED` largest:
        ``id``, ``grad_norm``, ``share``), ``formula``.
    """
    energy = np.asarray(grad_norm, dtype=np.float64) ** 2
    n = len(energy)
    ids = np.arange(n) if ids is None else np.asarray(ids)
    if n == 0 or not energy.sum() > 0:
        return None
    order = np.lexsort((ids, -energy))                 # largest first, ties by id
    cumulative = np.cumsum(energy[order])
    total = float(cumulative[-1])
    half = int(np.searchsorted(cumulative, 0.5 * total, side="left")) + 1
    carries_half = np.zeros(n, dtype=bool)
    carries_half[order[:half]] = True
    share = energy / total
    # Kish lies in [1, N] (Cauchy-Schwarz); clipped so rounding cannot step outside
    effective = min(max(total ** 2 / float(np.sum(energy ** 2)), 1.0), float(n))
    table = pd.DataFrame({"energy_share": share, "carries_half_energy": carries_half},
                         index=pd.Index(ids, name="index"))
    summary = {
        "n": n, "total_energy": total,
        "half_energy_examples": half, "half_energy_share": half / n,
        "effective_examples": effective, "effective_share": effective / n,
        "largest": [{"id": int(ids[i]), "grad_norm": float(np.sqrt(energy[i])),
                     "share": float(share[i])} for i in order[:LISTED].tolist()],
        "formula": ("energy e_i = grad_norm_i^2; half_energy_examples = the fewest examples, "
                    "largest first, holding at least half of sum e; effective_examples = "
                    "(sum e)^2 / sum e^2 (Kish)"),
    }
    return ConcentrationResult("concentration", table, summary, share=share,
                               carries_half=carries_half)


def _run(system, results, config: AnalysisConfig) -> ConcentrationResult | None:
    if system.grad_norm is None:
        return None
    return analyze_concentration(system.grad_norm, ids=system.ids, config=config)


ANALYZER = Analyzer(
    name="concentration", run=_run, section="concentration",
    metrics={"half_energy_share": Metric(
                 "half_energy_share", "share of the examples that together hold half the total "
                 "squared gradient norm, largest first (0.5 = an even pull; small = a few "
                 "examples dominate the update)"),
             "effective_example_share": Metric(
                 "effective_share", "Kish effective sample size of the squared gradient "
                 "norms over N: (sum e)^2 / (N sum e^2) (1 = even, 1/N = one example)")})
