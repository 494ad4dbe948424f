"""Redundancy: exact duplicates, near duplicates (text and gradient), duplicate sets.

- **Exact duplicate**: the same normalised record (the ``Example`` conversation: every turn's role
  and content, and which turns are targets), compared by hash.
- **Near duplicate (text)**: exact Jaccard >= ``minhash_threshold`` of the word shingles of the
  normalised text (:func:`constraintlab.analysis.text.normalize`: case, whitespace, punctuation
  and Unicode forms do not count), found by MinHash LSH and verified exactly; when both have an
  input, their inputs must be similar too (``near_input_min``).
- **Near duplicate (gradient)**: ``cos > 1 - eps`` of the constraint rows.

Duplicate sets are the connected components of all these links. The suggested keeper of a set
is its cleanest, most typical copy (:func:`choose_keeper`): the fewest formatting marks per word
(:func:`formatting_marks`: repeated or stray whitespace, words in capitals, sentences starting in
lower case; a rate within one mark per 100 words of the best ties), then the model's lowest
loss (mean target NLL, when the encoder measured it), then the first in file order; the set
records which rule decided (``keeper_reason``). Nothing is deleted: members are flagged, and the
table says which copy each redundant row repeats (``duplicate_of``) and which rows a
deduplicated set keeps (``keep``).
Pairs that the contradiction analyzer reports (same input, targets differ in substance) are never
near duplicates. Near-duplicate links between members of one variant family
(:mod:`constraintlab.analysis.families`) are intended variation, not redundancy, unless
``families_are_duplicates``; exact repeats always count.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from constraintlab.analysis.config import AnalysisConfig
from constraintlab.analysis.registry import Analyzer, Metric
from constraintlab.analysis.result import AnalyzerResult, make_pair
from constraintlab.analysis.text import TextView, components, jaccard, text_hash

logger = logging.getLogger(__name__)

__all__ = ["RedundancyResult", "analyze_redundancy", "choose_keeper", "formatting_marks",
           "record_key"]

#: Losses closer than this (nats/token) are a tie: the same text scored in another batch.
LOSS_TIE = 1e-4
#: Formatting rates closer than this (marks per 100 words) are a tie.
FORMAT_TIE = 1.0

_SPACE_RUN = re.compile(r"(?<=\S)[ \t\u00a0]{2,}(?=\S)|\t|\r|\u00a0")
_EDGE_SPACE = re.compile(r"^[ \t]+\S|\S[ \t]+$", re.MULTILINE)
_BLANK_RUN = re.compile(r"\n[ \t]*\n[ \t]*\n")
_CAPS_WORD = re.compile(r"\b[A-Z]{2,}\b")
_LOWER_START = re.compile(r"(?:^|[.!?]\s+)([a-z])")


@dataclass
class RedundancyResult(AnalyzerResult):
    """What :func:`analyze_redundancy` found.

    Attributes
    ----------
    duplicate_set : (N,) int64
        Duplicate set of each row position (-1 for none), as the table's ``duplicate_set``.
    """

    duplicate_set: np.ndarray | None = field(default=None, repr=False)


def record_key(example) -> str:
    """Hash of the normalised record (turn roles and contents, target positions)."""
    payload = json.dumps([[[m.role, m.content] for m in example.messages],
                          list(example.targets)], ensure_ascii=False)
    return text_hash(payload)


def formatting_marks(texts: Sequence[str]) -> np.ndarray:
    """Formatting oddities of each text: ``(N, 3)`` int64 counts of whitespace, capitals, case.

    Columns: **whitespace** (runs of two or more spaces between words, tabs, carriage returns,
    no-break spaces, spaces at the start or end of a line, three or more line breaks in a row),
    **capitals** (words of two or more letters written all in capitals) and **lower starts**
    (the text or a sentence starting with a lower-case letter). Acronyms count too, but
    equally in every copy of one text, so they do not change which copy is cleanest.

    Parameters
    ----------
    texts : sequence of N str

    Returns
    -------
    (N, 3) int64
    """
    out = np.zeros((len(texts), 3), np.int64)
    for i, t in enumerate(texts):
        # cheap substring tests first: most texts have none of these marks
        space = (len(_SPACE_RUN.findall(t)) if ("  " in t or "\t" in t or "\r" in t
                                                or "\u00a0" in t) else 0)
        edge = (len(_EDGE_SPACE.findall(t)) if (t[:1] in " \t" or t[-1:] in " \t"
                                                or " \n" in t or "\n " in t or "\t" in t)
                else 0)
        blank = len(_BLANK_RUN.findall(t)) if "\n\n" in t else 0
        out[i] = (space + edge + blank, len(_CAPS_WORD.findall(t)),
                  len(_LOWER_START.findall(t)))
    return out


def choose_keeper(members: Sequence[int], marks: np.ndarray | None,
                  loss: np.ndarray | None, ids: np.ndarray | None = None,
                  words: np.ndarray | None = None) -> tuple[int, str, str]:
    """The copy a duplicate set keeps, and why.

    Order: the fewest formatting marks per 100 words (sum of :func:`formatting_marks`; rates
    closer than :data:`FORMAT_TIE` tie, so copies that differ in content more than in form are
    not told apart by their length), then the lowest loss (losses within :data:`LOSS_TIE` tie;
    a NaN loss, not measured, ranks last), then file order.

    Parameters
    ----------
    members : sequence of int
        Row positions of the set.
    marks : (N, 3) int or None
        :func:`formatting_marks` of every row (None: not compared).
    loss : (N,) float or None
        Mean target NLL of every row (None: not measured).
    ids : (N,) int, optional
        Example ids, as ``detail`` names the copies (default: the positions).
    words : (N,) int, optional
        Words of every row (default 100 each: the rate is the count of marks).

    Returns
    -------
    (keeper, reason, detail)
        ``keeper`` is a row position; ``reason`` the rule that decided: ``"formatting"``,
        ``"loss"`` or ``"file_order"``; ``detail`` says it in words.
    """
    members = sorted(int(m) for m in members)
    name = (lambda m: int(ids[m])) if ids is not None else int
    left = members
    if marks is not None:
        total = {m: int(marks[m].sum()) for m in members}
        rate = {m: 100.0 * total[m] / max(int(words[m]) if words is not None else 100, 1)
                for m in members}
        best = min(rate.values())
        left = [m for m in members if rate[m] - best < FORMAT_TIE]
        if len(left) == 1:
            runner = min((m for m in members if m != left[0]), key=lambda m: (rate[m], m))
            what = ", ".join(f"{n} {int(marks[runner][j])}" for j, n in enumerate(
                ("whitespace", "capitals", "lower-case starts")) if marks[runner][j])
            per = "" if words is None else " per 100 words"
            return left[0], "formatting", (
                f"fewest formatting marks: {rate[left[0]]:.3g}{per}, the next copy "
                f"({name(runner)}) {rate[runner]:.3g} ({what})")
    if loss is not None:
        known = [m for m in left if math.isfinite(float(loss[m]))]
        if known:
            low = min(float(loss[m]) for m in known)
            tied = [m for m in known if float(loss[m]) - low <= LOSS_TIE]
            if len(tied) == 1 and len(left) > 1:
                rest = [m for m in left if m != tied[0]]
                finite = [m for m in rest if math.isfinite(float(loss[m]))]
                runner = min(finite, key=lambda m: float(loss[m])) if finite else None
                return tied[0], "loss", (
                    ("formatting alike; " if marks is not None else "")
                    + f"lowest loss: {low:.4f} nats/token, " + (
                        f"the next copy ({name(runner)}) {float(loss[runner]):.4f}"
                        if runner is not None else "the others not measured"))
            left = tied
    alike = [w for w, known in (("formatting", marks is not None), ("loss", loss is not None))
             if known]
    return left[0], "file_order", ((" and ".join(alike) + " alike; " if alike else "")
                                   + "the first in file order")


def analyze_redundancy(
    examples: Sequence | None = None,
    *,
    n: int | None = None,
    ids: np.ndarray | None = None,
    near_parallel: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    exclude: set[tuple[int, int]] | None = None,
    families: np.ndarray | None = None,
    text: TextView | None = None,
    loss: np.ndarray | None = None,
    config: AnalysisConfig | None = None,
) -> RedundancyResult:
    """Exact and near duplicates and the duplicate sets.

    Parameters
    ----------
    examples : sequence of Example, optional
        For the lexical signals (exact and text near duplicates).
    n : int, optional
        Number of examples when ``examples`` is None.
    ids : (N,) int, optional
        Example ids (default: ``Example.index``, else ``0..N-1``).
    near_parallel : tuple of (a, b, cos) arrays, optional
        Row-position pairs with ``cos > 1 - eps`` (``analyze_pairs(...).near_parallel``).
    exclude : set of (a, b) row positions, a < b, optional
        Pairs that are not duplicates whatever their similarity (contradictions).
    families : (N,) int, optional
        Variant family of each row (-1 for none); near-duplicate links inside a family are
        skipped (counted as ``near_duplicate_pairs_in_families``) unless
        ``config.families_are_duplicates``.
    text : TextView, optional
        The analysis' shared text view of ``examples`` (built here when not given).
    loss : (N,) float, optional
        Mean target NLL of each row (NaN: not measured); ranks copies that format alike
        (:func:`choose_keeper`).
    config : AnalysisConfig

    Returns
    -------
    RedundancyResult
        ``name="redundancy"``. Table: ``is_exact_duplicate``, ``is_near_duplicate``,
        ``duplicate_set`` (-1 if none), ``is_duplicate_keeper``, ``is_redundant`` (in a set and
        not its keeper), ``duplicate_of`` (the keeper's id for a redundant row, else -1),
        ``keep`` (not redundant: the rows a deduplicated set keeps), ``formatting_marks`` (the
        sum of :func:`formatting_marks`; nullable, NA outside a set: only members are
        compared), ``redundancy_score`` (strongest link in [0, 1]: 1
        exact, else Jaccard or cosine). Summary ``sets``: ``keeper``, ``keeper_reason``
        (``formatting``, ``loss``, ``file_order``) and ``keeper_detail`` per set. Pairs:
        ``exact_duplicate`` (first copy, copy) and ``near_duplicate`` with
        ``detail["signal"]`` ``"text"`` (``jaccard``) or ``"gradient"`` (``cos``).
    """
    config = config if config is not None else AnalysisConfig()
    if examples is None and n is None:
        raise TypeError("analyze_redundancy() needs examples or n")
    N = len(examples) if examples is not None else int(n)
    if ids is None:
        ids = (np.array([ex.index for ex in examples], dtype=np.int64) if examples is not None
               else np.arange(N))
    ids = np.asarray(ids)
    exclude = exclude or set()
    score = np.zeros(N)
    is_exact = np.zeros(N, bool)
    is_near = np.zeros(N, bool)
    links_a: list[int] = []
    links_b: list[int] = []
    pairs: list[dict] = []
    summary: dict = {"n": N}
    exact_gid = np.full(N, -1, np.int64)  # exact-duplicate group of each example
    fam = (np.asarray(families) if families is not None and not config.families_are_duplicates
           else np.full(N, -1, np.int64))
    n_in_family = 0

    def same_exact(x: int, y: int) -> bool:
        return exact_gid[x] >= 0 and exact_gid[x] == exact_gid[y]

    def same_family(x: int, y: int) -> bool:
        nonlocal n_in_family
        if fam[x] >= 0 and fam[x] == fam[y]:
            n_in_family += 1
            return True
        return False

    def near_link(x: int, y: int, sim: float, detail: dict) -> None:
        pairs.append(make_pair("near_duplicate", ids[x], ids[y], sim, detail))
        links_a.append(x)
        links_b.append(y)
        is_near[[x, y]] = True
        score[x] = max(score[x], sim)
        score[y] = max(score[y], sim)

    if examples is not None:
        groups: dict[str, list[int]] = {}
        for i, ex in enumerate(examples):
            groups.setdefault(record_key(ex), []).append(i)
        n_sets = 0
        for members in groups.values():
            if len(members) < 2:
                continue
            n_sets += 1
            keeper = members[0]
            for other in members[1:]:
                pairs.append(make_pair("exact_duplicate", ids[keeper], ids[other], 1.0,
                                       {"set_size": len(members)}))
                links_a.append(keeper)
                links_b.append(other)
            exact_gid[members] = n_sets
            is_exact[members] = True
            score[members] = 1.0
        summary["exact_duplicate_sets"] = n_sets
        summary["exact_duplicates"] = int(sum(len(m) - 1 for m in groups.values()))
        text = text if text is not None else TextView(examples, config)
        norm, n_in = text.norm_record, text.norm_input
        a, b, jac, stats = text.pairs(config.minhash_threshold, on="record")
        summary["minhash"] = stats
        n_text = 0
        n_other_input = 0
        for x, y, j in zip(a.tolist(), b.tolist(), jac.tolist(), strict=True):
            if same_exact(x, y) or (x, y) in exclude or same_family(x, y):
                continue
            if n_in[x] and n_in[y] and n_in[x] != n_in[y]:
                size = config.input_shingle_size
                ji = jaccard(text.shingles(x, "input", size), text.shingles(y, "input", size))
                if ji < config.near_input_min:
                    n_other_input += 1
                    continue
            n_text += 1
            near_link(x, y, j, {"signal": "text", "jaccard": j,
                                "normalized_equal": norm[x] == norm[y]})
        summary["near_duplicate_pairs_text"] = n_text
        summary["similar_text_other_input"] = n_other_input
    if near_parallel is not None:
        a, b, v = near_parallel
        n_grad = 0
        for x, y, c in zip(np.asarray(a).tolist(), np.asarray(b).tolist(),
                           np.asarray(v).tolist(), strict=True):
            x, y = min(x, y), max(x, y)
            if same_exact(x, y) or (x, y) in exclude or same_family(x, y):
                continue
            n_grad += 1
            c = min(1.0, c)
            near_link(x, y, c, {"signal": "gradient", "cos": c})
        summary["near_duplicate_pairs_gradient"] = n_grad
    # duplicate sets: the groups of every link
    dup_set = np.full(N, -1, np.int64)
    keeper_flag = np.zeros(N, bool)
    dup_of = np.full(N, -1, np.int64)
    marks = words = None
    if examples is not None:  # only the members of a set are compared
        marks = np.zeros((N, 3), np.int64)
        members_all = np.flatnonzero(np.isin(np.arange(N), np.r_[links_a, links_b]))
        marks[members_all] = formatting_marks([examples[m].text for m in members_all])
        words = np.zeros(N, np.int64)
        words[members_all] = [len(examples[m].text.split()) for m in members_all]
    if loss is not None:
        loss = np.asarray(loss, dtype=np.float64)
        if loss.shape != (N,):
            raise ValueError(f"loss has shape {loss.shape}, expected ({N},)")
    sets: list[dict] = []
    reasons: dict[str, int] = {}
    for members in components(N, links_a, links_b):
        sid = len(sets)
        dup_set[members] = sid
        keeper, reason, detail = choose_keeper(members, marks, loss, ids, words)
        reasons[reason] = reasons.get(reason, 0) + 1
        keeper_flag[keeper] = True
        dup_of[[m for m in members if m != keeper]] = ids[keeper]
        exact_set = bool(exact_gid[members[0]] >= 0
                         and (exact_gid[members] == exact_gid[members[0]]).all())
        sets.append({"id": sid, "kind": "exact" if exact_set else "near",
                     "keeper": int(ids[keeper]), "keeper_reason": reason,
                     "keeper_detail": detail,
                     "members": [int(ids[m]) for m in members], "size": len(members)})
    in_set = dup_set >= 0
    redundant = in_set & ~keeper_flag
    n_exact = summary.setdefault("exact_duplicates", 0)
    summary.setdefault("exact_duplicate_sets", 0)
    near_pairs = (summary.get("near_duplicate_pairs_text", 0)
                  + summary.get("near_duplicate_pairs_gradient", 0))
    summary.update({
        "near_duplicate_pairs": near_pairs,
        "near_duplicates": int(redundant.sum()) - n_exact,
        "duplicates": int(redundant.sum()),
        "near_duplicate_pairs_in_families": n_in_family,
        "duplicate_sets": len(sets),
        "redundant_examples": int(redundant.sum()),
        "redundancy_ratio": float(redundant.sum() / N) if N else 0.0,
        "keeper_rule": ("fewest formatting marks per 100 words (within 1 ties), then lowest loss"
                        + ("" if loss is not None else " (not measured)")
                        + ", then first in file order"),
        "keeper_reasons": reasons,
        "sets": sets[:1000],
    })
    table = pd.DataFrame({
        "is_exact_duplicate": is_exact,
        "is_near_duplicate": is_near,
        "duplicate_set": dup_set,
        "is_duplicate_keeper": keeper_flag,
        "is_redundant": redundant,
        "duplicate_of": dup_of,
        "keep": ~redundant,
        "formatting_marks": pd.array(np.where(in_set, marks.sum(axis=1), 0)
                                     if marks is not None else np.zeros(N, np.int64),
                                     dtype="Int64"),
        "redundancy_score": np.clip(score, 0.0, 1.0),
    }, index=pd.Index(ids, name="index"))
    # formatting is only compared inside a set: elsewhere (and without texts) not measured
    table.loc[~in_set if marks is not None else slice(None), "formatting_marks"] = pd.NA
    return RedundancyResult("redundancy", table, summary, pairs, duplicate_set=dup_set)


def _run(system, results, config: AnalysisConfig) -> RedundancyResult | None:
    pairs, con, fam = results.pairs, results.contradictions, results.families
    if system.examples is None and pairs is None:
        return None
    return analyze_redundancy(
        system.examples, n=system.n, ids=system.ids,
        near_parallel=pairs.near_parallel if pairs is not None else None,
        exclude=con.positions if con is not None else set(),
        families=fam.labels if fam is not None else None, text=system.text,
        loss=_mean_loss(system.tokens, system.n), config=config)


def _mean_loss(tokens, n: int) -> np.ndarray | None:
    """Mean NLL of each row's target tokens (NaN without tokens), or None without profiles."""
    if tokens is None:
        return None
    offsets = np.asarray(tokens.offsets, dtype=np.int64)
    nll = np.asarray(tokens.nll, dtype=np.float64)
    counts = np.diff(offsets)
    out = np.full(n, np.nan)
    has = counts > 0
    if has.any():
        out[has] = np.add.reduceat(nll, offsets[:-1][has]) / counts[has]
    return out


ANALYZER = Analyzer(
    name="redundancy", run=_run, section="redundancy",
    after=("pairs", "contradictions", "families"),
    metrics={
        "exact_duplicates": Metric("exact_duplicates", "records that exactly repeat another "
                                   "(beyond one keeper per set)"),
        "exact_duplicate_sets": Metric("exact_duplicate_sets", "sets of exact duplicates"),
        "near_duplicates": Metric("near_duplicates", "records that nearly repeat another "
                                  "(beyond one keeper per set)"),
        "near_duplicate_pairs": Metric("near_duplicate_pairs", "near-duplicate pairs (text and "
                                       "gradient signals)"),
        "duplicates": Metric("duplicates", "exact_duplicates + near_duplicates"),
        "redundancy_ratio": Metric("redundancy_ratio", "redundant records / N")})
