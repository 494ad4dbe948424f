"""``analyze_constraints``: every analyzer in one call.

The inputs become one checked :class:`constraintlab.analysis.system.ConstraintSystem`; the
analyzers (:func:`constraintlab.analysis.registry.analyzers`: each module declares its own)
run in dependency order, each reading the system and the typed results before it
(``PairsResult.near_parallel``, ``ContradictionsResult.positions``, ``FamiliesResult.labels``,
``ZonesResult.labels``...); the verdict is its own result.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import numpy as np

from constraintlab.analysis.config import AnalysisConfig
from constraintlab.analysis.registry import analyzers
from constraintlab.analysis.result import AnalysisResults
from constraintlab.analysis.system import ConstraintSystem
from constraintlab.analysis.text import TextView

logger = logging.getLogger(__name__)

__all__ = ["analyze_constraints", "analyze_store", "analyze_system"]


def analyze_system(system: ConstraintSystem, *, config: AnalysisConfig | None = None
                   ) -> AnalysisResults:
    """Run every analyzer that the system allows, in dependency order.

    An analyzer that lacks its inputs (no features, no examples, no token profiles, no
    per-site energies) returns None and is absent from the results.

    Parameters
    ----------
    system : ConstraintSystem
        Checked inputs (:meth:`ConstraintSystem.build` / :meth:`ConstraintSystem.from_store`).
    config : AnalysisConfig, optional

    Returns
    -------
    AnalysisResults
    """
    config = config if config is not None else AnalysisConfig()
    s = system
    if s.text is not None and s.text.config != config:  # built for other settings
        s = dataclasses.replace(s, text=TextView(s.examples, config))
    results = AnalysisResults(ids=s.ids, config=config)
    for analyzer in analyzers():
        logger.debug("analyzer %s", analyzer.name)
        results.add(analyzer.name, analyzer.run(s, results, config))
    return results


def analyze_constraints(
    features: np.ndarray | None = None,
    *,
    examples: Sequence | None = None,
    input_factors: np.ndarray | None = None,
    output_factors: np.ndarray | None = None,
    n_params: int | None = None,
    ids: Sequence[int] | None = None,
    tokens=None,
    grad_norm: np.ndarray | None = None,
    vocab_size: int | None = None,
    energy: np.ndarray | None = None,
    modules=None,
    n_truncated: np.ndarray | None = None,
    config: AnalysisConfig | None = None,
) -> AnalysisResults:
    """Run every analyzer that the inputs allow.

    Parameters
    ----------
    features : (N, k) float, optional
        Constraint rows (per-example projected gradients). Without them only the lexical
        analyses (exact / near duplicates from text, text contradictions) run.
    examples : sequence of N Example, optional
        Aligned with the rows; enables the lexical analyses and zone labels.
    input_factors, output_factors : (N, d_in), (N, d_out) float, optional
        The encoder's pooled input-side representation and output-side error signal (second
        contradiction signal).
    n_params : int, optional
        P, the trainable LoRA parameters (unknowns of the ledger).
    ids : sequence of N int, optional
        Example ids; default ``Example.index`` when examples are given, else ``0..N-1``.
    tokens : TokenProfiles, optional
        Per-token NLL and rank of the target tokens (with ``grad_norm`` and ``vocab_size``:
        token volatility).
    grad_norm : (N,) float, optional
        Norm of each example's full LoRA gradient.
    vocab_size : int, optional
        The model's vocabulary size.
    energy : (N, M) float, optional
        Per-site gradient energy; with ``modules`` (``layer``, ``kind``, ``column`` per site):
        the layer map.
    n_truncated : (N,) int, optional
        Tokens the encoder dropped per example at ``max_length`` (the suspects' ``truncated``
        rule).
    config : AnalysisConfig

    Returns
    -------
    AnalysisResults
        ``.spectrum``, ``.pairs``, ``.redundancy``, ``.contradictions``, ``.zones``, ``.graph``,
        ``.response`` (the first-order response map, when there are features; see
        :func:`constraintlab.analysis.response.analyze_response`), ``.volatility`` (with
        tokens), ``.families`` (with examples), ``.layers`` (with energy), ``.determinacy``
        (the verdict); ``.table()``, ``.all_pairs()``, ``.summary()``.

    Raises
    ------
    InputError
        The inputs do not fit together (:meth:`ConstraintSystem.build`).
    """
    system = ConstraintSystem.build(
        features, examples=examples, input_factors=input_factors,
        output_factors=output_factors, n_params=n_params, ids=ids, tokens=tokens,
        grad_norm=grad_norm, vocab_size=vocab_size, energy=energy, modules=modules,
        n_truncated=n_truncated, config=config)
    return analyze_system(system, config=config)


def analyze_store(
    store,
    *,
    examples: Sequence | None = None,
    config: AnalysisConfig | None = None,
) -> AnalysisResults:
    """:func:`analyze_system` on the system of a feature store written by ``extract``
    (parameters as :meth:`ConstraintSystem.from_store`)."""
    system = ConstraintSystem.from_store(store, examples=examples, config=config)
    return analyze_system(system, config=config)
