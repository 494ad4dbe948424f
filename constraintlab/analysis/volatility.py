r"""Token volatility: how far each example's target lies from what the model already predicts.

Per example, over its predicted target tokens t (NLL ``l_t = -log p(y_t | context)``, rank
``r_t`` = vocabulary entries with a larger logit, 0 = the model's top prediction):

- ``mean_nll`` = mean_t l_t (the example's loss), ``max_nll`` = max_t l_t;
- ``topk_miss_share`` = share of tokens with ``r_t >= volatility_top_k`` (outside the top-k);
- ``grad_norm`` = ||g_i|| of the full LoRA gradient (from the encoder).

The volatility score combines them, each first mapped to [0, 1) by ``x / (x + scale)`` (0.5
when x equals its scale; it never saturates, so the worst examples stay ordered):

.. math::

    s_{mean} = \frac{mean\_nll}{mean\_nll + \ln V}, \quad
    s_{max} = \frac{max\_nll}{max\_nll + \ln V}, \quad
    s_{topk} = topk\_miss\_share, \quad
    s_{grad} = \frac{g_i}{g_i + \mathrm{median}_j\, g_j}

    volatility_i = \frac{\sum_c w_c s_c}{\sum_c w_c}, \quad w = volatility\_weights

``ln V`` (V the vocabulary size) is the surprise of a uniform guess, the natural scale of a
token NLL. The gradient part is relative to the dataset (0.5 at the median gradient norm):
gradient norms have no model-independent scale. Percentiles are over the dataset.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from constraintlab.analysis.config import AnalysisConfig
from constraintlab.analysis.registry import Analyzer, Metric
from constraintlab.analysis.result import AnalyzerResult

logger = logging.getLogger(__name__)

__all__ = ["COMPONENTS", "VolatilityResult", "analyze_volatility", "token_statistics"]

COMPONENTS: tuple[str, ...] = ("mean_nll", "max_nll", "topk_miss_share", "grad_norm")
PERCENTILES: tuple[int, ...] = (50, 90, 95, 99)
PROFILE_MAX_TOKENS = 400   # tokens of a listed example's profile kept in the report


@dataclass
class VolatilityResult(AnalyzerResult):
    """What :func:`analyze_volatility` found.

    Attributes
    ----------
    components : (N, 4) float64
        The score's parts per row position, in :data:`COMPONENTS` order, each in [0, 1]:
        ``mean_nll / (mean_nll + ln V)``, ``max_nll / (max_nll + ln V)``, ``topk_miss_share``,
        ``grad_norm / (grad_norm + median)``.
    score : (N,) float64
        The volatility (the table's ``volatility``).
    """

    components: np.ndarray | None = field(default=None, repr=False)
    score: np.ndarray | None = field(default=None, repr=False)


def token_statistics(offsets: np.ndarray, nll: np.ndarray, rank: np.ndarray, top_k: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-example mean NLL, max NLL and share of tokens outside the top-k.

    Parameters
    ----------
    offsets : (N + 1,) int64
        Example n's tokens are ``offsets[n]:offsets[n + 1]`` (every example has >= 1).
    nll : (T,) float
    rank : (T,) int
    top_k : int

    Returns
    -------
    mean_nll, max_nll, topk_miss_share : (N,) float64
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    counts = np.diff(offsets)
    if (counts < 1).any():
        raise ValueError("every example needs at least one target token")
    nll = np.asarray(nll, dtype=np.float64)
    starts = offsets[:-1]
    mean = np.add.reduceat(nll, starts) / counts
    mx = np.maximum.reduceat(nll, starts)
    miss = np.add.reduceat((np.asarray(rank) >= top_k).astype(np.float64), starts) / counts
    return mean, mx, miss


def _percentiles(x: np.ndarray) -> dict:
    out = {f"p{q}": float(np.percentile(x, q)) for q in PERCENTILES}
    out["max"] = float(x.max())
    out["mean"] = float(x.mean())
    return out


def analyze_volatility(tokens, grad_norm: np.ndarray, *, vocab_size: int,
                       ids: np.ndarray | None = None, config: AnalysisConfig | None = None
                       ) -> VolatilityResult:
    """Volatility of every example, dataset percentiles, the most volatile examples.

    Parameters
    ----------
    tokens : TokenProfiles
        ``offsets`` (N + 1), ``nll`` (T,), ``rank`` (T,), and ``pieces(row)`` (token texts);
        see :class:`constraintlab.encode.store.TokenProfiles`.
    grad_norm : (N,) float
        Norm of each example's full LoRA gradient.
    vocab_size : int
        V, the model's vocabulary (output rows); ``ln V`` scales the NLL parts.
    ids : (N,) int, optional
        Example ids (default ``0..N-1``).
    config : AnalysisConfig
        ``volatility_top_k``, ``volatility_weights``, ``volatility_list``, ``volatility_tokens``.

    Returns
    -------
    VolatilityResult
        ``name="volatility"``. Table: ``mean_nll``, ``max_nll``, ``topk_miss_share``,
        ``volatility`` and ``volatility_percentile`` (share of examples with a lower or equal
        score, in [0, 1]). Summary: ``formula``, ``top_k``, ``weights``, ``ln_vocab``,
        ``grad_norm_median``, ``percentiles`` (``p50``...``p99``, ``max``, ``mean`` of the score
        and of each component), ``most_volatile`` (the ``volatility_list`` highest: their
        numbers, the ``volatility_tokens`` most surprising tokens, and the token profile as
        ``[text, nll]`` pairs, at most 400 tokens). ``components``: (N, 4) parts; ``score``.

    The inputs are taken as checked (``grad_norm`` of shape (N,), ``vocab_size >= 2``:
    :class:`constraintlab.analysis.system.ConstraintSystem` checks them once).
    """
    config = config if config is not None else AnalysisConfig()
    offsets = np.asarray(tokens.offsets)
    n = len(offsets) - 1
    grad_norm = np.asarray(grad_norm, dtype=np.float64)
    ids = np.arange(n) if ids is None else np.asarray(ids)
    k = config.volatility_top_k
    mean_nll, max_nll, miss = token_statistics(offsets, tokens.nll, tokens.rank, k)
    ln_v = math.log(vocab_size)
    med = float(np.median(grad_norm))
    s_grad = grad_norm / (grad_norm + med) if med > 0 else np.zeros(n)
    parts = np.column_stack([mean_nll / (mean_nll + ln_v), max_nll / (max_nll + ln_v), miss,
                             s_grad])
    w = np.asarray(config.volatility_weights, dtype=np.float64)
    score = parts @ w / w.sum()
    # percentile of each example: share of examples scoring <= it
    order = np.sort(score)
    pct = np.searchsorted(order, score, side="right") / n
    table = pd.DataFrame({"mean_nll": mean_nll, "max_nll": max_nll, "topk_miss_share": miss,
                          "volatility": score, "volatility_percentile": pct},
                         index=pd.Index(ids, name="index"))
    top = np.lexsort((np.arange(n), -score))[:config.volatility_list]
    listed = []
    for row in top.tolist():
        a, b = int(offsets[row]), int(offsets[row + 1])
        tok_nll = np.asarray(tokens.nll[a:b], dtype=np.float64)
        tok_rank = np.asarray(tokens.rank[a:b])
        pieces = tokens.pieces(row)
        worst = np.lexsort((np.arange(b - a), -tok_nll))[:config.volatility_tokens]
        listed.append({
            "id": int(ids[row]), "volatility": float(score[row]),
            "percentile": float(pct[row]),
            "mean_nll": float(mean_nll[row]), "max_nll": float(max_nll[row]),
            "topk_miss_share": float(miss[row]), "grad_norm": float(grad_norm[row]),
            "n_tokens": b - a,
            "tokens": [{"position": int(t), "text": pieces[t], "nll": float(tok_nll[t]),
                        "rank": int(tok_rank[t])} for t in worst.tolist()],
            "profile": [[pieces[t], round(float(tok_nll[t]), 4)]
                        for t in range(min(b - a, PROFILE_MAX_TOKENS))],
            "profile_truncated": b - a > PROFILE_MAX_TOKENS,
        })
    percentiles = {"volatility": _percentiles(score)}
    for name, col in zip(COMPONENTS, (mean_nll, max_nll, miss, grad_norm), strict=True):
        percentiles[name] = _percentiles(col)
    summary = {
        "n": n, "top_k": k, "weights": dict(zip(COMPONENTS, w.tolist(), strict=True)),
        "ln_vocab": ln_v, "vocab_size": int(vocab_size), "grad_norm_median": med,
        "formula": ("volatility = weighted mean of mean_nll / (mean_nll + ln V), "
                    "max_nll / (max_nll + ln V), topk_miss_share, grad_norm / (grad_norm + "
                    "median grad_norm)"),
        "percentiles": percentiles,
        "most_volatile": listed,
    }
    return VolatilityResult("volatility", table, summary, components=parts, score=score)


def _run(system, results, config: AnalysisConfig) -> VolatilityResult | None:
    if system.tokens is None:
        return None
    return analyze_volatility(system.tokens, system.grad_norm, vocab_size=system.vocab_size,
                              ids=system.ids, config=config)


ANALYZER = Analyzer(
    name="volatility", run=_run, section="volatility",
    metrics={"volatility_p99": Metric("percentiles.volatility.p99", "99th percentile of the "
                                      "token volatility score (0 = the model already predicts "
                                      "the target, 1 = it knows nothing of it)"),
             "max_volatility": Metric("percentiles.volatility.max", "the highest token "
                                      "volatility score")})
