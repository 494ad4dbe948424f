"""``analyze_constraints``: every analyzer in one call."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from constraintlab.analysis.config import AnalysisConfig
from constraintlab.analysis.contradictions import analyze_contradictions
from constraintlab.analysis.families import analyze_families
from constraintlab.analysis.layers import analyze_layers
from constraintlab.analysis.pairs import analyze_pairs
from constraintlab.analysis.redundancy import analyze_redundancy, record_text
from constraintlab.analysis.response import analyze_response
from constraintlab.analysis.result import AnalysisResults
from constraintlab.analysis.spectrum import analyze_spectrum, determinacy_verdict
from constraintlab.analysis.volatility import analyze_volatility
from constraintlab.analysis.zones import analyze_zones
from constraintlab.errors import InputError, Problem

logger = logging.getLogger(__name__)

__all__ = ["analyze_constraints", "analyze_store"]


def _check_matrix(name: str, M, n: int | None) -> np.ndarray:
    M = np.asarray(M)
    if M.ndim != 2 or M.shape[0] == 0 or M.shape[1] == 0:
        raise InputError([Problem(f"<{name}>", 1, f"{name} must be a non-empty 2-D array "
                                  f"(N, k), got shape {M.shape}")])
    if not np.issubdtype(M.dtype, np.floating):
        M = M.astype(np.float32)
    if n is not None and M.shape[0] != n:
        raise InputError([Problem(f"<{name}>", 1, f"{name} has {M.shape[0]} rows but there are "
                                  f"{n} examples")])
    bad = ~np.isfinite(M).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise InputError([Problem(f"<{name}>", int(r) + 1, "row has non-finite values "
                                  "(NaN or inf)") for r in rows])
    return M


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
        ``.spectrum`` (with ``summary["determinacy"]``: the verdict), ``.pairs``,
        ``.redundancy``, ``.contradictions``, ``.zones``, ``.graph``, ``.response`` (the
        first-order response map, when there are features; see
        :func:`constraintlab.analysis.response.analyze_response`), ``.volatility`` (with
        tokens), ``.families`` (with examples), ``.layers`` (with energy); ``.table()``,
        ``.all_pairs()``, ``.summary()``.
    """
    config = config if config is not None else AnalysisConfig()
    n = len(examples) if examples is not None else None
    if features is None and examples is None and input_factors is None:
        raise InputError([Problem("<analysis>", 1, "nothing to analyse: give features, "
                                  "examples, or both")])
    if features is not None:
        features = _check_matrix("features", features, n)
        n = features.shape[0]
    if input_factors is not None or output_factors is not None:
        if input_factors is None or output_factors is None:
            raise InputError([Problem("<factors>", 1, "give both input_factors and "
                                      "output_factors, or neither")])
        input_factors = _check_matrix("input_factors", input_factors, n)
        n = input_factors.shape[0]
        output_factors = _check_matrix("output_factors", output_factors, n)
    assert n is not None
    if ids is None:
        ids_arr = (np.array([ex.index for ex in examples], dtype=np.int64)
                   if examples is not None else np.arange(n, dtype=np.int64))
    else:
        ids_arr = np.asarray(ids, dtype=np.int64)
        if ids_arr.shape != (n,) or len(np.unique(ids_arr)) != n:
            raise InputError([Problem("<ids>", 1, f"ids must be {n} distinct integers")])
    res = AnalysisResults(ids=ids_arr, config=config)
    if features is not None:
        res.pairs = analyze_pairs(features, ids=ids_arr, config=config)
        res.spectrum = analyze_spectrum(features, ids=ids_arr, n_params=n_params, config=config)
    if tokens is not None:
        if grad_norm is None or vocab_size is None:
            raise InputError([Problem("<tokens>", 1, "token volatility needs grad_norm and "
                                      "vocab_size with the tokens")])
        if len(tokens) != n:
            raise InputError([Problem("<tokens>", 1, f"token profiles cover {len(tokens)} "
                                      f"examples, there are {n}")])
        res.volatility = analyze_volatility(tokens, grad_norm, vocab_size=vocab_size,
                                            ids=ids_arr, config=config)
    if examples is not None or input_factors is not None:
        res.contradictions = analyze_contradictions(
            examples, input_factors=input_factors, output_factors=output_factors, ids=ids_arr,
            config=config)
    exclude = res.contradictions.arrays["positions"] if res.contradictions else set()
    if examples is not None:
        res.families = analyze_families(
            examples, features=features, ids=ids_arr,
            volatility=(res.volatility.table["volatility"].to_numpy()
                        if res.volatility is not None else None),
            tau=res.pairs.summary["tau"] if res.pairs is not None else None,
            contradictions=exclude if res.contradictions is not None else None, config=config)
    if examples is not None or res.pairs is not None:
        res.redundancy = analyze_redundancy(
            examples, n=n, ids=ids_arr,
            near_parallel=res.pairs.arrays["near_parallel"] if res.pairs else None,
            exclude=exclude,
            families=res.families.arrays["labels"] if res.families is not None else None,
            config=config)
    if res.pairs is not None:
        texts = [record_text(ex) for ex in examples] if examples is not None else None
        res.zones, res.graph = analyze_zones(
            res.pairs.arrays["top_idx"], res.pairs.arrays["top_val"], ids=ids_arr, texts=texts,
            tau=res.pairs.summary["tau"], config=config)
    if features is not None:
        # first-order response map (needs the zones for its zone-by-zone matrix)
        res.response = analyze_response(
            features, ids=ids_arr,
            zones=res.zones.table["zone"].to_numpy() if res.zones is not None else None,
            config=config)
    if energy is not None and modules is not None:
        zone_rank = ([z["zone"] for z in res.zones.summary["zones"]]
                     if res.zones is not None else None)
        res.layers = analyze_layers(
            _check_matrix("energy", energy, n), modules, ids=ids_arr, zone_rank=zone_rank,
            zones=res.zones.table["zone"].to_numpy() if res.zones is not None else None,
            config=config)
    if res.spectrum is not None:
        n_contra = (res.contradictions.summary["contradiction_pairs"]
                    if res.contradictions is not None else None)
        res.spectrum.summary["determinacy"] = determinacy_verdict(
            res.spectrum.summary, n_params=n_params, pairs_summary=res.pairs.summary,
            n_contradictions=n_contra, config=config)
    return res


def analyze_store(
    store,
    *,
    examples: Sequence | None = None,
    config: AnalysisConfig | None = None,
) -> AnalysisResults:
    """:func:`analyze_constraints` on a feature store written by ``extract``.

    Parameters
    ----------
    store : constraintlab.encode.store.FeatureStore
        Anything with ``features`` (N, k), ``input_factors`` / ``output_factors`` (N, d),
        ``n_params`` and a ``table`` whose ``index`` column holds the example ids.
    examples : sequence of N Example, optional
        The examples in store row order (for the lexical analyses and zone labels).
    config : AnalysisConfig, optional
    """
    table = getattr(store, "table", None)
    ids = (table["index"].to_numpy() if table is not None and "index" in table.columns
           else None)
    if examples is not None and ids is not None:
        ex_ids = [ex.index for ex in examples]
        if len(ex_ids) != len(ids) or list(ids) != ex_ids:
            raise InputError([Problem("<store>", 1, "the examples are not the ones of the store "
                                      "(ids or order differ); read the dataset the store was "
                                      "extracted from")])
    tokens = getattr(store, "tokens", None)
    modules = getattr(store, "modules", None)
    has_energy = (table is not None and modules is not None and len(modules)
                  and set(modules["column"]) <= set(table.columns))
    manifest = getattr(store, "manifest", {}) or {}
    return analyze_constraints(
        store.features, examples=examples,
        input_factors=getattr(store, "input_factors", None),
        output_factors=getattr(store, "output_factors", None),
        n_params=getattr(store, "n_params", None), ids=ids,
        tokens=tokens,
        grad_norm=table["grad_norm"].to_numpy() if tokens is not None else None,
        vocab_size=manifest.get("vocab_size") if tokens is not None else None,
        energy=table[list(modules["column"])].to_numpy() if has_energy else None,
        modules=modules if has_energy else None, config=config)
