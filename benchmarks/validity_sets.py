"""The validity sets of ``bench_validity.py``, built from one extracted *union* per seed.

A per-example LoRA gradient at the adapter's standard init depends on that example only, so the
rows of every planted set can be taken from one extraction of the union of their records: the
clean GSM8K test rows, contradicting copies of some of them, terse versions of others, sibling
pairs and template fills. :func:`union` builds the records and the role of each; :func:`sets`
composes the validity sets as row positions into the union (with their truth). Everything is
seeded; the builders of :mod:`planted` do the rewriting.
"""

from __future__ import annotations

import random

import planted

__all__ = ["UNION_SIZES", "sets", "union"]

#: default sizes of one union (clean rows, contradiction rate, terse share, sibling pairs,
#: template fills and templates)
UNION_SIZES = {"clean": 1000, "contradiction_rate": 0.07, "terse_share": 0.3, "siblings": 24,
               "fills": 600, "templates": 4}


def union(seed: int, sizes: dict | None = None) -> tuple[list[dict], dict]:
    """Records of one union and the role of each part.

    Returns
    -------
    records : list of dict
        GSM8K schema (``question`` / ``answer``).
    parts : dict
        ``clean`` (positions of the clean test rows), ``contra`` (list of (source position,
        copy position): the same question, a cosmetic edit in half of them, another final
        answer), ``terse`` (list of (source position, terse position)), ``siblings`` (list of
        position pairs), ``fills`` (positions of the template fills), ``sizes``.
    """
    sz = {**UNION_SIZES, **(sizes or {})}
    rng = random.Random(10_000 + seed)
    clean = planted.gsm8k_rows("test", sz["clean"], seed)
    records = [dict(r) for r in clean]
    parts: dict = {"clean": list(range(len(clean))), "sizes": sz}
    contra = []
    for i in rng.sample(range(len(clean)), round(sz["contradiction_rate"] * len(clean))):
        q = clean[i]["question"]
        if rng.random() < 0.5:
            q = planted.cosmetic(q, rng)
        records.append({"question": q, "answer": planted.other_final(clean[i]["answer"], rng)})
        contra.append((i, len(records) - 1))
    parts["contra"] = contra
    styled, terse_flags = planted.style_clash(clean, sz["terse_share"], seed)
    terse = []
    for i, t in enumerate(terse_flags):
        if t:
            records.append(styled[i])
            terse.append((i, len(records) - 1))
    parts["terse"] = terse
    sib, sib_pairs = planted.sibling_pairs(sz["siblings"], seed)
    base = len(records)
    records += sib
    parts["siblings"] = [(base + a, base + b) for a, b in sib_pairs]
    fills = planted.template_fills(sz["fills"], sz["templates"], seed)
    base = len(records)
    records += fills
    parts["fills"] = list(range(base, base + len(fills)))
    return records, parts


def sets(parts: dict, seed: int) -> dict:
    """The validity sets as row positions into the union, with their truth.

    Returns
    -------
    dict of name -> dict
        ``rows`` (union positions, in set order) and per set: ``clean`` nothing more;
        ``contradictions``: ``pairs`` (planted pairs as set positions) and ``siblings``
        (sibling pairs mixed in, as set positions: must not be reported); ``style``:
        ``terse`` (per set row, bool); ``siblings``: ``pairs``; ``templates`` and
        ``diverse``: the same number of rows (template fills / clean rows).
    """
    rng = random.Random(20_000 + seed)
    clean = list(parts["clean"])
    out = {"clean": {"rows": clean}}
    # clean rows + contradicting copies + sibling pairs, shuffled
    sib_rows = [p for ab in parts["siblings"] for p in ab]
    rows = clean + [c for _, c in parts["contra"]] + sib_rows
    rng.shuffle(rows)
    where = {r: i for i, r in enumerate(rows)}
    out["contradictions"] = {
        "rows": rows,
        "pairs": sorted(tuple(sorted((where[a], where[b]))) for a, b in parts["contra"]),
        "siblings": sorted(tuple(sorted((where[a], where[b]))) for a, b in parts["siblings"]),
    }
    # style clash: the terse rows replace their worked source rows
    swap = dict(parts["terse"])
    rows = [swap.get(i, i) for i in clean]
    out["style"] = {"rows": rows, "terse": [i in swap for i in clean]}
    out["siblings"] = {"rows": sib_rows,
                       "pairs": [(2 * j, 2 * j + 1) for j in range(len(parts["siblings"]))]}
    n = len(parts["fills"])
    out["templates"] = {"rows": list(parts["fills"])}
    out["diverse"] = {"rows": clean[:n]}
    return out
