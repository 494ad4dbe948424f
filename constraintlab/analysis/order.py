"""Training orders in constraint space, and what each order buys.

Three strategies, each a permutation of the N rows:

``gradual``
    Families (duplicate / near-duplicate sets, e.g. the ``redundancy`` analyzer's
    ``duplicate_set`` column) are kept contiguous: each family is one *unit* (direction = the
    normalised mean of its members' unit rows, volatility = the members' mean; members in
    ascending volatility, then row order); every other example is a unit of its own. The path
    starts at the unit of lowest volatility; from the current unit c the next one is the
    unvisited unit v minimising

        ``cost(v) = (1 - cos(c, v)) + w * q(v)``,

    ``q(v)`` in [0, 1] the volatility quantile of v among all units (rank-based, so the loss
    scale does not matter) and ``w = AnalysisConfig.order_volatility_weight`` (0.5): a greedy
    nearest-neighbour path in cosine distance, biased to the examples the model already
    predicts well. Ties go to the unit whose first row comes first. Cost: one U x U Gram
    matrix (up to 8192 units), beyond that O(U^2 k) memory traffic (minutes at U ~ 20k).
``zones``
    One zone after another (zones ordered by the mean volatility of the examples placed in
    them, ascending, ties by zone id; outliers, zone -1, last); inside a zone the ``gradual``
    rule, restarted at the zone's lowest-volatility unit. A family goes to the zone most of its
    members are in (ties: the lower zone id; outliers only when no member has a zone).
``random``
    ``np.random.default_rng(seed).permutation(N)`` (families not kept together).

Volatility: the ``volatility`` score of :mod:`constraintlab.analysis.volatility` (token
surprise, top-k misses and gradient norm); for tables without it, the per-example loss (mean
target NLL), else the gradient norm.

Path metrics (:func:`path_metrics`), on unit-length rows ``u``: a step is the Euclidean distance
``||u_{t+1} - u_t|| = sqrt(2 - 2 cos)`` (in [0, 2]; a zero row is at distance 1 from every unit
row); ``path_length`` = sum of the steps, ``max_step``, ``mean_step``; the volatility trend is
the Spearman correlation of volatility with position (positive = gentle examples first) and the
mean volatility of each quarter of the order.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from constraintlab.analysis.config import AnalysisConfig
from constraintlab.analysis.pairs import unit_rows
from constraintlab.errors import ConfigError, InputError, Problem

logger = logging.getLogger(__name__)

__all__ = ["PATH_METRIC", "STRATEGIES", "STRATEGY_RULES", "order_examples", "order_report",
           "order_units", "path_metrics", "plan_order", "volatility_proxy"]

STRATEGIES: tuple[str, ...] = ("gradual", "zones", "random")
STRATEGY_RULES: dict[str, str] = {
    "gradual": "families contiguous; start at the lowest-volatility unit; next = the unvisited "
               "unit minimising (1 - cos) + w * volatility quantile (w = "
               "order_volatility_weight); ties to the lower row position",
    "zones": "zones by mean volatility ascending (outliers last); inside a zone the gradual rule",
    "random": "np.random.default_rng(seed).permutation(N)",
}
PATH_METRIC = ("step = Euclidean distance between consecutive unit-length constraint rows, "
               "sqrt(2 - 2 cos), in [0, 2]")


def volatility_proxy(table: pd.DataFrame | None = None, features: np.ndarray | None = None
                     ) -> tuple[np.ndarray, str]:
    """The per-example volatility used for ordering, and where it came from.

    Parameters
    ----------
    table : DataFrame, optional
        Rows in feature order with a ``volatility``, ``loss`` and/or ``grad_norm`` column (the
        report's examples table, or the feature store's ``examples.csv``); the first present
        and finite one is used.
    features : (N, k) float, optional
        Fallback: the norm of each row.

    Returns
    -------
    volatility : (N,) float64
    source : str
        ``"volatility"``, ``"loss"``, ``"grad_norm"`` or ``"feature_norm"``.
    """
    for col in ("volatility", "loss", "grad_norm"):
        if table is not None and col in table.columns:
            v = pd.to_numeric(table[col], errors="coerce").to_numpy(dtype=np.float64)
            if len(v) and np.isfinite(v).all():
                return v, col
    if features is None:
        raise InputError([Problem("<order>", 1, "no volatility: give a table with a loss or "
                                  "grad_norm column, or the features")])
    X = np.asarray(features, dtype=np.float64)
    return np.sqrt(np.square(X).sum(1)), "feature_norm"


def _quantiles(v: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    if len(v) <= 1:
        return np.zeros(len(v))
    return (rankdata(v, method="average") - 1.0) / (len(v) - 1.0)


def _units(n: int, volatility: np.ndarray, families: np.ndarray | None) -> list[np.ndarray]:
    """Families (members by volatility, then position) and singletons, by first position."""
    if families is None:
        return [np.array([i]) for i in range(n)]
    fam = np.asarray(families, dtype=np.int64)
    units: dict[tuple[int, int], list[int]] = {}
    for i in range(n):
        key = (0, int(fam[i])) if fam[i] >= 0 else (1, i)
        units.setdefault(key, []).append(i)
    out = []
    for members in units.values():
        m = np.array(members)
        out.append(m[np.lexsort((m, volatility[m]))])
    out.sort(key=lambda m: int(m.min()))
    return out


def _greedy(D: np.ndarray, qw: np.ndarray, vol: np.ndarray, gram_max_units: int = 8192
            ) -> np.ndarray:
    """Greedy path over units (rows of ``D``, unit directions), see the module docstring.

    Up to ``gram_max_units`` units the cosines come from one Gram matrix (BLAS, U^2 float32,
    256 MiB at the limit) and a step reads one row of it; beyond, each step is a
    matrix-vector product over the unvisited rows (compacted as they thin out): O(U^2 k)
    memory traffic in all, minutes at U ~ 20k.

    Parameters
    ----------
    D : (U, k) float32
    qw : (U,) float64
        ``w * q``.
    vol : (U,) float64
    gram_max_units : int

    Returns
    -------
    (U,) int64, the visiting order.
    """
    U = D.shape[0]
    if U == 0:
        return np.zeros(0, np.int64)
    D = np.ascontiguousarray(D, dtype=np.float32)
    gram = D @ D.T if U <= gram_max_units else None
    if gram is None:
        logger.warning("gradual order over %d units: one matrix-vector product per step "
                       "(O(U^2 k)); this can take minutes", U)
    cur = int(np.lexsort((np.arange(U), vol))[0])
    visited = np.zeros(U, bool)
    visited[cur] = True
    order = [cur]
    rem, Dc, qc = np.arange(U), D, qw
    n_dead = 1
    for _ in range(U - 1):
        if 2 * n_dead > len(rem):  # compact: read only the unvisited units
            keep = ~visited[rem]
            rem, qc = rem[keep], qc[keep]
            Dc = Dc[keep] if gram is None else None
            n_dead = 0
        cos = gram[cur, rem] if gram is not None else Dc @ D[cur]
        cost = (1.0 - cos.astype(np.float64)) + qc
        cost[visited[rem]] = np.inf
        cur = int(rem[int(np.argmin(cost))])
        visited[cur] = True
        n_dead += 1
        order.append(cur)
    return np.array(order, np.int64)


def order_examples(
    features: np.ndarray,
    volatility: np.ndarray,
    *,
    strategy: str = "gradual",
    zones: np.ndarray | None = None,
    families: np.ndarray | None = None,
    seed: int = 0,
    config: AnalysisConfig | None = None,
) -> np.ndarray:
    """A training order of the rows (module docstring: the exact rules).

    Parameters
    ----------
    features : (N, k) float
        Constraint rows (projected gradients).
    volatility : (N,) float
        Per-example volatility (:func:`volatility_proxy`); lower = the model already predicts
        the example well.
    strategy : {"gradual", "zones", "random"}
    zones : (N,) int, optional
        Zone of each row (-1 = outlier); required by ``"zones"``.
    families : (N,) int, optional
        Family (duplicate set) of each row, -1 = none; kept contiguous by ``gradual``/``zones``.
    seed : int
        Seed of ``random``.
    config : AnalysisConfig
        ``order_volatility_weight``.

    Returns
    -------
    (N,) int64
        Row positions in training order (a permutation of ``0..N-1``).
    """
    config = config if config is not None else AnalysisConfig()
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown order strategy {strategy!r}; choose one of "
                          f"{', '.join(STRATEGIES)}")
    X = np.asarray(features)
    N = X.shape[0]
    vol = np.asarray(volatility, dtype=np.float64)
    if vol.shape != (N,) or not np.isfinite(vol).all():
        raise InputError([Problem("<order>", 1, f"volatility must be {N} finite numbers")])
    if strategy == "random":
        return np.random.default_rng(seed).permutation(N).astype(np.int64)
    units = _units(N, vol, families)
    Xn, _ = unit_rows(X)
    D = np.stack([Xn[m].astype(np.float64).mean(0) for m in units]) if units else Xn[:0]
    D = unit_rows(D)[0]
    uvol = np.array([vol[m].mean() for m in units])
    qw = config.order_volatility_weight * _quantiles(uvol)
    if strategy == "gradual":
        groups = [np.arange(len(units))]
    else:
        if zones is None:
            raise ConfigError("the zones order needs the zone of each example")
        z = np.asarray(zones, dtype=np.int64)
        if z.shape != (N,):
            raise InputError([Problem("<order>", 1, f"zones must have {N} entries")])
        uz = np.empty(len(units), np.int64)
        for u, m in enumerate(units):
            vals, counts = np.unique(z[m], return_counts=True)
            best = vals[counts == counts.max()]
            uz[u] = best[best >= 0].min() if (best >= 0).any() else -1
        zone_ids = [int(x) for x in np.unique(uz)]
        mean_vol = {zi: float(vol[np.concatenate([units[u] for u in np.flatnonzero(uz == zi)])]
                              .mean()) for zi in zone_ids}
        zone_ids.sort(key=lambda zi: (zi < 0, mean_vol[zi], zi))
        groups = [np.flatnonzero(uz == zi) for zi in zone_ids]
    out = []
    for g in groups:
        path = _greedy(D[g], qw[g], uvol[g])
        out.extend(units[u] for u in g[path])
    order = np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)
    logger.info("%s order of %d examples (%d units)", strategy, N, len(units))
    return order


def path_metrics(features: np.ndarray, volatility: np.ndarray, order: Sequence[int]) -> dict:
    """What an order looks like in constraint space (module docstring: definitions).

    Parameters
    ----------
    features : (N, k) float
    volatility : (N,) float
    order : (N,) int
        Row positions in training order.

    Returns
    -------
    dict
        ``path_length``, ``mean_step``, ``max_step``, ``max_step_at`` (0-based position of the
        step's second example, None when N < 2), ``volatility_spearman`` (None when undefined),
        ``volatility_by_quarter`` (mean volatility of each quarter, first to last; fewer when
        N < 4).
    """
    from scipy.stats import spearmanr

    order = np.asarray(order, dtype=np.int64)
    Xn, _ = unit_rows(np.asarray(features)[order])
    X64 = Xn.astype(np.float64)
    steps = np.sqrt(np.square(X64[1:] - X64[:-1]).sum(1))
    vol = np.asarray(volatility, dtype=np.float64)[order]
    rho = None
    if len(vol) >= 2 and np.ptp(vol) > 0:
        rho = float(spearmanr(np.arange(len(vol)), vol).statistic)
    quarters = [float(q.mean()) for q in np.array_split(vol, min(4, len(vol))) if len(q)]
    return {
        "path_length": float(steps.sum()),
        "mean_step": float(steps.mean()) if len(steps) else 0.0,
        "max_step": float(steps.max()) if len(steps) else 0.0,
        "max_step_at": int(np.argmax(steps)) + 1 if len(steps) else None,
        "volatility_spearman": rho,
        "volatility_by_quarter": quarters,
    }


def order_report(
    features: np.ndarray,
    volatility: np.ndarray,
    order: np.ndarray,
    *,
    strategy: str,
    seed: int,
    ids: np.ndarray | None = None,
    volatility_source: str = "loss",
    config: AnalysisConfig | None = None,
) -> dict:
    """The order next to a random one with the same seed (JSON-serialisable).

    Parameters
    ----------
    features : (N, k) float
    volatility : (N,) float
    order : (N,) int
        Row positions in the chosen order.
    strategy : str
    seed : int
    ids : (N,) int, optional
        Example ids of the rows (default ``0..N-1``).
    volatility_source : str
    config : AnalysisConfig

    Returns
    -------
    dict
        ``strategy``, ``rule``, ``seed``, ``n_examples``, ``volatility_source``,
        ``volatility_weight``, ``path_metric``, ``chosen`` and ``random``
        (:func:`path_metrics`), ``path_length_ratio`` (chosen / random, None when random is 0),
        ``order`` (example ids in training order).
    """
    config = config if config is not None else AnalysisConfig()
    N = np.asarray(features).shape[0]
    ids = np.arange(N, dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
    rand = np.random.default_rng(seed).permutation(N)
    chosen, baseline = path_metrics(features, volatility, order), path_metrics(features,
                                                                                 volatility, rand)
    return {
        "strategy": strategy, "rule": STRATEGY_RULES[strategy], "seed": int(seed),
        "n_examples": int(N), "volatility_source": volatility_source,
        "volatility_weight": config.order_volatility_weight, "path_metric": PATH_METRIC,
        "chosen": chosen, "random": baseline,
        "path_length_ratio": (chosen["path_length"] / baseline["path_length"]
                              if baseline["path_length"] > 0 else None),
        "order": [int(i) for i in ids[np.asarray(order, dtype=np.int64)]],
    }


def order_units(table: pd.DataFrame) -> np.ndarray | None:
    """Rows kept together by ``gradual``/``zones``: variant families, then duplicate sets.

    Parameters
    ----------
    table : DataFrame
        Per-example findings in row order, with the ``family`` (variant families) and/or
        ``duplicate_set`` (redundancy) columns; missing values and -1 mean "none".

    Returns
    -------
    (N,) int64 or None
        Unit label of each row (-1 = a unit of its own): a family's label, else its duplicate
        set shifted past the family labels. None when the table has neither column.
    """
    n = len(table)
    fam = (table["family"].fillna(-1).to_numpy(dtype=np.int64) if "family" in table
           else np.full(n, -1, np.int64))
    dup = (table["duplicate_set"].fillna(-1).to_numpy(dtype=np.int64)
           if "duplicate_set" in table else np.full(n, -1, np.int64))
    if (fam < 0).all() and (dup < 0).all():
        return None if "duplicate_set" not in table else dup
    return np.where(fam >= 0, fam, np.where(dup >= 0, dup + fam.max() + 1, -1))


def plan_order(features: np.ndarray, table: pd.DataFrame, *, strategy: str = "gradual",
               seed: int = 0, ids: np.ndarray | None = None,
               config: AnalysisConfig | None = None) -> tuple[np.ndarray, dict]:
    """Order the rows of one analysis and describe the order.

    Parameters
    ----------
    features : (N, k) float
        Constraint rows.
    table : DataFrame
        The analysis' per-example table in row order (``AnalysisResults.table()``, plus the
        encoder's ``loss`` / ``grad_norm``): volatility (:func:`volatility_proxy`), ``zone``
        (-1 or missing = outlier), ``family`` and ``duplicate_set`` (:func:`order_units`).
    strategy : {"gradual", "zones", "random"}
    seed : int
        Seed of ``random`` and of the random baseline.
    ids : (N,) int, optional
        Example ids of the rows (default ``0..N-1``).
    config : AnalysisConfig, optional

    Returns
    -------
    order : (N,) int64
        Row positions in training order.
    summary : dict
        :func:`order_report` of that order.
    """
    volatility, source = volatility_proxy(table, features)
    zones = table["zone"].fillna(-1).to_numpy(dtype=np.int64) if "zone" in table else None
    order = order_examples(features, volatility, strategy=strategy, zones=zones,
                           families=order_units(table), seed=seed, config=config)
    summary = order_report(features, volatility, order, strategy=strategy, seed=seed, ids=ids,
                           volatility_source=source, config=config)
    return order, summary
