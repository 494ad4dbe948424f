"""Layer map: where the constraints land in the network.

Each example's squared gradient norm splits exactly over the LoRA sites:
``||g_i||^2 = sum_m E_im`` with ``E_im = ||dl_i/dA_m||^2 + ||dl_i/dB_m||^2`` (the encoder's
per-site energy). A site is one (layer, module kind) cell, e.g. (3, ``self_attn.q_proj``), so
the map of any set S of examples is the (layers x kinds) matrix ``sum_{i in S} E_im`` and its
share of ``sum_{i in S} ||g_i||^2``. Maps are kept for the dataset and for the
``layer_map_zones`` highest-pressure zones; a single example's map is its row of the table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from constraintlab.analysis.config import AnalysisConfig
from constraintlab.analysis.registry import Analyzer
from constraintlab.analysis.result import AnalyzerResult

__all__ = ["LayersResult", "analyze_layers", "layer_matrix"]


@dataclass
class LayersResult(AnalyzerResult):
    """What :func:`analyze_layers` found (the maps are in the summary, each example's own map
    is its table row)."""


def layer_matrix(energy_rows: np.ndarray, layers: np.ndarray, kinds: np.ndarray,
                 layer_order: list[int], kind_order: list[str]) -> np.ndarray:
    """Sum energy over rows and place each site in its (layer, kind) cell.

    Parameters
    ----------
    energy_rows : (n, M) float
    layers, kinds : (M,) the layer index and module kind of each site
    layer_order, kind_order : the matrix's row and column labels

    Returns
    -------
    (len(layer_order), len(kind_order)) float64
    """
    total = np.asarray(energy_rows, dtype=np.float64).sum(axis=0)
    out = np.zeros((len(layer_order), len(kind_order)))
    li = {v: i for i, v in enumerate(layer_order)}
    ki = {v: i for i, v in enumerate(kind_order)}
    for m, (layer, kind) in enumerate(zip(layers, kinds, strict=True)):
        out[li[int(layer)], ki[str(kind)]] += total[m]
    return out


def _map(matrix: np.ndarray, layer_order: list[int], kind_order: list[str]) -> dict:
    total = float(matrix.sum())
    share = matrix / total if total > 0 else np.zeros_like(matrix)
    by_layer, by_kind = share.sum(1), share.sum(0)
    return {"energy": matrix.tolist(), "share": share.tolist(), "total": total,
            "by_layer": by_layer.tolist(), "by_kind": by_kind.tolist(),
            "top_layer": int(layer_order[int(np.argmax(by_layer))]) if total > 0 else None,
            "top_kind": str(kind_order[int(np.argmax(by_kind))]) if total > 0 else None}


def analyze_layers(energy: np.ndarray, modules: pd.DataFrame, *,
                   zones: np.ndarray | None = None, zone_rank: list[int] | None = None,
                   ids: np.ndarray | None = None, config: AnalysisConfig | None = None
                   ) -> LayersResult:
    """The layer map of the dataset, of its zones and of every example.

    Parameters
    ----------
    energy : (N, M) float
        Per-example energy of each LoRA site (columns sum to ``grad_norm**2``).
    modules : DataFrame, M rows
        The sites in column order: ``layer`` (int; -1 outside the numbered blocks), ``kind``
        (``self_attn.q_proj``, ``mlp.down_proj``, ``attn.c_attn``...) and ``column`` (the
        per-example column name, ``energy:<layer>:<kind>``), as ``FeatureStore.modules``.
    zones : (N,) int, optional
        Zone of each example (-1 for outliers).
    zone_rank : list of int, optional
        Zone ids, highest pressure first; the first ``layer_map_zones`` get a map.
    ids : (N,) int, optional
    config : AnalysisConfig

    Returns
    -------
    LayersResult
        ``name="layers"``. Table: one ``energy:<layer>:<kind>`` column per site (the example's
        own map). Summary: ``layers``, ``kinds`` (matrix labels), ``dataset`` (``energy``,
        ``share``, ``by_layer``, ``by_kind``, ``top_layer``, ``top_kind``, ``total``), ``zones``
        (``{zone id: the same}``).

    The inputs are taken as checked (``modules`` has one row per column of ``energy``:
    :class:`constraintlab.analysis.system.ConstraintSystem` checks it once).
    """
    config = config if config is not None else AnalysisConfig()
    energy = np.asarray(energy, dtype=np.float64)
    n, m = energy.shape
    layers = modules["layer"].to_numpy(dtype=np.int64)
    kinds = modules["kind"].to_numpy(dtype=object)
    ids = np.arange(n) if ids is None else np.asarray(ids)
    layer_order = sorted({int(v) for v in layers})
    kind_order = list(dict.fromkeys(str(k) for k in kinds))   # model order
    summary = {"layers": layer_order, "kinds": kind_order, "n_sites": m,
               "dataset": _map(layer_matrix(energy, layers, kinds, layer_order, kind_order),
                               layer_order, kind_order),
               "zones": {}}
    if zones is not None:
        zones = np.asarray(zones)
        for z in (zone_rank or [])[:config.layer_map_zones]:
            rows = zones == z
            if rows.any():
                summary["zones"][str(int(z))] = _map(
                    layer_matrix(energy[rows], layers, kinds, layer_order, kind_order),
                    layer_order, kind_order)
    table = pd.DataFrame(energy, columns=list(modules["column"]),
                         index=pd.Index(ids, name="index"))
    return LayersResult("layers", table, summary)


def _run(system, results, config: AnalysisConfig) -> LayersResult | None:
    if not system.has_layers:
        return None
    zones = results.zones
    return analyze_layers(system.energy, system.modules, ids=system.ids,
                          zone_rank=zones.ranked if zones is not None else None,
                          zones=zones.labels if zones is not None else None, config=config)


ANALYZER = Analyzer(name="layers", run=_run, section="layer_map", after=("zones",))
