r"""Suspect examples: which targets are probably wrong, with reasons, and what the model can judge.

Suspects are scored from the model signals (:mod:`~constraintlab.analysis.suspects.signals`:
``input_dependence``, ``ending_surprise``, ``target_surprise``), standardised and combined into
one p-value per example (:mod:`~constraintlab.analysis.suspects.stats`), and the rules that need
no model (:mod:`~constraintlab.analysis.suspects.rules`: ``false_arithmetic``,
``unsupported_final_answer``); a signal out of the model's reach
(:mod:`~constraintlab.analysis.suspects.reach`) is left out. This module is the analyzer:
it puts them together.

Notes (listed among the reasons, no evidence of a wrong target, never flagged on their own)

``contradiction``
    The example is in a contradiction pair (same input, another target): one of the two is
    wrong, and the pair does not say which. The pair is listed to resolve
    (``contradiction_pairs``); a side is a suspect only by its own evidence (issue 22: on the
    shipped sample, 6 of 18 suspects carried the correct answer and were flagged only because
    a planted twin contradicted them).

``truncated``
    The encoder cut the example at ``max_length`` (its loss covers part of the target only;
    its ending was not scored). Once a rule, it flagged only clean rows on the planted sets
    (long GSM8K problems cut at 512 tokens, 0-2 per 1,000 rows) and ranked them above planted
    replies in another language: a setting cuts the example, the target is not wrong.
    ``n_truncated`` in examples.csv counts the tokens dropped.

Calibration (what the threshold means)
    .. math::

        suspect\_score_i = 1 - p_i\,(p_{rule} \text{ if a rule fired else } 1)

    :math:`p_i` is the weighted Bonferroni combination of the two questions' p-values
    (:mod:`~constraintlab.analysis.suspects.stats`): an example whose signals follow the
    bulk's robust normal fit has :math:`P(p_i \le a) \le a` whatever their dependence.
    ``is_suspect`` when ``suspect_score >= 1 - suspect_alpha``: a clean example is
    flagged with probability about ``suspect_alpha`` (1 %) under that fit. A rule hit multiplies
    the p-value by ``suspect_rule_p`` (0.001, of the order of how often a clean example trips
    a rule: none of the 1,319 clean GSM8K test rows trips the two text rules), so
    every rule hit is flagged and weighs as much as model evidence alone of p = 0.001. The
    benchmark reports the false-positive rate actually measured on clean rows (heavier tails
    than normal and clean rows that trip a rule raise it). ``suspect_evidence`` is the same
    p-value on a log scale, :math:`-\log_{10}(1 - suspect\_score)`, computed without
    rounding: it orders examples whose scores round to 1 (it is the ranking key; a rule hit
    adds 3, a strong signal can add more).

Settings: the ``suspect_*`` and ``capability_*`` fields of
:class:`~constraintlab.analysis.config.AnalysisConfig` (defaults documented there).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtri

from constraintlab.analysis.config import AnalysisConfig
from constraintlab.analysis.registry import Analyzer, Metric
from constraintlab.analysis.result import AnalyzerResult
from constraintlab.analysis.suspects.reach import _settings, capability
from constraintlab.analysis.suspects.rules import (
    false_arithmetic,
    false_calculations,
    result_positions,
    unsupported_final_answer,
)
from constraintlab.analysis.suspects.signals import (
    _last_line_start,
    ending_surprise,
    input_dependence,
    scored_tokens,
    target_surprise,
)
from constraintlab.analysis.suspects.stats import (
    QUESTION_WEIGHTS,
    _log_p_combined,
    _log_p_one_sided,
    _log_p_sidak,  # noqa: F401  (tests reach it here)
    robust_z,
)
from constraintlab.analysis.text import final_answer

logger = logging.getLogger(__name__)

__all__ = [
    "NOTES", "QUESTION_WEIGHTS", "REASONS", "REASON_TEXT", "RULES", "SIGNALS",
    "SIGNAL_REASONS", "SuspectsResult",
    "analyze_suspects", "capability", "ending_surprise", "false_arithmetic",
    "false_calculations", "input_dependence",
    "result_positions", "robust_z", "scored_tokens", "target_surprise",
    "unsupported_final_answer",
]

SIGNALS: tuple[str, ...] = ("input_dependence", "ending_surprise", "target_surprise")
#: the reason code of each signal, in :data:`SIGNALS` order
SIGNAL_REASONS: tuple[str, ...] = ("input_unexplained", "surprising_ending",
                                   "surprising_target")
RULES: tuple[str, ...] = ("false_arithmetic", "unsupported_final_answer")
#: facts listed among the reasons that are no evidence of a wrong target (module docstring)
NOTES: tuple[str, ...] = ("truncated", "contradiction")
#: reason codes in ``suspect_reasons`` (signal reasons first, then rules, then notes)
REASONS: tuple[str, ...] = (*SIGNAL_REASONS, *RULES, *NOTES)
#: what each reason code says, for a reader of the report
REASON_TEXT: dict[str, str] = {
    "input_unexplained": "the input barely helps the model predict the target (it may answer "
                         "another input)",
    "surprising_ending": "the target ends unlike the data (a changed final answer, a cut-off "
                         "or foreign ending)",
    "surprising_target": "the whole target reads unlike the data (another language, format or "
                         "task)",
    "false_arithmetic": "a calculation written in the target is false",
    "unsupported_final_answer": "the stated final answer appears nowhere in the worked target",
    "contradiction": "note: another example has the same input and another target; one of the "
                     "two is wrong, the pair does not say which (resolve the pair); not "
                     "evidence against this side on its own",
    "truncated": "note: cut at max_length (its ending was not scored); not evidence on its own",
}



@dataclass
class SuspectsResult(AnalyzerResult):
    r"""What :func:`analyze_suspects` found.

    Attributes
    ----------
    score : (N,) float64
        ``suspect_score`` in [0, 1].
    is_suspect : (N,) bool
    evidence : (N,) float64
        ``suspect_evidence``: :math:`-\log_{10}` of the combined p-value (``1 -
        suspect_score`` without rounding; module docstring): the ranking key.
    z : (N, 3) float64
        Robust z of each signal in :data:`SIGNALS` order (NaN where not available).
    reasons : list of N tuple of str
        Reason codes (:data:`REASONS`).
    """

    score: np.ndarray | None = field(default=None, repr=False)
    is_suspect: np.ndarray | None = field(default=None, repr=False)
    evidence: np.ndarray | None = field(default=None, repr=False)
    z: np.ndarray | None = field(default=None, repr=False)
    reasons: list | None = field(default=None, repr=False)



def analyze_suspects(
    tokens: Any,
    *,
    targets: list[str] | None = None,
    ids: np.ndarray | None = None,
    contradictions: set[tuple[int, int]] | None = None,
    n_truncated: np.ndarray | None = None,
    config: Any = None,
) -> SuspectsResult:
    """Suspect score, flag and reasons of every example, and the model-capability statement.

    Parameters
    ----------
    tokens : TokenProfiles
        ``offsets`` (N + 1), ``nll`` (T,), ``ids`` (T,), ``pieces(row)``, and ``nll_noinput``
        (T,) or None (then ``input_dependence`` is not available and the capability statement
        says so).
    targets : list of N str, optional
        Target texts (for the rules ``false_arithmetic`` and ``unsupported_final_answer``).
    ids : (N,) int, optional
        Example ids (default ``0..N-1``).
    contradictions : set of (a, b), optional
        Contradiction pairs as row positions (``ContradictionsResult.positions``).
    n_truncated : (N,) int, optional
        Tokens the encoder dropped at ``max_length``.
    config : AnalysisConfig, optional
        Its ``suspect_*`` and ``capability_*`` fields.

    Returns
    -------
    SuspectsResult
        ``name="suspects"``. Table: ``suspect_score`` (float in [0, 1]), ``is_suspect``
        (bool), ``suspect_reasons`` (str, reason codes joined by ``";"``, "" when none),
        ``suspect_evidence`` (float), ``input_dependence`` (nats, NaN without input),
        ``ending_surprise`` (nats). Summary: ``n``, ``suspects`` (count), ``suspect_share``,
        ``alpha``, ``threshold``, ``formula``, ``calibration``, ``signals`` (per signal: center,
        scale, transform, direction, available, z threshold), ``reasons`` (count per reason
        code), ``capability`` (:func:`capability`), ``listed`` (the ``suspect_list`` most
        suspect: id, score, evidence, reasons, the signal values, ``tokens`` = the
        ``suspect_tokens`` target tokens the input explains least ranked by NLL, and
        ``ending`` = the most surprising token of the last line).
    """
    cfg = _settings(config)
    offsets = np.asarray(tokens.offsets, dtype=np.int64)
    n = len(offsets) - 1
    nll = np.asarray(tokens.nll, dtype=np.float64)
    ni = getattr(tokens, "nll_noinput", None)
    ni = None if ni is None else np.asarray(ni, dtype=np.float64)
    ids = np.arange(n) if ids is None else np.asarray(ids)
    if targets is not None and len(targets) != n:
        raise ValueError(f"{len(targets)} targets for {n} examples")
    pieces = [tokens.pieces(i) for i in range(n)]

    dep = input_dependence(offsets, nll, ni) if ni is not None else np.full(n, np.nan)
    end = ending_surprise(offsets, nll, pieces, cfg.suspect_ending_tokens)
    if n_truncated is not None:   # cut at max_length: the target's own ending was not scored
        end = np.where(np.asarray(n_truncated) > 0, np.nan, end)
    tgt = target_surprise(offsets, nll)
    z_dep, c_dep, s_dep = robust_z(-dep)                  # low dependence = suspect
    z_end, c_end, s_end = robust_z(np.log(end + cfg.suspect_ending_floor))
    z_tgt, c_tgt, s_tgt = robust_z(np.log(tgt))
    Z = np.column_stack([z_dep, z_end, z_tgt])
    cap = capability(offsets, nll, tokens.ids, ni, cfg, pieces=pieces)
    in_reach = {"input_dependence": cap["conditions_on_input"] is not False,
                "ending_surprise": bool(cap["predicts_targets"]),
                "target_surprise": bool(cap["predicts_targets"])}
    if not cfg.suspect_gate:
        in_reach = dict.fromkeys(in_reach, True)
    used = np.where(np.array([in_reach[s] for s in SIGNALS])[None, :], Z, np.nan)
    lp = _log_p_one_sided(used)
    log_p = _log_p_combined(lp)                        # 0 without signals (stats module)

    rules = {r: np.zeros(n, dtype=bool) for r in RULES}
    details = [""] * n
    calcs: list[list[dict]] = [[] for _ in range(n)]
    if targets is not None:
        calcs = [false_calculations(t) for t in targets]
        rules["false_arithmetic"] = np.array([bool(c) for c in calcs], dtype=bool)
        rules["unsupported_final_answer"] = np.array(
            [unsupported_final_answer(t) for t in targets], dtype=bool)
        for i in range(n):
            said = [f"false: {c['calculation']}"
                    + (f" (is {c['computed']:g})" if c["computed"] is not None else "")
                    for c in calcs[i]]
            if rules["unsupported_final_answer"][i]:
                said.append(f"final answer {final_answer(targets[i])} appears nowhere in the "
                            "worked target")
            details[i] = "; ".join(said)
    notes = {"truncated": (np.asarray(n_truncated) > 0) if n_truncated is not None
             else np.zeros(n, dtype=bool), "contradiction": np.zeros(n, dtype=bool)}
    pairs_to_resolve = sorted((min(a, b), max(a, b)) for a, b in contradictions or ())
    for a, b in pairs_to_resolve:
        notes["contradiction"][[a, b]] = True
    hit = np.zeros(n, dtype=bool)
    for r in RULES:
        hit |= rules[r]
    alpha = cfg.suspect_alpha
    log_p = log_p + np.where(hit, math.log(cfg.suspect_rule_p), 0.0)
    score = np.clip(-np.expm1(log_p), 0.0, 1.0)
    evidence = -log_p / math.log(10.0)
    flagged = score >= 1.0 - alpha

    # a signal is a reason when it alone is significant at alpha (z >= Phi^-1(1 - alpha)); an
    # example flagged by the combination alone gets its strongest signal as the reason
    z_star = float(ndtri(1.0 - alpha))
    reasons: list[tuple[str, ...]] = []
    for i in range(n):
        zi = np.where(np.isfinite(used[i]), used[i], -np.inf)
        r = [SIGNAL_REASONS[c] for c in range(len(SIGNALS)) if zi[c] >= z_star]
        if not r and flagged[i] and not hit[i] and np.isfinite(zi.max()):
            r = [SIGNAL_REASONS[int(np.argmax(zi))]]
        r += [name for name in RULES if rules[name][i]]
        r += [name for name in NOTES if notes[name][i]]
        reasons.append(tuple(r))

    order = np.lexsort((np.arange(n), -evidence))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(1, n + 1)
    table = pd.DataFrame({
        "suspect_score": score, "is_suspect": flagged,
        "suspect_reasons": [";".join(r) for r in reasons],
        "suspect_detail": details,
        "suspect_evidence": evidence, "suspect_p": np.power(10.0, -evidence),
        "suspect_rank": rank, "input_dependence": dep, "ending_surprise": end,
    }, index=pd.Index(ids, name="index"))

    scored = _Scored(ids=ids, score=score, evidence=evidence, reasons=reasons, dep=dep,
                     end=end, tgt=tgt, offsets=offsets, nll=nll, ni=ni, pieces=pieces)
    listed = [_listed(i, scored, cfg) | {"rank": int(rank[i]),
                                         "p_value": float(10.0 ** -evidence[i]),
                                         "detail": details[i], "calculations": calcs[i]}
              for i in order[:cfg.suspect_list].tolist() if flagged[i]]
    # not measured: a model signal the capability statement rules out did not run
    measured = not (cfg.suspect_gate and not all(in_reach.values()))
    z1 = z_star
    summary = {
        "n": n, "suspects": int(flagged.sum()) if measured else None,
        "suspect_share": (float(flagged.mean()) if n else 0.0) if measured else None,
        "measured": measured, "flagged": int(flagged.sum()),
        "not_measured": None if measured else (
            "The checks the capability statement rules out did not run ("
            + ", ".join(k for k, v in in_reach.items() if not v) + "): the suspect count "
            "is not measured; 'flagged' counts what the other checks found"),
        "contradiction_pairs": [[int(ids[a]), int(ids[b])] for a, b in pairs_to_resolve],
        "alpha": alpha, "threshold": 1.0 - alpha,
        "formula": ("suspect_score = 1 - p * (rule_p if a rule fired else 1); p = min(1, "
                    f"p_input / {QUESTION_WEIGHTS[0]:g}, p_surprise / {QUESTION_WEIGHTS[1]:g}) "
                    "(weighted Bonferroni; one question alone: its p), p_input = "
                    "Phi(-z_input), p_surprise = 1 - (1 - min("
                    "p_ending, p_target))^2 (Sidak), z = robust z of each signal (median, "
                    "1.4826 x the median distance of the bulk's side), signals out of the "
                    "model's reach left out"),
        "calibration": (f"is_suspect when suspect_score >= {1 - alpha:g}: an example whose "
                        f"signals follow the data's bulk (robust normal fit) is flagged with "
                        f"probability {alpha:g}; every rule hit is flagged; a note "
                        f"(truncated) is listed, never flagged on its own"),
        "signals": {
            "input_dependence": {"center": -c_dep if math.isfinite(c_dep) else None,
                                 "scale": s_dep if math.isfinite(s_dep) else None,
                                 "transform": "sum over tokens of nll_noinput - nll (nats)",
                                 "direction": "low", "available": int(np.isfinite(dep).sum()),
                                 "in_reach": in_reach["input_dependence"],
                                 "z_threshold": z1},
            "ending_surprise": {"center": c_end if math.isfinite(c_end) else None,
                                "scale": s_end if math.isfinite(s_end) else None,
                                "transform": f"log(max NLL of the last line + "
                                             f"{cfg.suspect_ending_floor:g})",
                                "direction": "high", "available": int(np.isfinite(end).sum()),
                                "in_reach": in_reach["ending_surprise"],
                                "z_threshold": z1},
            "target_surprise": {"center": c_tgt if math.isfinite(c_tgt) else None,
                                "scale": s_tgt if math.isfinite(s_tgt) else None,
                                "transform": "log(mean NLL of the target, nats/token)",
                                "direction": "high", "available": int(np.isfinite(tgt).sum()),
                                "in_reach": in_reach["target_surprise"],
                                "z_threshold": z1},
        },
        "reasons": {code: sum(code in r for r in reasons) for code in REASONS},
        "reason_codes": dict(REASON_TEXT),
        "capability": cap,
        "listed": listed,
    }
    logger.info("suspects: %d of %d examples flagged (%.1f %%)%s", summary["flagged"], n,
                100 * flagged.mean() if n else 0.0, "" if measured else ", not measured")
    return SuspectsResult("suspects", table, summary, score=score, is_suspect=flagged,
                          evidence=evidence, z=Z, reasons=reasons)


@dataclass(frozen=True)
class _Scored:
    """What :func:`analyze_suspects` measured, as :func:`_listed` reads it.

    Attributes
    ----------
    ids, score, evidence : (N,) arrays
    reasons : list of N tuple of str
    dep, end, tgt : (N,) float64
        ``input_dependence``, ``ending_surprise``, ``target_surprise`` (NaN = not available).
    offsets : (N + 1,) int64
    nll : (T,) float64
    ni : (T,) float64 or None
        ``nll_noinput``.
    pieces : list of N list of str
    """

    ids: np.ndarray
    score: np.ndarray
    evidence: np.ndarray
    reasons: list
    dep: np.ndarray
    end: np.ndarray
    tgt: np.ndarray
    offsets: np.ndarray
    nll: np.ndarray
    ni: np.ndarray | None
    pieces: list


def _listed(i: int, s: _Scored, cfg: AnalysisConfig) -> dict:
    """Example ``i`` as a listed suspect (``summary["listed"]``, without its rank, p-value and
    detail)."""
    a, b = int(s.offsets[i]), int(s.offsets[i + 1])
    ni = s.ni
    tok_nll = s.nll[a:b]
    p = s.pieces[i]
    gain = (ni[a:b] - tok_nll) if ni is not None else np.full(b - a, np.nan)
    # the tokens the input explains least, most surprising first
    unexplained = np.flatnonzero(~(gain > 0.0))
    top = unexplained[np.lexsort((unexplained, -tok_nll[unexplained]))][:cfg.suspect_tokens]
    j = _last_line_start(p, cfg.suspect_ending_tokens) if len(p) == b - a else 0
    worst_end = j + int(np.argmax(tok_nll[j:])) if b > a else 0

    def tok(t: int) -> dict:
        return {"position": int(t), "text": p[t] if t < len(p) else "",
                "nll": float(tok_nll[t]),
                "nll_noinput": float(ni[a + t]) if ni is not None else None}

    return {
        "id": int(s.ids[i]), "score": float(s.score[i]),
        "evidence": float(s.evidence[i]),
        "reasons": list(s.reasons[i]),
        "input_dependence": float(s.dep[i]) if np.isfinite(s.dep[i]) else None,
        "ending_surprise": float(s.end[i]) if np.isfinite(s.end[i]) else None,
        "target_surprise": float(s.tgt[i]) if np.isfinite(s.tgt[i]) else None,
        "n_tokens": b - a,
        "tokens": [tok(t) for t in top.tolist()],
        "ending": tok(worst_end) if b > a else None,
    }


def _run(system, results, config: AnalysisConfig) -> SuspectsResult | None:
    if system.tokens is None:
        return None
    con = results.contradictions
    return analyze_suspects(
        system.tokens, ids=system.ids, n_truncated=system.n_truncated, config=config,
        targets=[ex.target_text for ex in system.examples]
        if system.examples is not None else None,
        contradictions=con.positions if con is not None else None)


ANALYZER = Analyzer(
    name="suspects", run=_run, section="suspects", after=("contradictions",),
    metrics={"suspects": Metric("suspects", "examples flagged is_suspect (suspect_score >= 1 - "
                                "suspect_alpha, or a rule fired); null (fails) when the "
                                "capability statement rules a check out"),
             "suspect_share": Metric("suspect_share", "suspects / N (null when not measured)"),
             "model_limited": Metric("capability.limited", "true when the model barely "
                                     "conditions on the input: checks named in "
                                     "capability.out_of_reach are beyond it")})
