"""Contradictions: the same left-hand side, a different right-hand side.

Text signal
    1. Inputs are normalised (:func:`constraintlab.analysis.text.normalize`). Candidates are the
       pairs with the same normalised input (hash groups), plus pairs whose inputs are *nearly*
       the same: Jaccard of word ``input_shingle_size``-shingles >= ``input_jaccard`` (MinHash
       LSH, verified exactly) **and**
       the same numbers in the same order (a word problem with another number is another
       problem, not the same question).
    2. Targets are compared after normalisation. Equal -> a duplicate, never a contradiction.
       Otherwise they differ in substance when any of these holds (``reasons``):

       - ``final_answer``: both state a final answer (``#### x``, ``\\boxed{x}``,
         ``the answer is x``) and the answers differ;
       - ``numbers``: a number of one target is replaced by another number in the same context
         (word-level alignment of the normalised targets): a different number inside the
         reasoning. Steps that only one target has are another path, not a contradiction;
       - ``content``: the token Jaccard of the normalised targets is below
         ``contradiction_jaccard`` (a different reply), unless both state the same final answer.

       Targets that differ only in wording (same numbers, same answer, high overlap) are
       paraphrases: not reported.
    3. Score in [0, 1] = input similarity (1 for the same normalised input, else the Jaccard) x
       strength: 1 for ``final_answer``, ``0.5 + 0.5 * (1 - J_numbers)`` for ``numbers``,
       ``1 - J_tokens`` for ``content`` (the largest that applies).

Factor signal (when the encoder's factors are given)
    Pairs whose input factors are aligned (``cos > factor_input_min``) while their output factors
    are apart (``cos < factor_output_max``); score ``(cos_in - cos_out) / 2`` clipped to [0, 1].
    A pair both signals find is reported once (``signal = "text+factors"``, the larger score);
    a factor-only pair is dropped when the texts show equal targets.

    Sibling problems (one template filled with other names and numbers: another problem, not
    the same question) have input factors as aligned as paraphrases (cosine ~0.96 under the
    reference model: every input shares the template's direction), so with texts a factor-only
    pair also needs the input-word Jaccard ``factor_input_words`` and, with
    ``factor_sibling_guard`` (default), **the same numbers in both inputs** (as a multiset: a
    reworded question may reorder them); a different number is a different problem.
    Measured (``benchmarks/bench_validity.py``, reference model, seeds 0 / 1): 1,000 GSM8K test
    rows + 70 planted contradictions (same question, a cosmetic edit in half of them, another
    final answer) + 24 sibling pairs mixed in: text only P 1.000 / 1.000, R 1.000 / 1.000;
    text + factors without the guard P 0.972 / 0.959 (2 of the false pairs in seed 1 are
    sibling pairs), with the guard P 1.000 / 1.000, R 1.000 / 1.000. On these sets the factor
    signal adds no recall (the text signal's normalisation already matches cosmetic edits); it
    is kept, behind the guard, for reworded questions the text signal cannot match. Without
    texts the guard cannot apply.
"""

from __future__ import annotations

import difflib
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from constraintlab.analysis.config import AnalysisConfig
from constraintlab.analysis.pairs import blocked_pairs, unit_rows
from constraintlab.analysis.registry import Analyzer, Metric
from constraintlab.analysis.result import AnalyzerResult, make_pair
from constraintlab.analysis.text import TextView, final_answer, jaccard, numbers, short_diff

logger = logging.getLogger(__name__)

__all__ = ["ContradictionsResult", "analyze_contradictions", "compare_targets"]


@dataclass
class ContradictionsResult(AnalyzerResult):
    """What :func:`analyze_contradictions` found.

    Attributes
    ----------
    positions : set of (a, b)
        The contradiction pairs as row positions, ``a < b`` (the pairs list holds ids).
    """

    positions: set[tuple[int, int]] = field(default_factory=set, repr=False)


def _multiset_jaccard(a: Counter, b: Counter) -> float:
    u = sum((a | b).values())
    return 1.0 if u == 0 else sum((a & b).values()) / u


def _numeric_substitutions(n_a: str, n_b: str) -> list[tuple[str, str]]:
    """Places where one target has other numbers than the other in the same context: the
    ``replace`` steps of a word-level alignment whose two sides are numbers only."""
    ta, tb = n_a.split(), n_b.split()
    sm = difflib.SequenceMatcher(a=ta, b=tb, autojunk=False)
    subs = []
    for op, i1, i2, j1, j2 in sm.get_opcodes():
        if op != "replace":
            continue
        sa, sb = ta[i1:i2], tb[j1:j2]
        if all(w.isdigit() for w in sa) and all(w.isdigit() for w in sb):
            subs.append((" ".join(sa), " ".join(sb)))
    return subs


def compare_targets(t_a: str, t_b: str, n_a: str, n_b: str,
                    config: AnalysisConfig | None = None) -> dict | None:
    """How two targets differ in substance (None if they do not).

    Reasons: ``final_answer`` (both state one, they differ); ``numbers`` (a number replaced by
    another in the same context, e.g. ``<<48/2=24>>`` vs ``<<48/2=25>>``; steps only one target
    has are another way to the answer, not a contradiction); ``content`` (token Jaccard below
    ``contradiction_jaccard``, unless both state the same final answer: then the replies agree
    on what matters).

    Parameters
    ----------
    t_a, t_b : str
        The targets as written.
    n_a, n_b : str
        The same, normalised.

    Returns
    -------
    dict or None
        ``reasons`` (list), ``strength`` in [0, 1], ``target_jaccard``, ``final_answers``,
        ``numbers_jaccard``, ``substitutions`` (up to 5 ``[old, new]``); None when the
        normalised targets are equal or differ only in wording or in the path to the same
        answer.
    """
    config = config if config is not None else AnalysisConfig()
    if n_a == n_b:
        return None
    fa, fb = final_answer(t_a), final_answer(t_b)
    na, nb = Counter(numbers(t_a)), Counter(numbers(t_b))
    tj = jaccard(set(n_a.split()), set(n_b.split()))
    nj = _multiset_jaccard(na, nb)
    same_answer = fa is not None and fb is not None and fa == fb
    subs = _numeric_substitutions(n_a, n_b) if na != nb else []
    reasons = []
    strength = 0.0
    if fa is not None and fb is not None and fa != fb:
        reasons.append("final_answer")
        strength = 1.0
    if subs:
        reasons.append("numbers")
        strength = max(strength, 0.5 + 0.5 * (1.0 - nj))
    if tj < config.contradiction_jaccard and not same_answer:
        reasons.append("content")
        strength = max(strength, 1.0 - tj)
    if not reasons:
        return None
    return {"reasons": reasons, "strength": float(strength), "target_jaccard": tj,
            "final_answers": [fa, fb], "numbers_jaccard": nj,
            "substitutions": [list(x) for x in subs[:5]]}


def _factor_candidates(input_factors, output_factors, config: AnalysisConfig):
    """Pairs (row positions) with aligned inputs and apart outputs, with both cosines."""
    Fi, _ = unit_rows(input_factors)
    Fo, _ = unit_rows(output_factors)
    k = Fi.shape[1]
    st = blocked_pairs(Fi, tau=config.tau_for(k), near=config.factor_input_min,
                       hi_collect=config.factor_input_min, top_m=1,
                       block_size=config.block_size, hist_bins=2, max_pairs=config.max_pairs,
                       collect_low=False, desc="input factors")
    a, b, cin = st.hi_pairs
    if not len(a):
        return a, b, cin.astype(np.float64), np.zeros(0)
    cout = np.einsum("ij,ij->i", Fo[a], Fo[b]).astype(np.float64)
    keep = cout < config.factor_output_max
    return a[keep], b[keep], cin[keep].astype(np.float64), cout[keep]


def analyze_contradictions(
    examples: Sequence | None = None,
    *,
    input_factors: np.ndarray | None = None,
    output_factors: np.ndarray | None = None,
    ids: np.ndarray | None = None,
    text: TextView | None = None,
    config: AnalysisConfig | None = None,
) -> ContradictionsResult:
    """Pairs with the same (or nearly the same) input whose targets differ in substance.

    Parameters
    ----------
    examples : sequence of Example, optional
        Text signal.
    input_factors : (N, d_in) float, optional
        Pooled input-side representation per example (encoder).
    output_factors : (N, d_out) float, optional
        Pooled output-side error signal per example (encoder).
    ids : (N,) int, optional
        Example ids (default ``Example.index``, else ``0..N-1``).
    text : TextView, optional
        The analysis' shared text view of ``examples`` (built here when not given).
    config : AnalysisConfig

    Returns
    -------
    ContradictionsResult
        ``name="contradictions"``. Table: ``is_contradiction``, ``contradiction_score`` (max over
        its pairs, in [0, 1]), ``contradiction_count``. Pairs of kind ``"contradiction"``, detail
        ``signal``, ``reasons``, ``input_similarity``, ``target_jaccard``, ``final_answers``,
        ``diff`` (word diff of the two targets) and, with factors, ``cos_input``/``cos_output``.
        ``positions``: the pairs as row positions.

    The inputs are taken as checked (:class:`constraintlab.analysis.system.ConstraintSystem`
    checks shapes and values once, at the boundary).
    """
    config = config if config is not None else AnalysisConfig()
    have_factors = input_factors is not None and output_factors is not None
    if examples is None and not have_factors:
        raise TypeError("analyze_contradictions() needs examples or both factor matrices")
    N = len(examples) if examples is not None else len(input_factors)
    if ids is None:
        ids = (np.array([ex.index for ex in examples], dtype=np.int64) if examples is not None
               else np.arange(N))
    ids = np.asarray(ids)
    found: dict[tuple[int, int], dict] = {}
    summary: dict = {"n": N, "signals": []}
    if examples is not None:
        summary["signals"].append("text")
        text = text if text is not None else TextView(examples, config)
        inputs, targets = text.input, text.target
        n_in, n_tg = text.norm_input, text.norm_target
        cands: dict[tuple[int, int], float] = {}
        groups: dict[str, list[int]] = {}
        for i, s in enumerate(n_in):
            if s:
                groups.setdefault(s, []).append(i)
        n_groups = 0
        for members in groups.values():
            if len(members) < 2:
                continue
            n_groups += 1
            head = members[: config.max_group]
            for x_pos, x in enumerate(members):
                for y in (members[x_pos + 1:] if x_pos < config.max_group else head):
                    cands[(min(x, y), max(x, y))] = 1.0
        summary["same_input_groups"] = n_groups
        a, b, jac, stats = text.pairs(config.input_jaccard, on="input")
        n_near = 0
        for x, y, j in zip(a.tolist(), b.tolist(), jac.tolist(), strict=True):
            if (x, y) in cands or not n_in[x] or not n_in[y]:
                continue
            if numbers(inputs[x]) != numbers(inputs[y]):
                continue
            cands[(x, y)] = float(j)
            n_near += 1
        summary["near_input_pairs"] = n_near
        summary["input_minhash"] = stats
        summary["candidate_pairs"] = len(cands)
        for (x, y), sim in cands.items():
            cmp = compare_targets(targets[x], targets[y], n_tg[x], n_tg[y], config)
            if cmp is None:
                continue
            found[(x, y)] = {
                "score": sim * cmp["strength"],
                "detail": {"signal": "text", "reasons": cmp["reasons"],
                           "input_similarity": sim, "target_jaccard": cmp["target_jaccard"],
                           "final_answers": cmp["final_answers"],
                           "substitutions": cmp["substitutions"],
                           "diff": short_diff(targets[x], targets[y])},
            }
    if have_factors:
        summary["signals"].append("factors")
        fa, fb, cin, cout = _factor_candidates(input_factors, output_factors, config)
        summary["factor_pairs"] = len(fa)
        n_uncorroborated = 0
        n_siblings = 0
        for x, y, ci, co in zip(fa.tolist(), fb.tolist(), cin.tolist(), cout.tolist(), strict=True):
            x, y = min(x, y), max(x, y)
            fscore = float(np.clip((ci - co) / 2.0, 0.0, 1.0))
            if (x, y) in found:
                f = found[(x, y)]
                f["score"] = max(f["score"], fscore)
                f["detail"].update({"signal": "text+factors", "cos_input": ci, "cos_output": co})
                continue
            detail = {"signal": "factors", "cos_input": ci, "cos_output": co}
            if examples is not None:
                words = jaccard(set(n_in[x].split()), set(n_in[y].split()))
                cmp = compare_targets(targets[x], targets[y], n_tg[x], n_tg[y], config)
                if words < config.factor_input_words or cmp is None:
                    n_uncorroborated += 1
                    continue
                if (config.factor_sibling_guard
                        and sorted(numbers(inputs[x])) != sorted(numbers(inputs[y]))):
                    n_siblings += 1  # same shape, other numbers: another problem
                    continue
                detail.update({"reasons": cmp["reasons"], "input_similarity": words,
                               "target_jaccard": cmp["target_jaccard"],
                               "final_answers": cmp["final_answers"],
                               "diff": short_diff(targets[x], targets[y])})
            found[(x, y)] = {"score": fscore, "detail": detail}
        summary["factor_pairs_without_text_support"] = n_uncorroborated
        summary["factor_pairs_sibling_problems"] = n_siblings
        if examples is not None:  # text pairs: does the factor signal agree?
            Fi, _ = unit_rows(input_factors)
            Fo, _ = unit_rows(output_factors)
            for (x, y), f in found.items():
                if f["detail"]["signal"] == "text":
                    ci = float(Fi[x] @ Fi[y])
                    co = float(Fo[x] @ Fo[y])
                    f["detail"].update({"cos_input": ci, "cos_output": co,
                                        "factors_agree": bool(ci > config.factor_input_min
                                                              and co < config.factor_output_max)})
    score = np.zeros(N)
    count = np.zeros(N, np.int64)
    pairs = []
    reasons: Counter = Counter()
    signals: Counter = Counter()
    for (x, y), f in sorted(found.items(), key=lambda kv: (-kv[1]["score"], kv[0])):
        s = float(np.clip(f["score"], 0.0, 1.0))
        pairs.append(make_pair("contradiction", ids[x], ids[y], s, f["detail"]))
        score[x] = max(score[x], s)
        score[y] = max(score[y], s)
        count[x] += 1
        count[y] += 1
        reasons.update(f["detail"].get("reasons", []))
        signals[f["detail"]["signal"]] += 1
    summary.update({"count": len(pairs),
                    "examples": int((count > 0).sum()),
                    "by_reason": dict(reasons), "by_signal": dict(signals)})
    table = pd.DataFrame({
        "is_contradiction": count > 0,
        "contradiction_score": score,
        "contradiction_count": count,
    }, index=pd.Index(ids, name="index"))
    return ContradictionsResult("contradictions", table, summary, pairs, positions=set(found))


def _run(system, results, config: AnalysisConfig) -> ContradictionsResult | None:
    if system.examples is None and not system.has_factors:
        return None
    return analyze_contradictions(system.examples, input_factors=system.input_factors,
                                  output_factors=system.output_factors, ids=system.ids,
                                  text=system.text, config=config)


ANALYZER = Analyzer(
    name="contradictions", run=_run, section="contradictions",
    metrics={"contradictions": Metric("count", "pairs with the same input and a different "
                                      "target"),
             "contradicting_examples": Metric("examples", "examples in at least one "
                                              "contradiction")})
