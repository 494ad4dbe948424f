"""``analyze_constraints``: every analyzer in one call.

The inputs become one checked :class:`constraintlab.analysis.system.ConstraintSystem`; the
analyzers run in a fixed order, each reading the system and the typed results before it
(``PairsResult.near_parallel``, ``ContradictionsResult.positions``, ``FamiliesResult.labels``,
``ZonesResult.labels``...), and the verdict comes last, as its own result.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import numpy as np

from constraintlab.analysis.config import AnalysisConfig
from constraintlab.analysis.contradictions import analyze_contradictions
from constraintlab.analysis.families import analyze_families
from constraintlab.analysis.growth import analyze_growth
from constraintlab.analysis.interference import analyze_interference, null_reference
from constraintlab.analysis.layers import analyze_layers
from constraintlab.analysis.pairs import analyze_pairs
from constraintlab.analysis.redundancy import analyze_redundancy
from constraintlab.analysis.response import analyze_response
from constraintlab.analysis.result import AnalysisResults
from constraintlab.analysis.spectrum import (
    analyze_determinacy,
    analyze_spectrum,
    legacy_report_determinacy,
)
from constraintlab.analysis.system import ConstraintSystem
from constraintlab.analysis.text import TextView
from constraintlab.analysis.volatility import analyze_volatility
from constraintlab.analysis.zones import analyze_zones

logger = logging.getLogger(__name__)

__all__ = ["analyze_constraints", "analyze_store", "analyze_system"]


def analyze_system(system: ConstraintSystem, *, config: AnalysisConfig | None = None
                   ) -> AnalysisResults:
    """Run every analyzer that the system allows, in a fixed order.

    Order: pairs, spectrum, growth curve, volatility (token profiles), contradictions
    (examples or factors), families (examples), redundancy, the data's null (features: a
    Gaussian with the mean and covariance of the unit rows, run through the same pairs and
    zones), zones (judged against that null), interference (against that null) and the
    response map (features), the layer map (energies), and the verdict (growth curve,
    contradictions; interference named beside it).

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
    text = s.text
    if text is not None and text.config != config:  # built for other settings
        text = TextView(s.examples, config)
        s = dataclasses.replace(s, text=text)
    ids = s.ids
    X = s.features
    pairs = spectrum = volatility = contradictions = families = redundancy = None
    zones = graph = response = layers = determinacy = growth = interference = null = None
    if X is not None:
        pairs = analyze_pairs(X, ids=ids, config=config)
        spectrum = analyze_spectrum(X, ids=ids, n_params=s.n_params, config=config)
        growth = analyze_growth(X, ids=ids, n_params=s.n_params,
                                n_sites=len(s.modules) if s.modules is not None else None,
                                config=config)
    if s.tokens is not None:
        volatility = analyze_volatility(s.tokens, s.grad_norm, vocab_size=s.vocab_size,
                                        ids=ids, config=config)
    if s.examples is not None or s.has_factors:
        contradictions = analyze_contradictions(
            s.examples, input_factors=s.input_factors, output_factors=s.output_factors,
            ids=ids, text=text, config=config)
    exclude = contradictions.positions if contradictions is not None else set()
    if s.examples is not None:
        families = analyze_families(
            s.examples, features=X, ids=ids, text=text,
            volatility=volatility.score if volatility is not None else None,
            tau=pairs.summary["tau"] if pairs is not None else None,
            contradictions=exclude if contradictions is not None else None, config=config)
    if s.examples is not None or pairs is not None:
        redundancy = analyze_redundancy(
            s.examples, n=s.n, ids=ids,
            near_parallel=pairs.near_parallel if pairs is not None else None,
            exclude=exclude, families=families.labels if families is not None else None,
            text=text, config=config)
    if pairs is not None:
        null = null_reference(X, config=config)
        zones, graph = analyze_zones(
            pairs.top_idx, pairs.top_val, ids=ids,
            texts=text.record if text is not None else None,
            tau=pairs.summary["tau"], features=X, merge_above=null.coherence_max,
            pressure_above=null.pressure_threshold(config.pressure_null_sigmas),
            config=config)
        interference = analyze_interference(
            X, zones.labels, null=null, ids=ids,
            conflict_density=pairs.summary.get("conflict_density"), config=config)
        # first-order response map: its partners were folded in the pairs pass (one walk
        # over the Gram blocks); the zones give its zone-by-zone matrix
        response = analyze_response(X, pairs=pairs, ids=ids, zones=zones.labels, config=config)
    if s.has_layers:
        layers = analyze_layers(
            s.energy, s.modules, ids=ids,
            zone_rank=zones.ranked if zones is not None else None,
            zones=zones.labels if zones is not None else None, config=config)
    if spectrum is not None:
        determinacy = analyze_determinacy(spectrum, growth=growth,
                                          contradictions=contradictions,
                                          interference=interference, config=config)
        # deprecated: where the v1 report reads the verdict (old names by their old rules)
        spectrum.summary["determinacy"] = legacy_report_determinacy(
            spectrum.summary, determinacy.summary, n_params=s.n_params)
    return AnalysisResults(
        ids=ids, spectrum=spectrum, pairs=pairs, redundancy=redundancy,
        contradictions=contradictions, zones=zones, response=response, volatility=volatility,
        families=families, layers=layers, determinacy=determinacy, growth=growth,
        interference=interference, graph=graph, config=config)


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
    config : AnalysisConfig

    Returns
    -------
    AnalysisResults
        ``.spectrum``, ``.pairs``, ``.redundancy``, ``.contradictions``, ``.zones``, ``.graph``,
        ``.response`` (the first-order response map, when there are features; see
        :func:`constraintlab.analysis.response.analyze_response`), ``.volatility`` (with
        tokens), ``.families`` (with examples), ``.layers`` (with energy), ``.determinacy``
        (the verdict: growth rule + consistency), ``.growth`` (the growth curve),
        ``.interference`` (against the data's null); ``.table()``, ``.all_pairs()``,
        ``.summary()``. ``spectrum.summary["determinacy"]`` is deprecated (the v1 report's
        old verdict names).

    Raises
    ------
    InputError
        The inputs do not fit together (:meth:`ConstraintSystem.build`).
    """
    system = ConstraintSystem.build(
        features, examples=examples, input_factors=input_factors,
        output_factors=output_factors, n_params=n_params, ids=ids, tokens=tokens,
        grad_norm=grad_norm, vocab_size=vocab_size, energy=energy, modules=modules,
        config=config)
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
