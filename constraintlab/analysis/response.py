"""The first-order response map: what one SGD step on one example does to the others' loss.

To first order, one SGD step of size ``eta`` on example i changes the loss of example j by
``-eta * g_i . g_j`` (g = the example's LoRA gradient; here its JL sketch, whose dot products
are unbiased). Every number below is that change **per unit learning rate** (multiply by
``eta`` for a step of size eta), in **nats** (the per-example loss is a mean token NLL).

Sign convention (one for every number of this module): a value is a *loss change*.
**Negative = the step lowers the loss = helps; positive = it raises the loss = hurts.**

- ``net_effect_i = -sum_{j != i} g_i . g_j = -(g_i . s - ||g_i||^2)``, ``s = sum_j g_j``: the
  change of the summed loss of every other example after one unit step on i (no pair pass
  needed). By symmetry it is also the change of ``l_i`` after one unit step on each of the others.
- ``help_effect_i = -sum_{j != i} max(g_i . g_j, 0)`` (<= 0) and
  ``hurt_effect_i = -sum_{j != i} min(g_i . g_j, 0)`` (>= 0); their sum is ``net_effect_i``.
- Top helpers of i: the partners j with the largest ``g_i . g_j > 0`` (a step on j lowers
  ``l_i`` the most, and vice versa); top hurters: the smallest ``g_i . g_j < 0``. Found in
  the blocked pass over the Gram matrix that the all-pairs analyzer runs anyway
  (:class:`PartnerFold`, :func:`constraintlab._kernels.response.block_signed_topm` on its
  cosine blocks scaled back by the row norms; ``analyze_response(..., pairs=...)``), or in a
  pass of its own; memory O(N * m + block^2), never the N x N matrix.
- Zone matrix: ``M[A, B] = -sum_{i in A} sum_{j in B, j != i} g_i . g_j
  = -(S_A . S_B - [A == B] sum_{i in A} ||g_i||^2)`` with ``S_A`` the zone's row sum: the change
  of zone B's summed loss when every member of A takes one unit step (each step evaluated on its
  own from the same weights; self terms excluded). ``M_mean[A, B] = M[A, B] / pairs(A, B)``,
  ``pairs = |A| |B|`` (``|A| (|A| - 1)`` on the diagonal): the average change of one member of B
  per unit step on one member of A (null when there is no pair).

Up to ``exact_max_n`` examples every pair is read; beyond, the top partners and the help/hurt
sums come from ``sample_reference`` random reference examples, the all-pairs analyzer's
(:func:`constraintlab.analysis.blocks.sample_plan`; sums scaled to N - 1 partners);
``net_effect`` and the zone matrix are exact in both modes (sums of vectors, no pair pass).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from constraintlab._kernels.heap import sort_heaps
from constraintlab._kernels.response import block_signed_topm, new_signed_state
from constraintlab.analysis.blocks import (
    Block,
    for_each_block,
    kernel_chunks,
    sample_plan,
    scaled_rows,
)
from constraintlab.analysis.config import AnalysisConfig
from constraintlab.analysis.registry import Analyzer, Metric
from constraintlab.analysis.result import AnalyzerResult

logger = logging.getLogger(__name__)

__all__ = ["SIGN_CONVENTION", "UNITS", "ResponseResult", "analyze_response", "response_sums",
           "signed_top_partners", "zone_matrix"]

SIGN_CONVENTION = ("values are first-order loss changes: negative = the step lowers the loss "
                   "(helps), positive = it raises the loss (hurts)")
UNITS = "nats per unit learning rate, per SGD step, to first order (multiply by the step size)"


@dataclass
class ResponseResult(AnalyzerResult):
    """What :func:`analyze_response` found: the common result plus each example's top
    partners.

    Attributes
    ----------
    helper_idx, hurter_idx : (N, m) int64
        Top helpers (largest ``g_i . g_j > 0`` first) / hurters (most negative first) as row
        positions, -1 = empty slot.
    helper_ids, hurter_ids : (N, m) int64
        The same partners as example ids (-1 = empty).
    helper_effect, hurter_effect : (N, m) float32
        ``-g_i . g_j`` (<= 0 for helpers, >= 0 for hurters; 0 in empty slots).
    """

    helper_idx: np.ndarray | None = field(default=None, repr=False)
    hurter_idx: np.ndarray | None = field(default=None, repr=False)
    helper_ids: np.ndarray | None = field(default=None, repr=False)
    hurter_ids: np.ndarray | None = field(default=None, repr=False)
    helper_effect: np.ndarray | None = field(default=None, repr=False)
    hurter_effect: np.ndarray | None = field(default=None, repr=False)


def response_sums(G: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row sum, squared norms and net effects (float64, chunked).

    Parameters
    ----------
    G : (N, k) float

    Returns
    -------
    s : (k,) float64
        ``sum_j g_j``.
    sq : (N,) float64
        ``||g_i||^2``.
    net : (N,) float64
        ``-(g_i . s - ||g_i||^2)``.
    """
    N, k = G.shape
    s = np.zeros(k, np.float64)
    sq = np.empty(N, np.float64)
    for i in range(0, N, chunk):
        x = np.asarray(G[i:i + chunk], dtype=np.float64)
        s += x.sum(0)
        sq[i:i + chunk] = np.einsum("ij,ij->i", x, x)
    dot = np.empty(N, np.float64)
    for i in range(0, N, chunk):
        dot[i:i + chunk] = np.asarray(G[i:i + chunk], dtype=np.float64) @ s
    return s, sq, -(dot - sq)


@dataclass
class SignedPartners:
    """Per example, the partners with the largest and the smallest dot products
    ``g_i . g_j`` (j != i) and the sums of the positive and negative ones.

    Attributes
    ----------
    hi_idx : (N, m) int64
        Partners by ``g_i . g_j`` descending (row positions, -1 = empty slot).
    hi_val : (N, m) float32
    lo_idx : (N, m) int64
        Partners by ``g_i . g_j`` ascending.
    lo_val : (N, m) float32
    pos_sum, neg_sum : (N,) float64
        Sums of the positive / negative dot products over the partners read.
    reference : (R,) int64 or None
        Sampled mode: the sorted reference rows every row was compared with; None: every pair.
    """

    hi_idx: np.ndarray
    hi_val: np.ndarray
    lo_idx: np.ndarray
    lo_val: np.ndarray
    pos_sum: np.ndarray
    neg_sum: np.ndarray
    reference: np.ndarray | None = None

    @property
    def m(self) -> int:
        """Slots per example."""
        return self.hi_idx.shape[1]


class PartnerFold:
    """A fold for :func:`constraintlab.analysis.blocks.for_each_block`: the signed top-m
    partners and help/hurt sums of every block, by
    :func:`constraintlab._kernels.response.block_signed_topm`.

    Parameters
    ----------
    weights : (N,) float
        Scale of each row back to its dot products: the row norms when the blocks hold
        cosines of unit rows, ones when they hold the dot products.
    m : int
        Partners kept per example and sign.
    n_chunks : int, optional
        Row / column chunks of the kernel; default: :func:`kernel_chunks` at each call (the
        results do not depend on it).
    """

    #: writes only the state of its block's rows (and, symmetric, columns):
    #: :func:`constraintlab.analysis.blocks.for_each_block` may fold disjoint blocks at once
    row_owned = True

    def __init__(self, weights: np.ndarray, m: int, n_chunks: int | None = None) -> None:
        self.w = np.ascontiguousarray(weights, dtype=np.float32)
        self.state = new_signed_state(len(self.w), m)
        self.n_chunks = n_chunks

    def __call__(self, b: Block) -> None:
        block_signed_topm(b.C, b.rows, b.cols, b.diag, b.symmetric,
                          self.n_chunks or kernel_chunks(),
                          self.w[b.rows], self.w[b.cols], *self.state)

    def result(self, reference: np.ndarray | None = None) -> SignedPartners:
        """The partners sorted best first (after the last block)."""
        hi_key, hi_idx, hi_val, lo_key, lo_idx, lo_val, pos_sum, neg_sum = self.state
        _, hi_idx, hi_val = sort_heaps(hi_key, hi_idx, hi_val)
        _, lo_idx, lo_val = sort_heaps(lo_key, lo_idx, lo_val)
        return SignedPartners(hi_idx, hi_val, lo_idx, lo_val, pos_sum, neg_sum, reference)


def response_top_m(n: int, config: AnalysisConfig) -> int:
    """Partners kept per example and sign: ``response_top_m``, at most n - 1, at least 1."""
    return max(1, min(config.response_top_m, max(n - 1, 1)))


def signed_top_partners(G: np.ndarray, m: int, *, block_size: int = 2048,
                        reference: np.ndarray | None = None) -> SignedPartners:
    """Per example, the m partners with the largest and the m with the smallest dot product
    (its own pass over the Gram blocks; :func:`constraintlab.analysis.pairs.analyze_pairs`
    folds the same in its pass).

    Parameters
    ----------
    G : (N, k) float
    m : int
    block_size : int
        Rows per block; memory O(N * m + block_size^2).
    reference : (R,) int64, optional
        Sorted row positions: compare every row with these only (sampled mode). Default: every
        pair.

    Returns
    -------
    SignedPartners
    """
    Gn, norms = scaled_rows(G)
    fold = PartnerFold(norms, m)
    for_each_block(Gn, block_size, [fold], reference=reference, desc="response pairs")
    return fold.result(reference)


def zone_matrix(G: np.ndarray, zones: np.ndarray, sq: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Zone-to-zone first-order loss changes (see the module docstring).

    Parameters
    ----------
    G : (N, k) float
    zones : (N,) int
        Zone of each row; negative (outliers, -1) is a group of its own, listed last.
    sq : (N,) float64, optional
        ``||g_i||^2`` when already known.

    Returns
    -------
    zone_ids : (Z,) int64
        Zones in ascending order, then -1 when present.
    sizes : (Z,) int64
    M : (Z, Z) float64
        ``M[a, b]``: change of zone b's summed loss per unit step on each member of zone a.
    pairs : (Z, Z) int64
        Example pairs behind each entry (``|A| |B|``, ``|A| (|A| - 1)`` on the diagonal).
    """
    zones = np.maximum(np.asarray(zones, dtype=np.int64), -1)
    if sq is None:
        sq = response_sums(G)[1]
    uniq, inv = np.unique(zones, return_inverse=True)  # -1 first when present
    has_out = bool(len(uniq)) and uniq[0] < 0
    zone_ids = np.concatenate([uniq[1:], uniq[:1]]) if has_out else uniq
    row_zone = (inv - 1) % len(uniq) if has_out else inv  # outliers to the last slot
    Z, k = len(zone_ids), G.shape[1]
    S = np.zeros((Z, k), np.float64)
    self_sq = np.zeros(Z, np.float64)
    sizes = np.zeros(Z, np.int64)
    for i in range(0, G.shape[0], 4096):
        x = np.asarray(G[i:i + 4096], dtype=np.float64)
        np.add.at(S, row_zone[i:i + 4096], x)
    np.add.at(self_sq, row_zone, sq)
    np.add.at(sizes, row_zone, 1)
    M = -(S @ S.T)
    M[np.diag_indices(Z)] += self_sq
    pairs = np.outer(sizes, sizes)
    pairs[np.diag_indices(Z)] -= sizes
    return zone_ids, sizes, M, pairs


def _listed(order: np.ndarray, keep: np.ndarray, ids: np.ndarray, net: np.ndarray,
            sq: np.ndarray, n: int) -> list[dict]:
    sel = [int(p) for p in order if keep[p]][:n]
    return [{"index": int(ids[p]), "net_effect": float(net[p]), "self_effect": float(-sq[p])}
            for p in sel]


def analyze_response(
    features: np.ndarray,
    *,
    ids: np.ndarray | None = None,
    zones: np.ndarray | None = None,
    pairs: AnalyzerResult | None = None,
    config: AnalysisConfig | None = None,
) -> ResponseResult:
    """The first-order response map of the whole dataset (module docstring: signs and units).

    Parameters
    ----------
    features : (N, k) float
        Projected per-example gradients (not normalised: magnitudes matter here).
    ids : (N,) int, optional
        Example ids (default ``0..N-1``).
    zones : (N,) int, optional
        Zone of each row (``zones`` analyzer's ``zone`` column, -1 = outlier); enables the
        zone matrix.
    pairs : PairsResult, optional
        :func:`constraintlab.analysis.pairs.analyze_pairs` on the same features and config:
        its ``partners`` (folded in the all-pairs pass) are used, and no second pass over the
        Gram blocks runs. Without it (or without partners of the right shape) this function
        runs its own pass.
    config : AnalysisConfig
        ``response_top_m``, ``response_list``, ``block_size``, ``exact_max_n``,
        ``sample_pairs``, ``sample_reference``, ``seed``.

    Returns
    -------
    ResponseResult
        ``name="response"``. Table (index = example id): ``net_effect``, ``help_effect``,
        ``hurt_effect``, ``self_effect`` (``-||g_i||^2``: its own loss change), ``top_helper``
        / ``top_hurter`` (example id, -1 = none) with ``top_helper_effect`` /
        ``top_hurter_effect`` (``-g_i . g_j``: change of l_i per unit step on that partner).
        Summary: ``sign_convention``, ``units``, ``method``, ``formulas``, ``top_m``,
        ``total_effect``, ``helpful_examples``, ``harmful_examples``, ``most_helpful``,
        ``most_harmful`` (lists of ``{"index", "net_effect", "self_effect"}``), and with zones
        ``zone_ids``, ``zone_sizes``, ``zone_matrix``, ``zone_matrix_mean`` (nested lists, row =
        the zone trained on, column = the zone affected; null mean where no pair),
        ``zone_net_effect`` (row sums without the diagonal), ``zone_matrix_rule``. Attributes
        ``helper_idx`` / ``hurter_idx`` (N, m) row positions (-1 = empty), ``helper_ids`` /
        ``hurter_ids`` (example ids), ``helper_effect`` / ``hurter_effect`` (N, m) float32
        (0 in empty slots).
    """
    config = config if config is not None else AnalysisConfig()
    G = np.asarray(features)
    if G.ndim != 2:
        raise ValueError(f"features must be 2-D (N, k), got shape {G.shape}")
    N, k = G.shape
    ids = np.arange(N, dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
    _, sq, net = response_sums(G)
    m = response_top_m(N, config)
    sp = getattr(pairs, "partners", None)
    if sp is not None and sp.hi_idx.shape != (N, m):
        logger.warning("response map: the pairs result holds %s partners, %s wanted; "
                       "running its own pass", sp.hi_idx.shape, (N, m))
        sp = None
    if sp is None:
        reference = (None if N <= config.exact_max_n else
                     sample_plan(N, config.sample_pairs, config.sample_reference, config.seed)[2])
        sp = signed_top_partners(G, m, block_size=config.block_size, reference=reference)
    reference = sp.reference
    if reference is None:
        method = "exact"
        denom_scale = np.ones(N)
    else:
        in_ref = np.zeros(N, bool)
        in_ref[reference] = True
        method = "sampled"
        denom_scale = (N - 1) / np.maximum(len(reference) - in_ref, 1)
    hi_idx, hi_val, lo_idx, lo_val = sp.hi_idx, sp.hi_val, sp.lo_idx, sp.lo_val
    pos_sum, neg_sum = sp.pos_sum, sp.neg_sum
    help_ok = (hi_idx >= 0) & (hi_val > 0)
    hurt_ok = (lo_idx >= 0) & (lo_val < 0)
    helper_idx = np.where(help_ok, hi_idx, -1)
    hurter_idx = np.where(hurt_ok, lo_idx, -1)
    helper_eff = np.where(help_ok, -hi_val, 0.0).astype(np.float32)
    hurter_eff = np.where(hurt_ok, -lo_val, 0.0).astype(np.float32)
    helper_ids = np.where(help_ok, ids[np.maximum(hi_idx, 0)], -1)
    hurter_ids = np.where(hurt_ok, ids[np.maximum(lo_idx, 0)], -1)
    table = pd.DataFrame({
        "net_effect": net,
        "help_effect": -pos_sum * denom_scale,
        "hurt_effect": -neg_sum * denom_scale,
        "self_effect": -sq,
        "top_helper": helper_ids[:, 0],
        "top_helper_effect": helper_eff[:, 0].astype(np.float64),
        "top_hurter": hurter_ids[:, 0],
        "top_hurter_effect": hurter_eff[:, 0].astype(np.float64),
    }, index=pd.Index(ids, name="index"))
    order = np.argsort(net, kind="stable")
    summary: dict = {
        "n": N, "k": k, "method": method,
        "sign_convention": SIGN_CONVENTION,
        "units": UNITS,
        "formulas": {
            "net_effect": "-sum_{j != i} g_i . g_j: change of the other examples' summed loss "
                          "after one unit SGD step on i (equally: change of l_i after one unit "
                          "step on each other example)",
            "help_effect": "-sum_{j != i} max(g_i . g_j, 0) (<= 0)",
            "hurt_effect": "-sum_{j != i} min(g_i . g_j, 0) (>= 0); help + hurt = net",
            "self_effect": "-||g_i||^2: change of the example's own loss",
            "top_helper_effect": "-g_i . g_j of the partner with the largest positive dot product",
            "top_hurter_effect": "-g_i . g_j of the partner with the most negative dot product",
        },
        "top_m": m,
        "total_effect": float(net.sum()),
        "helpful_examples": int((net < 0).sum()),
        "harmful_examples": int((net > 0).sum()),
        "most_helpful": _listed(order, net < 0, ids, net, sq, config.response_list),
        "most_harmful": _listed(order[::-1], net > 0, ids, net, sq, config.response_list),
    }
    if method == "sampled":
        summary["method_note"] = (f"N = {N} > exact_max_n = {config.exact_max_n}: top partners "
                                  f"and help/hurt sums against {len(reference)} random "
                                  "reference examples (sums scaled to N - 1 partners); "
                                  "net_effect and the zone matrix are exact")
    if zones is not None:
        zone_ids, sizes, M, pairs = zone_matrix(G, zones, sq)
        mean = [[float(M[a, b] / pairs[a, b]) if pairs[a, b] else None
                 for b in range(len(zone_ids))] for a in range(len(zone_ids))]
        off = M.sum(1) - np.diag(M)
        summary.update({
            "zone_ids": zone_ids.tolist(),
            "zone_sizes": sizes.tolist(),
            "zone_matrix": M.tolist(),
            "zone_matrix_mean": mean,
            "zone_net_effect": off.tolist(),
            "zone_matrix_rule": "row A = the zone trained on (one unit step on each member), "
                                "column B = the zone whose summed loss changes; "
                                "M[A, B] = -(S_A . S_B - [A == B] sum_{i in A} ||g_i||^2); "
                                "mean = M / example pairs; zone -1 = outliers",
        })
    logger.info("response map: %d examples, %d helpful, %d harmful (net effect)", N,
                summary["helpful_examples"], summary["harmful_examples"])
    return ResponseResult("response", table, summary, [], helper_idx=helper_idx,
                          hurter_idx=hurter_idx, helper_ids=helper_ids, hurter_ids=hurter_ids,
                          helper_effect=helper_eff, hurter_effect=hurter_eff)


def _run(system, results, config: AnalysisConfig) -> ResponseResult | None:
    pairs, zones = results.pairs, results.zones
    if system.features is None or pairs is None:
        return None
    # its partners were folded in the pairs pass (one walk over the Gram blocks); the zones
    # give its zone-by-zone matrix
    return analyze_response(system.features, pairs=pairs, ids=system.ids,
                            zones=zones.labels if zones is not None else None, config=config)


ANALYZER = Analyzer(
    name="response", run=_run, section="response", after=("pairs", "zones"),
    metrics={"harmful_examples": Metric("harmful_examples", "examples whose unit step raises "
                                        "the others' summed loss (first order)")})
