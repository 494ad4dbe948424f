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


class AnalysisResults:
    """Every analyzer's result, by name, in the order they ran.

    Attributes
    ----------
    ids : (N,) int64
        Example ids in row order.
    config : AnalysisConfig
    <name> : AnalyzerResult or None
        Each analyzer's typed result by its registered name (``results.spectrum``,
        ``results.pairs``, ``results.determinacy``...; ``registry.analyzers()`` lists them);
        None when it did not run (no features, no examples, no token profiles...).
    graph : networkx.Graph or None
        The constraint graph (``results.zones.graph``: nodes = example ids, edge attribute
        ``weight`` = signed cosine, node attribute ``zone``).
    """

    def __init__(self, ids: np.ndarray, config: Any = None,
                 results: dict[str, AnalyzerResult] | None = None) -> None:
        self.ids = ids
        self.config = config
        self._by_name: dict[str, AnalyzerResult] = dict(results or {})

    def add(self, name: str, result: AnalyzerResult | None) -> None:
        """Record analyzer ``name``'s result (None: it did not run)."""
        if result is not None:
            self._by_name[name] = result

    def __getattr__(self, name: str) -> AnalyzerResult | None:
        if name.startswith("_"):
            raise AttributeError(name)
        by_name = self.__dict__.get("_by_name", {})
        if name in by_name:
            return by_name[name]
        from constraintlab.analysis.registry import analyzers

        if any(a.name == name for a in analyzers()):
            return None
        raise AttributeError(f"no analyzer named {name!r}")

    @property
    def graph(self) -> Any:
        zones = self._by_name.get("zones")
        return getattr(zones, "graph", None)

    @property
    def results(self) -> list[AnalyzerResult]:
        """The analyzers that ran, in pipeline order."""
        return list(self._by_name.values())

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
