r"""What the model can judge: the capability statement of the suspect checks.

Model capability (``summary["capability"]``, :func:`capability`)
    The model-based signals are only as good as the model's grip on the data. Stated, each
    against a yardstick of the data itself: the mean target NLL against the entropy of the
    data's own target-token unigram distribution (``nll_ratio``); how much of the target the
    input explains (``relative_input_gain`` = nats explained / nats without the input, over
    the tokens ``input_dependence`` sums) with the distribution of the per-example input
    dependence (median; share of examples below ``capability_near_zero`` nats/token); and,
    where the targets write out calculations, how well the model predicts the digits of the
    computed results (``arithmetic``). Below ``capability_min_gain`` the model barely
    conditions on the input: swapped and off-topic targets are out of its reach; above
    ``capability_max_nll_ratio`` it hardly predicts the targets: surprise-based checks are
    out of reach; above ``capability_max_result_nll`` nats/digit it does not compute, so a
    changed result that no written calculation contradicts is out of reach (a stated bound,
    not a calibration: no model that computes runs offline here; the reference model's
    signals find changed intermediate results at chance, AUROC 0.49-0.57, consistent with
    its 1.6 nats/digit). The other thresholds sit between the reference model on GSM8K test
    rows (its domain) and on Alpaca rows (out of it), measured by
    ``benchmarks/bench_suspects.py`` (numbers in the
    :class:`~constraintlab.analysis.config.AnalysisConfig` docstring). A signal out of reach
    is left out of the score and the flags (``suspect_gate``): out of its domain the
    reference model ranks off-topic replies as *less* surprising than the data and flags
    clean rows far above ``suspect_alpha``, so its verdicts there would mislead; the columns
    are still filled and the summary says which signals were left out.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from constraintlab.analysis.config import AnalysisConfig
from constraintlab.analysis.suspects.rules import result_positions
from constraintlab.analysis.suspects.signals import input_dependence, scored_tokens

__all__ = ["capability"]


def _settings(config: Any) -> AnalysisConfig:
    """The settings to use: ``config`` (an :class:`AnalysisConfig`, whose ``suspect_*`` and
    ``capability_*`` fields are read) or the defaults."""
    return config if config is not None else AnalysisConfig()



def capability(offsets: np.ndarray, nll: np.ndarray, token_ids: np.ndarray,
               nll_noinput: np.ndarray | None, config: Any = None,
               pieces: list[list[str]] | None = None) -> dict:
    """How well the model predicts this data, and which checks that allows.

    Three measurements, each against a yardstick of the data itself, and one rule each:

    - **predicts the targets**: mean target NLL (nats/token) against the entropy of the
      data's own target-token unigram distribution (``nll_ratio``; a model that knows the
      text predicts far better than token frequencies). ``predicts_targets`` when
      ``nll_ratio <= capability_max_nll_ratio``; otherwise the surprise-based checks
      (``ending_surprise``) are out of reach.
    - **conditions on the input**: the share of the targets' no-input surprise that the inputs
      explain (``relative_input_gain``), with the distribution of the per-example input
      dependence (median in nats and per token; share of examples below
      ``capability_near_zero`` nats/token). ``conditions_on_input`` when
      ``relative_input_gain >= capability_min_gain``; otherwise targets that do not answer
      their input (swapped, off-topic) are out of reach.
    - **computes arithmetic** (targets with explicit calculations only): the mean NLL of the
      digits of computed results (right of ``=``, :func:`result_positions`) against that of
      the copied digits and of digit frequencies. ``computes_arithmetic`` when at most
      ``capability_max_result_nll`` nats/digit (the right digit at >= ~60 % probability,
      geometric mean); otherwise a changed result that no written calculation contradicts
      (a changed final answer, an intermediate result changed consistently) is out of reach;
      the rules ``false_arithmetic`` / ``unsupported_final_answer`` still check what is
      written.

    ``limited`` is True when the model does not condition on the input or does not predict the
    targets: the message then names the checks out of reach, with the numbers, and asks for
    ``--model`` naming the model that will be fine-tuned.

    Parameters
    ----------
    offsets : (N + 1,) int64
    nll : (T,) float
    token_ids : (T,) int
        Target token ids (for the data's unigram entropy).
    nll_noinput : (T,) float or None
    config : AnalysisConfig, optional
    pieces : list of N list of str, optional
        Token pieces per example (for the arithmetic measurement).

    Returns
    -------
    dict
        ``mean_target_nll``, ``unigram_entropy`` (nats, plug-in), ``nll_ratio``,
        ``relative_input_gain`` (None without input dependence), ``input_dependence``
        (``median`` nats per example, ``median_per_token``, ``share_near_zero``,
        ``near_zero``; None without), ``input_gain_per_token`` (p10/p50/p90),
        ``share_input_helps``, ``examples_with_input``, ``arithmetic`` (``result_digits``,
        ``result_nll``, ``copied_nll``, ``digit_entropy``; None without calculations),
        ``predicts_targets``, ``conditions_on_input`` (bool or None),
        ``computes_arithmetic`` (bool or None), ``limited``, ``out_of_reach`` (list of
        str), ``thresholds``, ``message``.
    """
    cfg = _settings(config)
    nll = np.asarray(nll, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.int64)
    ids = np.asarray(token_ids, dtype=np.int64)
    counts = np.bincount(ids) if len(ids) else np.zeros(1)
    p = counts[counts > 0] / max(counts.sum(), 1)
    entropy = float(-(p * np.log(p)).sum()) if len(p) else 0.0
    mean_nll = float(nll.mean()) if len(nll) else math.nan
    ratio = mean_nll / entropy if entropy > 0 else math.nan
    out: dict[str, Any] = {
        "mean_target_nll": mean_nll, "unigram_entropy": entropy, "nll_ratio": ratio,
        "relative_input_gain": None, "input_dependence": None, "input_gain_per_token": None,
        "share_input_helps": None, "examples_with_input": None, "arithmetic": None,
        "thresholds": {"capability_min_gain": cfg.capability_min_gain,
                       "capability_max_nll_ratio": cfg.capability_max_nll_ratio,
                       "capability_near_zero": cfg.capability_near_zero,
                       "capability_max_result_nll": cfg.capability_max_result_nll},
    }
    predicts = bool(ratio <= cfg.capability_max_nll_ratio) if math.isfinite(ratio) else False
    conditions = computes = None
    if nll_noinput is not None:
        ni = np.asarray(nll_noinput, dtype=np.float64)
        d = input_dependence(offsets, nll, ni)
        has = np.isfinite(d)
        out["examples_with_input"] = int(has.sum())
        if has.any():
            row = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
            # the tokens input_dependence sums (each target's first token, the frame, out)
            tok = has[row] & scored_tokens(offsets, ni - nll)
            gain = float((ni[tok] - nll[tok]).sum())
            base = float(ni[tok].sum())
            rel = gain / base if base > 0 else 0.0
            per_tok = d[has] / np.maximum(np.bincount(row[tok], minlength=len(d))[has], 1)
            out["relative_input_gain"] = rel
            out["input_dependence"] = {
                "median": float(np.median(d[has])), "median_per_token": float(
                    np.median(per_tok)),
                "share_near_zero": float((per_tok < cfg.capability_near_zero).mean()),
                "near_zero": cfg.capability_near_zero}
            out["input_gain_per_token"] = {f"p{q}": float(np.percentile(per_tok, q))
                                           for q in (10, 50, 90)}
            out["share_input_helps"] = float((d[has] > 0).mean())
            conditions = bool(rel >= cfg.capability_min_gain)
    if pieces is not None:
        res_t, copy_t, digit_t = [], [], []
        for i in range(len(offsets) - 1):
            a, b = int(offsets[i]), int(offsets[i + 1])
            pc = pieces[i]
            if len(pc) != b - a:
                continue
            r = result_positions(pc)
            res_t += [a + t for t in r]
            rs = set(r)
            digits = [t for t, x in enumerate(pc) if x.strip().isdigit()]
            digit_t += [a + t for t in digits]
            copy_t += [a + t for t in digits if t not in rs]
        if res_t:
            dig = ids[digit_t]
            _, c = np.unique(dig, return_counts=True)
            q = c / c.sum()
            arith = {"result_digits": len(res_t), "result_nll": float(nll[res_t].mean()),
                     "copied_nll": float(nll[copy_t].mean()) if copy_t else None,
                     "digit_entropy": float(-(q * np.log(q)).sum())}
            out["arithmetic"] = arith
            computes = bool(arith["result_nll"] <= cfg.capability_max_result_nll)
    out["predicts_targets"] = predicts
    out["conditions_on_input"] = conditions
    out["computes_arithmetic"] = computes
    limited = conditions is False or not predicts
    out["limited"] = limited
    reach = []
    if conditions is False:
        reach.append(f"targets that do not answer their input (taken from another example, "
                     f"off-topic replies): the inputs explain "
                     f"{100 * out['relative_input_gain']:.1f} % of the targets' surprise "
                     f"(< {100 * cfg.capability_min_gain:g} %)")
    if not predicts:
        reach.append(f"targets that end or read unlike the data (cut off, changed final "
                     f"answer, another language or format): mean target NLL {mean_nll:.2f} "
                     f"nats/token is {ratio:.2f} of the data's unigram entropy "
                     f"(> {cfg.capability_max_nll_ratio:g})")
    if computes is False:
        ar = out["arithmetic"]
        reach.append(f"arithmetic correctness beyond the written calculations (a changed final "
                     f"answer or intermediate result that no a op b = c in the target "
                     f"contradicts): the model predicts computed result digits at "
                     f"{ar['result_nll']:.2f} nats/digit (> {cfg.capability_max_result_nll:g}; "
                     f"digit frequencies: {ar['digit_entropy']:.2f}), i.e. it does not compute "
                     f"them")
    reach.append("content errors the model cannot know (wrong facts, wrong reasoning in "
                 "words)")
    out["out_of_reach"] = reach
    lines = [f"The model predicts the targets at {mean_nll:.2f} nats/token against "
             f"{entropy:.2f} for the data's own token frequencies (ratio {ratio:.2f}; "
             f"{'it knows this kind of text' if predicts else 'it barely knows this text'})."]
    if out["relative_input_gain"] is not None:
        how = "conditions" if conditions else "barely conditions"
        dep = out["input_dependence"]
        lines.append(f"The inputs explain {100 * out['relative_input_gain']:.1f} % of the "
                     f"targets' surprise (the model {how} on the input; median input "
                     f"dependence {dep['median']:.1f} nats per example, "
                     f"{dep['median_per_token']:.2f} per token; "
                     f"{100 * dep['share_near_zero']:.0f} % of the examples below "
                     f"{cfg.capability_near_zero:g} nats/token).")
    else:
        lines.append("Input dependence was not measured (no examples with an input, or a "
                     "store without it): swapped and off-topic targets are not checked.")
    lines.append("Out of this model's reach: " + "; ".join(reach) + ".")
    if limited or computes is False:
        lines.append("Pass --model naming the model that will be fine-tuned: the suspect "
                     "checks judge the data through that model.")
    out["message"] = " ".join(lines)
    return out

