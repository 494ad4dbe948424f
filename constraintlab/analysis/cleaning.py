"""What to keep: one decision per example from the findings of one analysis (``clean``).

Reads the per-example table of an analysis (:meth:`AnalysisResults.table`: the redundancy,
suspects, families columns) and its contradiction pairs; decides nothing the analyzers did not
find. Every example gets one ``action``:

``drop``
    - ``suspect``: its target is probably wrong: ``suspect_score >= suspect_level`` (default the
      analysis' own flag, ``1 - suspect_alpha`` = 0.99). The ``contradiction`` rule is taken out
      of the score first (a contradiction is decided by :attr:`CleanConfig.contradictions`, not
      by suspicion of both members): the score is recomputed from ``suspect_evidence`` without
      the rule's factor ``suspect_rule_p`` when it was the only rule that fired.
      Why 0.99 by default: on the planted GSM8K sets of ``benchmarks/bench_suspects.py`` the
      flag at that level hit 0.7 % / 0.3 % of the clean rows (10 % / 30 % planted), precision
      0.93 / 0.99, and LoRA training without the flagged rows recovered 119 % / 102 % of the
      held-out loss gap to clean training (README, suspects); a lower level drops more clean
      rows for few more wrong ones, a higher one keeps wrong targets the flag finds.
    - ``duplicate``: a redundant copy (``is_redundant``) of a duplicate set whose keeper is kept;
      the keeper is the redundancy analyzer's (``is_duplicate_keeper``; its rule is in the
      report's ``redundancy.keeper_rule``), not chosen here.
    - ``contradiction``: with ``contradictions="drop"`` every member of an open contradiction;
      with ``"keep-less-suspect"`` all members of a group (the connected pairs) but the one
      with the lowest ``suspect_evidence`` (ties: the first row).
    - ``family_variant``: with ``families="base"`` a member of a variant family other than its
      base (``is_family_base``), when the base is kept.
``review``
    - ``contradiction`` (the default policy ``"review"``): both members of a pair neither of
      which is dropped for another reason. They are kept in the written data: the tool cannot
      tell which answer is right; the decisions file names the other member.
    - ``duplicate_keeper_dropped``: a redundant copy whose keeper was dropped (as a suspect or a
      contradiction): kept, for a person to decide.
``keep``
    Everything else (``reason`` empty), including variant-family members by default (families
    are deliberate variation) and the keepers of duplicate sets.

Precedence: suspect, then contradiction, then duplicate, then family. ``evidence`` holds the
numbers behind a decision (suspect score and reasons, the keeper, the other members of a
contradiction, the family).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from constraintlab._config import (
    TYPE_ONLY,
    Interval,
    Options,
    Settings,
    check_fields,
    setting,
    settings_class,
)

__all__ = ["ACTIONS", "CONTRADICTION_POLICIES", "FAMILY_POLICIES", "CleanConfig",
           "model_evidence", "plan_cleaning"]

ACTIONS: tuple[str, ...] = ("keep", "drop", "review")
CONTRADICTION_POLICIES: tuple[str, ...] = ("review", "keep-less-suspect", "drop")
FAMILY_POLICIES: tuple[str, ...] = ("keep", "base")


@settings_class
class CleanConfig(Settings):
    """Settings of ``clean`` (module docstring: the rules), each declared once."""

    suspect_level: float | None = setting(None, Interval(0, 1, "right"), "Drop an example whose "
                                          "suspect_score (without the contradiction rule) is at "
                                          "least this; None: 1 - AnalysisConfig.suspect_alpha.")
    drop_suspects: bool = setting(True, TYPE_ONLY, "Drop the suspects above the level (False "
                                  "keeps them all).")
    contradictions: str = setting("review", Options(CONTRADICTION_POLICIES), "Contradiction "
                                  "pairs: both kept for review, keep the less suspect, or drop "
                                  "both.")
    families: str = setting("keep", Options(FAMILY_POLICIES), "Variant families: keep them "
                            "(intended variation) or keep only each family's base.")
    drop_duplicates: bool = setting(True, TYPE_ONLY, "Drop redundant copies, keeping the "
                                    "keeper.")

    def __post_init__(self) -> None:
        check_fields(self)


def model_evidence(evidence: np.ndarray, reasons: Iterable[str], rule_p: float) -> np.ndarray:
    """``suspect_evidence`` without the ``contradiction`` rule.

    The suspect score multiplies the model p-value by ``rule_p`` once when any rule fires
    (:mod:`constraintlab.analysis.suspects`); when ``contradiction`` was the only rule, that
    factor is taken back out: ``evidence + log10(rule_p)``.

    Parameters
    ----------
    evidence : (N,) float
        ``-log10(1 - suspect_score)`` per example.
    reasons : N str
        ``suspect_reasons`` (codes joined by ``";"``).
    rule_p : float
        ``AnalysisConfig.suspect_rule_p``.

    Returns
    -------
    (N,) float64
    """
    ev = np.asarray(evidence, dtype=np.float64).copy()
    others = {"false_arithmetic", "unsupported_final_answer"}
    for i, r in enumerate(reasons):
        codes = set(str(r).split(";")) if isinstance(r, str) else set()
        if "contradiction" in codes and not (codes & others):
            ev[i] = max(0.0, ev[i] + math.log10(rule_p))
    return ev


def _groups(n: int, pairs: list[tuple[int, int]]) -> list[list[int]]:
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    out: dict[int, list[int]] = {}
    for a, b in pairs:
        for x in (a, b):
            out.setdefault(find(x), [])
            if x not in out[find(x)]:
                out[find(x)].append(x)
    return [sorted(g) for g in out.values()]


def _col(table: pd.DataFrame, name: str, default: Any, dtype: Any) -> np.ndarray | None:
    if name not in table.columns:
        return None
    return table[name].fillna(default).to_numpy(dtype=dtype)


def plan_cleaning(table: pd.DataFrame, contradiction_pairs: Iterable[tuple[int, int]] = (),
                  *, config: CleanConfig | None = None, suspect_alpha: float = 0.01,
                  suspect_rule_p: float = 0.001) -> tuple[list[dict], dict]:
    """One decision per row of an analysis (module docstring: the rules).

    Parameters
    ----------
    table : DataFrame (N rows, index = example id)
        Per-example findings in row order: ``suspect_evidence``, ``suspect_score``,
        ``suspect_reasons`` (suspects); ``is_redundant``, ``duplicate_set``,
        ``is_duplicate_keeper`` (redundancy); ``family``, ``is_family_base`` (families). A
        missing group means that analyzer did not run: nothing is decided from it (the summary
        says ``not measured``).
    contradiction_pairs : iterable of (a, b)
        Contradiction pairs as row positions.
    config : CleanConfig
    suspect_alpha, suspect_rule_p : float
        The analysis' settings (the default level and the rule factor).

    Returns
    -------
    decisions : list of N dict
        ``{"row": id, "action", "reason", "evidence"}`` in row order (``reason`` "" for keep).
    summary : dict
        ``kept``, ``dropped``, ``review`` counts, ``by_reason``, the settings used and
        ``not_measured`` (the findings that were not available).
    """
    cfg = config if config is not None else CleanConfig()
    n = len(table)
    ids = [int(i) for i in table.index]
    level = cfg.suspect_level if cfg.suspect_level is not None else 1.0 - suspect_alpha
    action = ["keep"] * n
    reason = [""] * n
    evid: list[dict] = [{} for _ in range(n)]
    not_measured = []

    def decide(i: int, act: str, why: str, **ev: Any) -> None:
        action[i], reason[i] = act, why
        evid[i].update(ev)

    # 1. suspects
    ev = _col(table, "suspect_evidence", 0.0, np.float64)
    if ev is None:
        not_measured.append("suspects")
    else:
        reasons = table["suspect_reasons"].fillna("").tolist() if "suspect_reasons" in table \
            else [""] * n
        mev = model_evidence(ev, reasons, suspect_rule_p)
        score = -np.expm1(-mev * math.log(10.0))
        # the threshold on the evidence scale (no rounding of scores near 1)
        need = math.inf if level >= 1.0 else -math.log10(1.0 - level)
        for i in range(n):
            if cfg.drop_suspects and mev[i] >= need - 1e-12:
                decide(i, "drop", "suspect", suspect_score=float(score[i]),
                       suspect_evidence=float(mev[i]),
                       suspect_reasons=[r for r in reasons[i].split(";") if r])
    # 2. contradictions
    pairs = sorted({(min(a, b), max(a, b)) for a, b in contradiction_pairs})
    partners: dict[int, list[int]] = {}
    for a, b in pairs:
        partners.setdefault(a, []).append(b)
        partners.setdefault(b, []).append(a)
    open_pairs = [(a, b) for a, b in pairs if action[a] != "drop" and action[b] != "drop"]
    for a, b in pairs:      # a member dropped as a suspect settles the pair
        for x, y in ((a, b), (b, a)):
            if action[x] == "drop" and action[y] != "drop":
                evid[y].setdefault("contradiction_settled_by_dropping", []).append(ids[x])
    in_open = sorted({x for p in open_pairs for x in p})
    if cfg.contradictions == "review":
        for i in in_open:
            decide(i, "review", "contradiction",
                   contradicts=[ids[j] for j in partners[i]])
    elif cfg.contradictions == "drop":
        for i in in_open:
            decide(i, "drop", "contradiction", contradicts=[ids[j] for j in partners[i]])
    else:
        rank = mev if ev is not None else np.zeros(n)
        for g in _groups(n, open_pairs):
            keep = min(g, key=lambda i: (rank[i], i))
            for i in g:
                if i != keep:
                    decide(i, "drop", "contradiction",
                           contradicts=[ids[j] for j in partners[i]], kept=ids[keep],
                           policy="keep-less-suspect")
            evid[keep].update(contradicts=[ids[j] for j in partners[keep]],
                              policy="keep-less-suspect")
    # 3. duplicates
    red = _col(table, "is_redundant", False, bool)
    if red is None:
        not_measured.append("redundancy")
    elif cfg.drop_duplicates:
        dset = _col(table, "duplicate_set", -1, np.int64)
        kflag = _col(table, "is_duplicate_keeper", False, bool)
        keeper_of = {int(dset[i]): i for i in range(n) if kflag[i] and dset[i] >= 0}
        for i in np.flatnonzero(red).tolist():
            if action[i] != "keep":
                continue
            k = keeper_of.get(int(dset[i]))
            if k is None:
                continue
            if action[k] == "drop":
                decide(i, "review", "duplicate_keeper_dropped", keeper=ids[k],
                       duplicate_set=int(dset[i]), keeper_dropped_as=reason[k])
            else:
                decide(i, "drop", "duplicate", keeper=ids[k], duplicate_set=int(dset[i]))
    # 4. variant families
    fam = _col(table, "family", -1, np.int64)
    if fam is None:
        not_measured.append("families")
    elif cfg.families == "base":
        base = _col(table, "is_family_base", False, bool)
        base_of = {int(fam[i]): i for i in range(n) if base[i] and fam[i] >= 0}
        for i in range(n):
            b = base_of.get(int(fam[i]), None) if fam[i] >= 0 else None
            if b is None or b == i or action[i] != "keep" or action[b] == "drop":
                continue
            decide(i, "drop", "family_variant", family=int(fam[i]), base=ids[b])
    decisions = [{"row": ids[i], "action": action[i], "reason": reason[i],
                  "evidence": evid[i]} for i in range(n)]
    by_reason: dict[str, int] = {}
    for i in range(n):
        if reason[i]:
            key = f"{action[i]}:{reason[i]}"
            by_reason[key] = by_reason.get(key, 0) + 1
    summary = {
        "examples": n, "kept": action.count("keep"), "dropped": action.count("drop"),
        "review": action.count("review"), "by_reason": dict(sorted(by_reason.items())),
        "suspect_level": level if cfg.drop_suspects else None,
        "drop_suspects": cfg.drop_suspects, "drop_duplicates": cfg.drop_duplicates,
        "contradictions": cfg.contradictions, "families": cfg.families,
        "contradiction_pairs": len(pairs), "not_measured": not_measured,
    }
    return decisions, summary
