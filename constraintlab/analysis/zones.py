"""Constraint graph and pressure zones.

Graph: nodes are examples (by id); each example is linked to its top-m neighbours by ``|cos|``
when ``|cos| > zone_edge_min`` (default: the conflict threshold tau, i.e. above the noise floor);
edge attribute ``weight`` is the signed cosine, ``abs_weight`` its magnitude. Examples left
without edges are outliers.

Zones: Louvain communities (networkx, seeded) on ``abs_weight``; communities of one example are
outliers too. Per zone, over its internal edges:

- ``conflict_share`` = negative edge mass / total edge mass (sum of ``|w|``), in [0, 1];
- ``mean_alignment`` = mean signed weight, in [-1, 1];
- ``density`` = internal edges / (size (size - 1) / 2), in [0, 1];
- ``pressure = conflict_share * mean_abs_weight * log(1 + size)``: how much of the zone
  collides, how strongly its members are coupled, and (sub-linearly) how many they are.

Zones are ranked by pressure (then size); zone 0 is the highest-pressure zone. Labels are the
zone's most distinctive TF-IDF terms (mean member TF-IDF minus the corpus mean).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import pandas as pd

from constraintlab.analysis.config import AnalysisConfig
from constraintlab.analysis.registry import Analyzer, Metric
from constraintlab.analysis.result import AnalyzerResult

logger = logging.getLogger(__name__)

__all__ = ["ZonesResult", "analyze_zones", "build_graph", "export_graphml"]


@dataclass
class ZonesResult(AnalyzerResult):
    """What :func:`analyze_zones` found.

    Attributes
    ----------
    labels : (N,) int64
        Zone of each row position (its rank, -1 = outlier), as the table's ``zone``.
    ranked : list of int
        Zone ids, highest pressure first.
    graph : networkx.Graph or None
        The constraint graph (node attributes ``zone`` and ``label``).
    """

    labels: np.ndarray | None = field(default=None, repr=False)
    ranked: list[int] = field(default_factory=list)
    graph: nx.Graph | None = field(default=None, repr=False)


def build_graph(top_idx: np.ndarray, top_val: np.ndarray, ids: np.ndarray,
                edge_min: float) -> nx.Graph:
    """The constraint graph from top-m lists.

    Parameters
    ----------
    top_idx : (N, m) int64
        Row positions of each example's neighbours (-1 = empty).
    top_val : (N, m) float
        Signed cosines.
    ids : (N,) int
        Example ids (node names).
    edge_min : float
        Keep edges with ``|cos| > edge_min``.
    """
    G = nx.Graph()
    G.add_nodes_from(int(i) for i in ids)
    rows, cols = np.nonzero((top_idx >= 0) & (np.abs(top_val) > edge_min))
    a = ids[rows]
    b = ids[top_idx[rows, cols]]
    w = top_val[rows, cols].astype(np.float64)
    G.add_edges_from((int(x), int(y), {"weight": float(v), "abs_weight": abs(float(v))})
                     for x, y, v in zip(a, b, w, strict=True) if x != y)
    return G


def _labels(texts: Sequence[str], zones: list[list[int]], n_terms: int) -> list[str]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    try:
        vec = TfidfVectorizer(stop_words="english", max_features=50_000, sublinear_tf=True,
                              token_pattern=r"(?u)\b[^\W\d_]{2,}\b")
        M = vec.fit_transform(texts)
    except ValueError:  # empty vocabulary
        return [""] * len(zones)
    terms = np.asarray(vec.get_feature_names_out())
    mean_all = np.asarray(M.mean(axis=0)).ravel()
    out = []
    for members in zones:
        d = np.asarray(M[members].mean(axis=0)).ravel() - mean_all
        top = np.argsort(-d, kind="stable")[:n_terms]
        out.append(" / ".join(terms[t] for t in top if d[t] > 0))
    return out


def analyze_zones(
    top_idx: np.ndarray,
    top_val: np.ndarray,
    *,
    ids: np.ndarray | None = None,
    texts: Sequence[str] | None = None,
    tau: float | None = None,
    config: AnalysisConfig | None = None,
) -> tuple[ZonesResult, nx.Graph]:
    """Constraint graph, Louvain zones ranked by pressure, outliers.

    Parameters
    ----------
    top_idx : (N, m) int64
    top_val : (N, m) float
        From ``analyze_pairs(...).top_idx`` / ``.top_val``.
    ids : (N,) int, optional
    texts : sequence of N str, optional
        Example texts for the zone labels.
    tau : float, optional
        Default edge threshold when ``config.zone_edge_min`` is None (0 if both are None).
    config : AnalysisConfig

    Returns
    -------
    result : ZonesResult
        ``name="zones"``. Table: ``zone`` (rank, -1 = outlier), ``is_outlier``,
        ``is_pressure_zone``, ``zone_pressure``, ``pressure_score`` (zone pressure / the largest,
        in [0, 1]). Summary: ``zones`` (ranked list of dicts), ``outliers``, ``pressure_rule``.
    graph : networkx.Graph
        Node attributes ``zone`` and ``label``.
    """
    config = config if config is not None else AnalysisConfig()
    N = top_idx.shape[0]
    ids = np.arange(N) if ids is None else np.asarray(ids)
    edge_min = config.zone_edge_min if config.zone_edge_min is not None else (tau or 0.0)
    G = build_graph(top_idx, top_val, ids, edge_min)
    pos = {int(i): p for p, i in enumerate(ids)}
    core = G.subgraph([v for v in G if G.degree(v) > 0])
    comms = (nx.community.louvain_communities(core, weight="abs_weight",
                                              resolution=config.louvain_resolution,
                                              seed=config.seed) if core.number_of_nodes() else [])
    zones = []
    outliers = sorted(int(v) for v in G if G.degree(v) == 0)
    for c in comms:
        members = sorted(int(v) for v in c)
        if len(members) < 2:
            outliers.extend(members)
            continue
        sub = G.subgraph(members)
        w = np.array([d["weight"] for _, _, d in sub.edges(data=True)], dtype=np.float64)
        absw = np.abs(w)
        total = absw.sum()
        size = len(members)
        conflict_share = float(absw[w < 0].sum() / total) if total > 0 else 0.0
        mean_abs = float(absw.mean()) if len(w) else 0.0
        zones.append({
            "size": size,
            "members": members,
            "internal_edges": len(w),
            "conflict_share": conflict_share,
            "mean_alignment": float(w.mean()) if len(w) else 0.0,
            "mean_abs_weight": mean_abs,
            "density": 2.0 * len(w) / (size * (size - 1)),
            "pressure": conflict_share * mean_abs * math.log1p(size),
        })
    zones.sort(key=lambda z: (-z["pressure"], -z["size"], z["members"][0]))
    outliers.sort()
    if texts is not None and zones:
        labels = _labels(list(texts), [[pos[m] for m in z["members"]] for z in zones],
                         config.zone_terms)
    else:
        labels = [""] * len(zones)
    zone_of = np.full(N, -1, np.int64)
    pressure = np.zeros(N)
    is_pz = np.zeros(N, bool)
    for rank, (z, lab) in enumerate(zip(zones, labels, strict=True)):
        z["zone"] = rank
        z["label"] = lab or f"zone {rank}"
        z["is_pressure_zone"] = z["conflict_share"] >= config.zone_conflict_share
        p = [pos[m] for m in z["members"]]
        zone_of[p] = rank
        pressure[p] = z["pressure"]
        is_pz[p] = z["is_pressure_zone"]
    for v in G:
        zi = int(zone_of[pos[v]])
        G.nodes[v]["zone"] = zi
        G.nodes[v]["label"] = zones[zi]["label"] if zi >= 0 else "outlier"
    pmax = pressure.max() if N and pressure.max() > 0 else 1.0
    table = pd.DataFrame({
        "zone": zone_of,
        "is_outlier": zone_of < 0,
        "is_pressure_zone": is_pz,
        "zone_pressure": pressure,
        "pressure_score": np.clip(pressure / pmax, 0.0, 1.0),
    }, index=pd.Index(ids, name="index"))
    summary = {
        "count": len(zones),
        "pressure_zones": int(sum(z["is_pressure_zone"] for z in zones)),
        "max_zone_pressure": max((z["pressure"] for z in zones), default=0.0),
        "zones": [{"id": z["zone"], "rank": z["zone"] + 1, "label": z["label"],
                   "size": z["size"], "members": z["members"],
                   "internal_edges": z["internal_edges"],
                   "internal_conflict_share": z["conflict_share"],
                   "mean_alignment": z["mean_alignment"], "density": z["density"],
                   "pressure": z["pressure"], "is_pressure_zone": z["is_pressure_zone"]}
                  for z in zones],
        "outliers": outliers,
        "n_outliers": len(outliers),
        "edge_min": edge_min,
        "graph_edges": G.number_of_edges(),
        "pressure_rule": "conflict_share * mean_abs_weight * log(1 + size)",
        "louvain": {"seed": config.seed, "resolution": config.louvain_resolution,
                    "weight": "abs(cos)"},
    }
    return ZonesResult("zones", table, summary, labels=zone_of,
                       ranked=[z["zone"] for z in zones], graph=G), G


def _run(system, results, config: AnalysisConfig) -> ZonesResult | None:
    pairs = results.pairs
    if pairs is None:
        return None
    text = system.text
    zones, _ = analyze_zones(pairs.top_idx, pairs.top_val, ids=system.ids,
                             texts=text.record if text is not None else None,
                             tau=pairs.summary["tau"], config=config)
    return zones


ANALYZER = Analyzer(
    name="zones", run=_run, section="zones", after=("pairs",),
    metrics={"zones": Metric("count", "communities of the constraint graph"),
             "pressure_zones": Metric("pressure_zones", "zones whose internal conflict share "
                                      "passes the threshold"),
             "max_zone_pressure": Metric("max_zone_pressure", "the highest zone pressure "
                                         "score")})


def export_graphml(graph: nx.Graph, path) -> None:
    """Write the constraint graph as GraphML (node attributes ``zone``, ``label``; edge
    attributes ``weight`` (signed cosine) and ``abs_weight``)."""
    nx.write_graphml(graph, str(path))
