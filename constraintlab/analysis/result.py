"""The one result shape every analyzer returns, and the container of all of them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from constraintlab._json import plain  # the one JSON rule (re-exported here)

__all__ = ["PAIR_KINDS", "AnalysisResults", "AnalyzerResult", "make_pair", "plain"]

PAIR_KINDS: tuple[str, ...] = ("exact_duplicate", "near_duplicate", "contradiction", "conflict")


def make_pair(kind: str, a: int, b: int, score: float, detail: dict | None = None) -> dict:
    """One pair ``{"kind", "a", "b", "score", "detail"}`` with ``a < b`` (ids swapped if needed)."""
    a, b = int(a), int(b)
    if a > b:
        a, b = b, a
    return {"kind": kind, "a": a, "b": b, "score": float(score), "detail": plain(detail or {})}


@dataclass
class AnalyzerResult:
    """What one analyzer found.

    Attributes
    ----------
    name : str
        The analyzer (``spectrum``, ``pairs``, ``redundancy``, ``contradictions``, ``zones``).
    table : pandas.DataFrame
        One row per example, index = ``Example.index`` (name ``index``); boolean ``is_<issue>``
        flags and float ``<issue>_score`` columns (plus counts).
    summary : dict
        JSON-serialisable plain Python types.
    pairs : list of dict
        ``{"kind", "a", "b", "score", "detail"}``, ``a < b`` (example ids).
    arrays : dict of str -> ndarray
        Deprecated: raw arrays for the next analyzers. Each analyzer's result is now a
        subclass that names them (``PairsResult.top_idx``, ``FamiliesResult.labels``,
        ``ContradictionsResult.positions``, ...); not part of the report.
    """

    name: str
    table: pd.DataFrame
    summary: dict
    pairs: list[dict] = field(default_factory=list)
    arrays: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.summary = plain(self.summary)


@dataclass
class AnalysisResults:
    """Every analyzer's result, plus the constraint graph.

    Attributes
    ----------
    ids : (N,) int64
        Example ids in row order.
    spectrum, pairs, redundancy, contradictions, zones, response, volatility, families, layers,
    determinacy, growth, interference : AnalyzerResult or None
        Each analyzer's typed result (``SpectrumResult``, ``PairsResult``, ...,
        ``DeterminacyResult``: the verdict, ``growth``: the growth curve, ``InterferenceResult``:
        interference against the data's null); None when the analyzer could not run (no
        features, no examples, no token profiles or no per-site energies).
    graph : networkx.Graph or None
        The constraint graph (nodes = example ids, edge attribute ``weight`` = signed cosine,
        node attribute ``zone``).
    config : AnalysisConfig
    """

    ids: np.ndarray
    spectrum: AnalyzerResult | None = None
    pairs: AnalyzerResult | None = None
    redundancy: AnalyzerResult | None = None
    contradictions: AnalyzerResult | None = None
    zones: AnalyzerResult | None = None
    response: AnalyzerResult | None = None
    volatility: AnalyzerResult | None = None
    families: AnalyzerResult | None = None
    layers: AnalyzerResult | None = None
    determinacy: AnalyzerResult | None = None
    growth: AnalyzerResult | None = None
    interference: AnalyzerResult | None = None
    graph: Any = None
    config: Any = None

    @property
    def results(self) -> list[AnalyzerResult]:
        """The analyzers that ran, in pipeline order."""
        return [r for r in (self.spectrum, self.growth, self.pairs, self.volatility,
                            self.redundancy, self.contradictions, self.families, self.zones,
                            self.interference, self.response, self.layers, self.determinacy)
                if r is not None]

    def table(self) -> pd.DataFrame:
        """All per-example tables side by side (one row per example, index = example id)."""
        t = pd.DataFrame(index=pd.Index(self.ids, name="index"))
        for r in self.results:
            t = t.join(r.table, how="left")
        return t

    def all_pairs(self, kinds: Sequence[str] | None = None) -> list[dict]:
        """Every analyzer's pairs (optionally only ``kinds``), sorted by kind, then score
        (highest first), then ids."""
        out = [p for r in self.results for p in r.pairs if kinds is None or p["kind"] in kinds]
        out.sort(key=lambda p: (p["kind"], -p["score"], p["a"], p["b"]))
        return out

    def summary(self) -> dict:
        """``{analyzer name: summary}`` (JSON-serialisable)."""
        return {r.name: r.summary for r in self.results}
