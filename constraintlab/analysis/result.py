"""The one result shape every analyzer returns, and the container of all of them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from constraintlab._json import plain  # the one JSON rule (re-exported here)

__all__ = ["PAIR_KINDS", "AnalysisResults", "AnalyzerResult", "PairArrays", "make_pair",
           "plain"]

PAIR_KINDS: tuple[str, ...] = ("exact_duplicate", "near_duplicate", "contradiction", "conflict")


def make_pair(kind: str, a: int, b: int, score: float, detail: dict | None = None) -> dict:
    """One pair ``{"kind", "a", "b", "score", "detail"}`` with ``a < b`` (ids swapped if needed)."""
    a, b = int(a), int(b)
    if a > b:
        a, b = b, a
    return {"kind": kind, "a": a, "b": b, "score": float(score), "detail": plain(detail or {})}


class PairArrays(Sequence):
    """Pairs of one kind held as arrays, read as the dicts of :func:`make_pair`.

    An analyzer with many pairs (the all-pairs pass lists up to ``max_pairs`` conflicts) keeps
    them as arrays; the dicts are made when the pairs are read (the report writes them), not in
    the analysis pass.

    Parameters
    ----------
    kind : str
    a, b : (P,) int
        Example ids, ``a < b``.
    score : (P,) float
    detail : dict of str -> (P,) array, optional
        Per-pair detail values (``{"cos": ...}``).
    """

    def __init__(self, kind: str, a: np.ndarray, b: np.ndarray, score: np.ndarray,
                 detail: dict[str, np.ndarray] | None = None) -> None:
        self.kind = kind
        self.a, self.b = np.asarray(a), np.asarray(b)
        self.score = np.asarray(score, dtype=np.float64)
        self.detail = {k: np.asarray(v, dtype=np.float64) for k, v in (detail or {}).items()}
        if not (len(self.a) == len(self.b) == len(self.score)
                and all(len(v) == len(self.a) for v in self.detail.values())):
            raise ValueError("PairArrays: a, b, score and every detail need one value per pair")

    def __len__(self) -> int:
        return len(self.a)

    def _pair(self, a: int, b: int, score: float, detail: dict) -> dict:
        return {"kind": self.kind, "a": a, "b": b, "score": score, "detail": detail}

    def __iter__(self):
        keys = list(self.detail)
        cols = [self.detail[k].tolist() for k in keys]
        for i, (x, y, sc) in enumerate(zip(self.a.tolist(), self.b.tolist(),
                                           self.score.tolist(), strict=True)):
            yield self._pair(x, y, sc, {k: c[i] for k, c in zip(keys, cols, strict=True)})

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = range(len(self))[i]
        return self._pair(int(self.a[i]), int(self.b[i]), float(self.score[i]),
                          {k: float(v[i]) for k, v in self.detail.items()})

    def __repr__(self) -> str:
        return f"PairArrays({self.kind!r}, {len(self)} pairs)"


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
    pairs : sequence of dict
        ``{"kind", "a", "b", "score", "detail"}``, ``a < b`` (example ids): a list, or a
        :class:`PairArrays` that makes them when read.
    """

    name: str
    table: pd.DataFrame
    summary: dict
    pairs: Sequence[dict] = field(default_factory=list)

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
