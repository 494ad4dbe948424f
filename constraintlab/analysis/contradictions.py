"""Contradictions: the same left-hand side, a different right-hand side.

A contradiction is **the same input with another target**. "The same input" means the same text
up to formatting: equal after :func:`constraintlab.analysis.text.normalize` (Unicode form, case,
punctuation, whitespace), with the same turns (the roles of the input's messages, in order) and
the same numbers in the same order (``3.5`` and ``35`` normalise alike; they are other
problems). Inputs that differ in a turn (a conversation forked at another length), in a word
(a named entity, a paraphrase) or in a number are never a contradiction, whatever any signal
says: two different questions may have different answers.

Text signal
    1. Candidates are the pairs with the same input key (normalised text, roles, numbers):
       hash groups.
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
    3. Score in [0, 1] = strength: 1 for ``final_answer``, ``0.5 + 0.5 * (1 - J_numbers)`` for
       ``numbers``, ``1 - J_tokens`` for ``content`` (the largest that applies).

Factor signal (when the encoder's factors are given)
    Pairs whose input factors are aligned (``cos > factor_input_min``) while their output factors
    are apart (``cos < factor_output_max``). It may propose a pair only when the capability
    statement says the model conditions on the input (``model_conditions``; see
    :func:`constraintlab.analysis.suspects.capability`) **and** the texts show the same input
    (the key above) with a substantive target difference. Otherwise its pairs are counted in
    the summary, never reported: a model that barely conditions on the input represents every
    input of a kind alike (issue 22: on 400 Anthropic-HH conversations the reference model gave
    input cosines 0.97-0.997 to forks of one conversation with 6 and 8 turns and to "the home
    address of <person A>" / "<person B>"; all 5 of its pairs were false), and sibling problems
    (one template, other names and numbers) have input factors as aligned as paraphrases
    (cosine ~0.96 on GSM8K). Without texts the factor signal proposes nothing (the input cannot
    be checked). A text pair that the factors corroborate is reported once with
    ``signal = "text+factors"`` and the cosines. With texts, every pair the factor signal could
    propose is a text pair as well, so it adds no recall; it stays as a second opinion.

    Cost (issue 26): since the factor signal may only propose pairs with the same input key,
    its cosines are taken only inside the same-input groups (every pair of a group, also
    those beyond the text path's ``max_group`` head; at most ``max_pairs`` input-aligned
    pairs, the most aligned) and for the text pairs ("does the factor signal agree"): the sum
    of the squared group sizes, never a second pass over all pairs. The summary counts
    ``factor_pairs_same_input`` (same-input pairs with aligned inputs and apart outputs) and
    ``factor_pairs_without_text_support`` (those of them whose targets do not differ in
    substance); the counts over all pairs (``factor_pairs``, ``factor_pairs_other_input``)
    are not measured (null, ``factor_pairs_scope`` says why).
"""

from __future__ import annotations

import difflib
import itertools
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from constraintlab.analysis.blocks import unit_rows
from constraintlab.analysis.config import AnalysisConfig
from constraintlab.analysis.registry import Analyzer, Metric
from constraintlab.analysis.result import AnalyzerResult, make_pair
from constraintlab.analysis.text import (
    TextView,
    final_answer,
    jaccard,
    normalize_many,
    numbers,
    short_diff,
)

logger = logging.getLogger(__name__)

__all__ = ["ContradictionsResult", "analyze_contradictions", "compare_targets", "input_keys",
           "model_conditions_on_input"]


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


#: Groups up to this size are compared by gathered row pairs, batched over the groups of one
#: size; larger groups by a blocked Gram product.
_SMALL_GROUP = 64


def _small_group_hits(groups: Sequence[Sequence[int]], Fi: np.ndarray, fmin: float):
    """The pairs inside each group of at most ``_SMALL_GROUP`` members with ``cos > fmin``,
    gathered row pairs batched over the groups of one size (``a`` before ``b`` in the group).

    Yields ``(a, b, cos)``: (P,) int64, int64, float32; each batch gathers at most about
    ``2**22 / width`` pairs (``(P, width)`` float32 rows near 16 MB) or one group's pairs.
    """
    by_size: dict[int, list[Sequence[int]]] = {}
    for members in groups:
        if 2 <= len(members) <= _SMALL_GROUP:
            by_size.setdefault(len(members), []).append(members)
    budget = max(1, 2**22 // max(1, Fi.shape[1]))
    for g, gs in sorted(by_size.items()):
        iu, ju = np.triu_indices(g, 1)
        M = np.asarray(gs, dtype=np.int64)                      # (n_groups, g)
        step = max(1, budget // len(iu))
        for s in range(0, len(M), step):
            a, b = M[s:s + step, iu].ravel(), M[s:s + step, ju].ravel()
            c = np.einsum("ij,ij->i", Fi[a], Fi[b])
            keep = c > fmin
            yield a[keep], b[keep], c[keep]


def _parts_cat(parts):
    """The concatenated ``(a, b, c)`` of a list of such triples."""
    return tuple(np.concatenate(x) for x in zip(*parts, strict=True))


def _most_aligned(a: np.ndarray, b: np.ndarray, c: np.ndarray, cap: int):
    """The pairs ordered by decreasing cosine then ``(a, b)`` (``a < b``), at most ``cap``."""
    a, b = np.minimum(a, b), np.maximum(a, b)
    order = np.lexsort((b, a, -c))[:cap]
    return a[order], b[order], c[order]


def _large_group_hits(m: np.ndarray, Fi: np.ndarray, block: int, fmin: float):
    """The pairs of one large group (positions ``m``, ascending) with ``cos > fmin``, one
    ``(block, block)`` tile of its Gram matrix at a time (upper triangle only).

    Yields ``(a, b, cos)``: (P,) int64, int64, float32.
    """
    for r0 in range(0, len(m), block):
        rows = m[r0:r0 + block]
        Xr = Fi[rows]
        for c0 in range(r0, len(m), block):
            cols = m[c0:c0 + block]
            C = Xr @ Fi[cols].T                                   # (R, Q)
            hit = C > fmin
            if c0 == r0:
                hit = np.triu(hit, 1)
            i, j = np.nonzero(hit)
            yield rows[i], cols[j], C[i, j]


def _same_input_factor_pairs(groups: Sequence[Sequence[int]], Fi: np.ndarray, Fo: np.ndarray,
                             config: AnalysisConfig):
    """The factor signal's candidates: pairs inside one same-input group (every pair of the
    group, the ``max_group`` cap of the text path not applied) whose input factors are aligned
    (``cos > factor_input_min``) and output factors apart (``cos < factor_output_max``).

    Pairs of different inputs are never compared: they can never be contradictions, and
    comparing them would be a second all-pairs pass (issue 26). Cost: the sum over groups of
    the squared group size times the factor width (N^2 only when nearly all rows share one
    input, what the all-pairs pass cost on any data); memory: one ``block_size`` tile and at
    most ``2 * max_pairs`` kept pairs.

    Parameters
    ----------
    groups : sequence of sequences of int
        Row positions of each same-input group, ascending.
    Fi : (N, d_in) float32
        Unit input factors.
    Fo : (N, d_out) float32
        Unit output factors.
    config : AnalysisConfig
        ``factor_input_min``, ``factor_output_max``, ``block_size``, ``max_pairs`` (at most
        that many input-aligned pairs are kept, the most aligned, before the output test).

    Returns
    -------
    a, b : (P,) int64
        Row positions, ``a < b``, ordered by decreasing ``cos_input`` then ``(a, b)``.
    cin, cout : (P,) float64
        Their input and output factor cosines (float32 products).
    """
    fmin, block, cap = config.factor_input_min, config.block_size, config.max_pairs
    hits = itertools.chain(
        _small_group_hits(groups, Fi, fmin),
        *(_large_group_hits(np.asarray(m, dtype=np.int64), Fi, block, fmin)
          for m in groups if len(m) > _SMALL_GROUP))
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    n_kept = n_seen = 0
    for a, b, c in hits:
        if not len(a):
            continue
        parts.append((a, b, c))
        n_kept += len(a)
        n_seen += len(a)
        if n_kept > 2 * cap:          # bounded memory: keep the most aligned, as at the end
            parts = [_most_aligned(*_parts_cat(parts), cap)]
            n_kept = len(parts[0][0])
    if not parts:
        z = np.zeros(0, np.int64)
        return z, z, np.zeros(0), np.zeros(0)
    a, b, cin = _most_aligned(*_parts_cat(parts), cap)
    if n_seen > cap:
        logger.warning("contradictions: %d same-input pairs with aligned input factors; the "
                       "factor signal keeps the %d most aligned (max_pairs)", n_seen, cap)
    cin = cin.astype(np.float64)
    cout = np.einsum("ij,ij->i", Fo[a], Fo[b]).astype(np.float64)
    keep = cout < config.factor_output_max
    return a[keep], b[keep], cin[keep], cout[keep]


def input_keys(examples: Sequence, norm_input: Sequence[str] | None = None) -> list[tuple]:
    """The key that makes two inputs "the same" (module docstring): normalised input text, the
    roles of the input's turns in order, and the input's numbers in order.

    Parameters
    ----------
    examples : sequence of N Example
    norm_input : sequence of N str, optional
        Their normalised inputs (computed here when not given).

    Returns
    -------
    list of N tuple
        ``(normalised input, roles, numbers)``; two examples have the same input when their keys
        are equal (an empty normalised input has no key: ``()``).
    """
    if norm_input is None:
        norm_input = normalize_many([ex.input_text for ex in examples])
    keys = []
    for ex, n in zip(examples, norm_input, strict=True):
        if not n:
            keys.append(())
            continue
        last = ex.targets[-1]
        roles = tuple(m.role for i, m in enumerate(ex.messages[:last]) if i not in ex.targets)
        keys.append((n, roles, tuple(numbers(ex.input_text))))
    return keys


def analyze_contradictions(
    examples: Sequence | None = None,
    *,
    input_factors: np.ndarray | None = None,
    output_factors: np.ndarray | None = None,
    ids: np.ndarray | None = None,
    text: TextView | None = None,
    model_conditions: bool | None = None,
    config: AnalysisConfig | None = None,
) -> ContradictionsResult:
    """Pairs with the same input (up to formatting) whose targets differ in substance.

    Parameters
    ----------
    examples : sequence of Example, optional
        Text signal (and the check every pair must pass).
    input_factors : (N, d_in) float, optional
        Pooled input-side representation per example (encoder).
    output_factors : (N, d_out) float, optional
        Pooled output-side error signal per example (encoder).
    ids : (N,) int, optional
        Example ids (default ``Example.index``, else ``0..N-1``).
    text : TextView, optional
        The analysis' shared text view of ``examples`` (built here when not given).
    model_conditions : bool or None
        The capability statement's ``conditions_on_input``: the factor signal may propose pairs
        only when True (None: not measured, so it may not).
    config : AnalysisConfig

    Returns
    -------
    ContradictionsResult
        ``name="contradictions"``. Table: ``is_contradiction``, ``contradiction_score`` (max over
        its pairs, in [0, 1]), ``contradiction_count``. Pairs of kind ``"contradiction"``, detail
        ``signal``, ``reasons``, ``input_similarity`` (1: the same input), ``target_jaccard``,
        ``final_answers``, ``diff`` (word diff of the two targets) and, with factors,
        ``cos_input``/``cos_output``. ``positions``: the pairs as row positions. Summary:
        ``factor_signal`` says whether the factor signal could propose pairs and why;
        ``factor_pairs_same_input``, ``factor_pairs_without_text_support`` (None without
        texts), ``factor_pairs`` and ``factor_pairs_other_input`` (always None: pairs of other
        inputs are not compared), ``factor_pairs_scope`` (why).

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
    groups: dict[tuple, list[int]] = {}
    if examples is not None:
        summary["signals"].append("text")
        text = text if text is not None else TextView(examples, config)
        targets, n_tg = text.target, text.norm_target
        keys = input_keys(text.examples, text.norm_input)
        cands: set[tuple[int, int]] = set()
        for i, key in enumerate(keys):
            if key:
                groups.setdefault(key, []).append(i)
        n_groups = 0
        for members in groups.values():
            if len(members) < 2:
                continue
            n_groups += 1
            head = members[: config.max_group]
            for x_pos, x in enumerate(members):
                for y in (members[x_pos + 1:] if x_pos < config.max_group else head):
                    cands.add((min(x, y), max(x, y)))
        summary["same_input_groups"] = n_groups
        summary["candidate_pairs"] = len(cands)
        for x, y in sorted(cands):
            cmp = compare_targets(targets[x], targets[y], n_tg[x], n_tg[y], config)
            if cmp is None:
                continue
            found[(x, y)] = {
                "score": cmp["strength"],
                "detail": {"signal": "text", "reasons": cmp["reasons"],
                           "input_similarity": 1.0, "target_jaccard": cmp["target_jaccard"],
                           "final_answers": cmp["final_answers"],
                           "substitutions": cmp["substitutions"],
                           "diff": short_diff(targets[x], targets[y])},
            }
    if have_factors:
        summary["signals"].append("factors")
        may_propose = bool(model_conditions) and examples is not None
        if examples is None:
            why = "no texts: the inputs cannot be checked, so the factor signal proposes nothing"
        elif model_conditions is None:
            why = ("the capability statement did not measure whether the model conditions on "
                   "the input, so the factor signal proposes nothing")
        elif not model_conditions:
            why = ("the model barely conditions on the input (capability statement): its input "
                   "factors do not tell inputs apart, so the factor signal proposes nothing")
        else:
            why = ("the model conditions on the input: the factor signal proposes pairs with the "
                   "same input (up to formatting)")
        summary["factor_signal"] = {"proposes": may_propose, "why": why}
        summary.update({"factor_pairs": None, "factor_pairs_other_input": None,
                        "factor_pairs_same_input": None,
                        "factor_pairs_without_text_support": None})
        if examples is None:
            summary["factor_pairs_scope"] = (
                "no texts, so no input keys: no pair is compared and the factor pair counts "
                "are not measured")
        else:
            summary["factor_pairs_scope"] = (
                "only pairs with the same input (key) are compared: pairs of other inputs are "
                "never contradictions, and counting them would take a second all-pairs pass, "
                "so factor_pairs and factor_pairs_other_input are not measured")
            Fi, _ = unit_rows(input_factors)
            Fo, _ = unit_rows(output_factors)
            fa, fb, cin, cout = _same_input_factor_pairs(
                [m for m in groups.values() if len(m) > 1], Fi, Fo, config)
            n_same_target = 0
            for x, y, ci, co in zip(fa.tolist(), fb.tolist(), cin.tolist(), cout.tolist(),
                                    strict=True):
                if (x, y) in found:
                    found[(x, y)]["detail"].update({"signal": "text+factors", "cos_input": ci,
                                                    "cos_output": co})
                    continue
                cmp = compare_targets(targets[x], targets[y], n_tg[x], n_tg[y], config)
                if cmp is None:
                    n_same_target += 1
                    continue
                if not may_propose:
                    continue
                fscore = float(np.clip((ci - co) / 2.0, 0.0, 1.0))
                found[(x, y)] = {"score": max(cmp["strength"], fscore), "detail": {
                    "signal": "factors", "cos_input": ci, "cos_output": co,
                    "reasons": cmp["reasons"], "input_similarity": 1.0,
                    "target_jaccard": cmp["target_jaccard"],
                    "final_answers": cmp["final_answers"],
                    "substitutions": cmp["substitutions"],
                    "diff": short_diff(targets[x], targets[y])}}
            summary["factor_pairs_same_input"] = len(fa)
            summary["factor_pairs_without_text_support"] = n_same_target
            for (x, y), f in found.items():  # text pairs: does the factor signal agree?
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


def model_conditions_on_input(tokens: Any, config: AnalysisConfig | None = None) -> bool | None:
    """The capability statement's ``conditions_on_input`` for these token profiles (None when
    input dependence was not measured: no profiles, or none without the input)."""
    if tokens is None or getattr(tokens, "nll_noinput", None) is None:
        return None
    from constraintlab.analysis.suspects import capability

    cap = capability(tokens.offsets, tokens.nll, tokens.ids, tokens.nll_noinput, config)
    return cap["conditions_on_input"]


def _run(system, results, config: AnalysisConfig) -> ContradictionsResult | None:
    if system.examples is None and not system.has_factors:
        return None
    conditions = (model_conditions_on_input(system.tokens, config) if system.has_factors
                  else None)
    return analyze_contradictions(system.examples, input_factors=system.input_factors,
                                  output_factors=system.output_factors, ids=system.ids,
                                  text=system.text, model_conditions=conditions, config=config)


ANALYZER = Analyzer(
    name="contradictions", run=_run, section="contradictions",
    metrics={"contradictions": Metric("count", "pairs with the same input and a different "
                                      "target"),
             "contradicting_examples": Metric("examples", "examples in at least one "
                                              "contradiction")})
