"""Variant families: deliberate near-variants of one text, and whether their constraints agree.

Finding families
    Records are linked when the Jaccard of their word ``shingle_size``-shingles (normalised
    text, :func:`constraintlab.analysis.text.normalize`) reaches ``family_jaccard`` (MinHash LSH,
    verified exactly). A connected set of records with at least ``family_min_size`` distinct
    *variants* is a family. Variants are told apart by their text with whitespace collapsed and
    case folded (markup and punctuation kept): copies that differ only in spacing or case are
    repeats, not variants; ``**twelve**`` against ``twelve`` is a variant (a marked word).

What varies
    Each member is aligned word by word with the family's *base*, the member most similar to
    all others (highest mean shingle Jaccard; on ties the one with the least markup, then the
    first in file order), and every
    difference is classified: ``marked`` (the same word with markup added or removed, e.g.
    ``**twelve**``, ``<b>twelve</b>``), ``replaced`` (another word: a synonym or a changed
    number), ``added`` and ``removed`` words (an appended step).

Coherence (with constraint rows)
    ``mean_cos``: mean pairwise cosine of the members' constraint rows; ``first_direction_share``
    = ``s_1^2 / sum_j s_j^2`` of the members' (m, k) matrix (1 = every member pushes the same
    way); ``opposing_pairs``: member pairs with ``cos < -tau``. A family is *incoherent*
    (``reasons``) when ``mean_cos < family_coherence_min`` (``low_coherence``), when a member
    pair opposes (``opposing``), or when two members contradict each other (``contradiction``:
    the contradiction analyzer's same input, different answer): training on it pulls the model
    in different directions. A changed final answer in a long worked solution moves a few of a
    hundred target tokens, so the gradient barely shows it; the text signal does.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from constraintlab.analysis.config import AnalysisConfig
from constraintlab.analysis.registry import Analyzer, Metric
from constraintlab.analysis.result import AnalyzerResult
from constraintlab.analysis.text import TextView, components, jaccard

logger = logging.getLogger(__name__)

__all__ = ["FamiliesResult", "analyze_families", "diff_words", "family_coherence"]

_TAG = re.compile(r"<[^<>]*>")
_WORD_CORE = re.compile(r"[\W_]+")
_MAX_MEDOID = 64        # members compared when choosing the base of a large family
_LISTED = 5             # most frequent changes of each kind named per family
_MAX_FAMILIES = 1000    # families detailed in the summary


@dataclass
class FamiliesResult(AnalyzerResult):
    """What :func:`analyze_families` found.

    Attributes
    ----------
    labels : (N,) int64
        Variant family of each row position (-1 for none), as the table's ``family``.
    """

    labels: np.ndarray | None = field(default=None, repr=False)


def variant_key(text: str) -> str:
    """Whitespace collapsed, case folded: copies equal under it are repeats, not variants."""
    return " ".join(text.split()).casefold()


def _core(word: str) -> str:
    """The word without markup (tags, punctuation, ``*``/``_`` emphasis), case folded."""
    return _WORD_CORE.sub("", _TAG.sub("", word)).casefold()


_SYMBOL = re.compile(r"[^\w\s]|_")


def _markup(text: str) -> int:
    """Tags plus punctuation/symbol characters outside them."""
    return len(_TAG.findall(text)) + len(_SYMBOL.findall(_TAG.sub("", text)))


def _marked_form(x: str, y: str) -> str:
    """Of two spellings of one word, the one carrying more markup."""
    return y if len(y) - len(_core(y)) >= len(x) - len(_core(x)) else x


def _marks(xs: list[str], ys: list[str], out: dict[str, list]) -> None:
    for x, y in zip(xs, ys, strict=True):
        if x.casefold() != y.casefold():
            out["marked"].append(_marked_form(x, y))


def diff_words(base: str, other: str) -> dict[str, list]:
    """Word-level differences of ``other`` against ``base``.

    Returns
    -------
    dict
        ``marked``: words one side marks with punctuation or markup that the other writes
        plain (given in their marked form, whichever side has it); ``replaced``: ``[old, new]``
        (a word or a run of words replaced by another, e.g. ``["twelve", "a dozen"]``);
        ``added`` / ``removed``: words only ``other`` / only ``base`` has. Case-only changes
        are ignored.
    """
    a, b = base.split(), other.split()
    out: dict[str, list] = {"marked": [], "replaced": [], "added": [], "removed": []}
    sm = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for op, i1, i2, j1, j2 in sm.get_opcodes():
        if op == "insert":
            out["added"] += b[j1:j2]
        elif op == "delete":
            out["removed"] += a[i1:i2]
        elif op == "replace":
            wa, wb = a[i1:i2], b[j1:j2]
            if len(wa) != len(wb):
                # align the block on its word cores (markup-insensitive) before classifying
                inner = difflib.SequenceMatcher(a=[_core(w) for w in wa],
                                                b=[_core(w) for w in wb], autojunk=False)
                for op2, k1, k2, l1, l2 in inner.get_opcodes():
                    if op2 == "equal":
                        _marks(wa[k1:k2], wb[l1:l2], out)
                    elif op2 == "replace":
                        out["replaced"].append([" ".join(wa[k1:k2]), " ".join(wb[l1:l2])])
                    else:
                        out["removed"] += wa[k1:k2]
                        out["added"] += wb[l1:l2]
                continue
            for x, y in zip(wa, wb, strict=True):
                if _core(x) == _core(y) and _core(x):
                    _marks([x], [y], out)
                else:
                    out["replaced"].append([x, y])
    return out


def family_coherence(rows: np.ndarray, tau: float) -> dict:
    """Agreement of a family's constraint rows.

    Parameters
    ----------
    rows : (m, k) float, m >= 2
    tau : float
        Conflict threshold (a pair opposes when ``cos < -tau``).

    Returns
    -------
    dict
        ``mean_cos`` (mean over the m(m-1)/2 pairs), ``min_cos``, ``opposing_pairs``,
        ``first_direction_share`` (``s_1^2 / sum s^2`` of ``rows``).
    """
    rows = np.asarray(rows, dtype=np.float64)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    u = rows / np.where(norms > 0, norms, 1.0)
    c = u @ u.T
    iu = np.triu_indices(len(rows), 1)
    pair = c[iu]
    s = np.linalg.svd(rows, compute_uv=False)
    total = float((s ** 2).sum())
    return {"mean_cos": float(pair.mean()), "min_cos": float(pair.min()),
            "opposing_pairs": int((pair < -tau).sum()),
            "first_direction_share": float(s[0] ** 2 / total) if total > 0 else 0.0}


def _medoid(shingles: list[set], markup: list[int]) -> int:
    """The member with the highest summed Jaccard to the others; ties go to the one with the
    least markup (``markup``: non-word characters), then to the first."""
    m = len(shingles)
    best, best_key = 0, None
    for i in range(m):
        score = sum(jaccard(shingles[i], shingles[j]) for j in range(m) if j != i)
        key = (round(score, 9), -markup[i])
        if best_key is None or key > best_key:
            best, best_key = i, key
    return best


def _top(counter: Counter) -> list:
    return [[w, c] for w, c in sorted(counter.items(), key=lambda x: (-x[1], str(x[0])))
            [:_LISTED]]


def analyze_families(
    examples: Sequence,
    *,
    features: np.ndarray | None = None,
    volatility: np.ndarray | None = None,
    tau: float | None = None,
    contradictions: set[tuple[int, int]] | None = None,
    ids: np.ndarray | None = None,
    text: TextView | None = None,
    config: AnalysisConfig | None = None,
) -> FamiliesResult:
    """Variant families, what varies in each, and whether their constraints agree.

    Parameters
    ----------
    examples : sequence of N Example
    features : (N, k) float, optional
        Constraint rows (for the coherence of each family).
    volatility : (N,) float, optional
        Volatility score of each example (for the spread within each family).
    tau : float, optional
        Conflict threshold of the features (default ``config.tau_for(k)``).
    contradictions : set of (a, b) row positions, a < b, optional
        Contradiction pairs (``analyze_contradictions(...).positions``).
    ids : (N,) int, optional
        Example ids (default ``Example.index``).
    text : TextView, optional
        The analysis' shared text view of ``examples`` (built here when not given).
    config : AnalysisConfig
        ``family_jaccard``, ``family_min_size``, ``family_coherence_min``, ``shingle_size``.

    Returns
    -------
    FamiliesResult
        ``name="families"``. Table: ``family`` (-1 if none), ``is_family_member``,
        ``is_family_base``. Summary: ``count``, ``members``, ``incoherent`` (and
        ``incoherent_ids``), ``coherence_rule``, ``families`` (id, size, n_variants,
        base, members, label, varies, volatility spread, coherence, ``coherent``).
        ``labels``: (N,) family of each row position.
    """
    config = config if config is not None else AnalysisConfig()
    n = len(examples)
    ids = (np.array([ex.index for ex in examples], dtype=np.int64) if ids is None
           else np.asarray(ids))
    text = text if text is not None else TextView(examples, config)
    texts = text.record
    a, b, _, stats = text.pairs(config.family_jaccard, on="record")
    labels = np.full(n, -1, np.int64)
    families: list[dict] = []
    for members in components(n, a, b):
        n_variants = len({variant_key(texts[i]) for i in members})
        if n_variants >= config.family_min_size:
            labels[members] = len(families)
            families.append({"rows": members, "n_variants": n_variants})
    if features is not None and tau is None:
        tau = config.tau_for(np.asarray(features).shape[1])
    size = config.shingle_size
    base_flag = np.zeros(n, bool)
    out = []
    n_con_of = np.zeros(len(families), np.int64)     # contradicting pairs inside each family
    if contradictions is not None and len(contradictions):
        cx, cy = (np.array([int(p[j]) for p in contradictions], np.int64) for j in (0, 1))
        fx = labels[cx]
        both = (fx >= 0) & (fx == labels[cy])
        n_con_of = np.bincount(fx[both], minlength=len(families))
    for fid, fam in enumerate(families):
        rows = fam["rows"]
        shingles = [text.shingles(i, "record", size) for i in rows[:_MAX_MEDOID]]
        markup = [_markup(texts[i]) for i in rows[:_MAX_MEDOID]]
        base = rows[_medoid(shingles, markup)]
        base_flag[base] = True
        varies = {k: Counter() for k in ("marked", "replaced", "added", "removed")}
        changed = Counter()
        for i in rows:
            if i == base:
                continue
            d = diff_words(texts[base], texts[i])
            for kind, items in d.items():
                if items:
                    changed[kind] += 1
                for item in items:
                    varies[kind][" -> ".join(item) if kind == "replaced" else item] += 1
        entry = {
            "id": fid, "size": len(rows),
            "n_variants": fam["n_variants"],
            "base": int(ids[base]), "members": [int(ids[i]) for i in rows],
            "label": " ".join(texts[base].split()[:12]),
            "varies": {k: {"members": int(changed[k]), "top": _top(varies[k])}
                       for k in varies},
        }
        if volatility is not None:
            v = np.asarray(volatility, dtype=np.float64)[rows]
            entry["volatility"] = {"min": float(v.min()), "max": float(v.max()),
                                   "spread": float(v.max() - v.min()), "std": float(v.std())}
        reasons = []
        if contradictions is not None:
            n_con = int(n_con_of[fid])   # one pass over the pairs, not one per family
            entry["contradicting_pairs"] = n_con
            if n_con:
                reasons.append("contradiction")
        if features is not None:
            coh = family_coherence(np.asarray(features)[rows], tau)
            entry["coherence"] = coh
            if coh["mean_cos"] < config.family_coherence_min:
                reasons.append("low_coherence")
            if coh["opposing_pairs"]:
                reasons.append("opposing")
        entry["reasons"] = reasons
        entry["coherent"] = (not reasons if features is not None or contradictions is not None
                             else None)
        out.append(entry)
    incoherent = [f["id"] for f in out if f["coherent"] is False]
    summary = {
        "n": n, "count": len(out), "members": int((labels >= 0).sum()),
        "incoherent": len(incoherent), "incoherent_ids": incoherent,
        "family_jaccard": config.family_jaccard, "min_size": config.family_min_size,
        "coherence_rule": (f"incoherent when mean pairwise cos < {config.family_coherence_min}"
                           ", or a member pair has cos < -tau"
                           + (f" (tau = {tau:.3f})" if tau is not None else "")
                           + ", or two members contradict each other"),
        "tau": tau, "minhash": stats, "families": out[:_MAX_FAMILIES],
    }
    coherence = np.full(n, np.nan)
    for f in out:
        if "coherence" in f:
            coherence[labels == f["id"]] = f["coherence"]["mean_cos"]
    table = pd.DataFrame({"family": labels, "is_family_member": labels >= 0,
                          "is_family_base": base_flag, "family_coherence": coherence},
                         index=pd.Index(ids, name="index"))
    return FamiliesResult("families", table, summary, labels=labels)


def _run(system, results, config: AnalysisConfig) -> FamiliesResult | None:
    if system.examples is None:
        return None
    pairs, vol, con = results.pairs, results.volatility, results.contradictions
    return analyze_families(
        system.examples, features=system.features, ids=system.ids, text=system.text,
        volatility=vol.score if vol is not None else None,
        tau=pairs.summary["tau"] if pairs is not None else None,
        contradictions=con.positions if con is not None else None, config=config)


ANALYZER = Analyzer(
    name="families", run=_run, section="families",
    after=("pairs", "volatility", "contradictions"),
    metrics={"families": Metric("count", "variant families (near-variants of one text, at "
                                "least family_min_size)"),
             "family_members": Metric("members", "examples in a variant family"),
             "incoherent_families": Metric("incoherent", "families whose members' constraints "
                                           "disagree (low mean cosine, an opposing pair, or two "
                                           "members contradicting each other)")})
