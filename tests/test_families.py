"""Variant families: recovered exactly from planted GSM8K variant sets, what varies, coherence
against NumPy/SciPy, incoherent families flagged under the reference model, and the families'
effect on the duplicate counts."""

from __future__ import annotations

import json
import re
from itertools import combinations

import numpy as np
import pytest
import scipy.linalg
from tiny_models import gsm8k_records

from constraintlab.analysis import AnalysisConfig, analyze_families, analyze_store, family_coherence
from constraintlab.analysis.families import diff_words
from constraintlab.encode import EncodeConfig, extract
from constraintlab.io import read_examples

SYNONYMS = {"bought": "purchased", "has": "owns", "gave": "handed", "each": "every",
            "makes": "earns", "buys": "purchases", "wants": "would like", "total": "sum"}


def marked(q: str, k: int) -> str:
    w = q.split()
    i = (3 + 5 * k) % len(w)
    w[i] = f"**{w[i]}**"
    return " ".join(w)


def synonym(q: str) -> str:
    w = q.split()
    for i, x in enumerate(w):
        if x.lower() in SYNONYMS:
            w[i] = SYNONYMS[x.lower()]
            return " ".join(w)
    w.insert(1, "really")
    return " ".join(w)


def final_line(answer: str) -> str:
    return "#### " + answer.rsplit("####", 1)[1].strip()


def other_answer(answer: str) -> str:
    head, final = answer.rsplit("####", 1)
    return f"{head}#### {int(re.sub(r'[^0-9-]', '', final) or 0) + 7}"


def planted(short: bool, n_families: int = 6, n_unrelated: int = 30):
    """Records with planted families (even ones coherent, odd ones with every other member's
    answer changed) and unrelated GSM8K rows; returns (records, families as row lists)."""
    recs = gsm8k_records(n_families + n_unrelated, offset=100)
    rows, fams = [], []
    for f in range(n_families):
        q, a = recs[f]["question"], recs[f]["answer"]
        a = final_line(a) if short else a
        variants = [q, marked(q, 0), marked(q, 1), synonym(q), q + " Show every step.",
                    marked(synonym(q), 2)]
        members = []
        for j, v in enumerate(variants):
            ans = other_answer(a) if f % 2 == 1 and j % 2 == 1 else a
            members.append(len(rows))
            rows.append({"question": v, "answer": ans})
        fams.append(members)
    for r in recs[n_families:]:
        rows.append({"question": r["question"],
                     "answer": final_line(r["answer"]) if short else r["answer"]})
    return rows, fams


def read(tmp_path, rows, name="data.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return read_examples(path)


def test_diff_words_classifies_changes():
    d = diff_words("Tom has 3 red apples", "Tom **has** 3 red apples today")
    assert d["marked"] == ["**has**"] and d["added"] == ["today"]
    d = diff_words("Tom bought 3 apples", "Tom purchased 3 apples")
    assert d["replaced"] == [["bought", "purchased"]] and not d["marked"]
    d = diff_words("He wants 3 pens", "He would like 3 <b>pens</b>")
    assert d["marked"] == ["<b>pens</b>"] and d["replaced"] == [["wants", "would like"]]
    assert d["removed"] == [] and d["added"] == []
    # the marked form is named whichever side carries the markup
    assert diff_words("I ate **twelve** eggs", "I ate twelve eggs")["marked"] == ["**twelve**"]
    d = diff_words("Tom has 3 apples.", "Tom has 3 apples. Explain each step.")
    assert d["added"] == ["Explain", "each", "step."] and not d["replaced"]
    assert diff_words("Same text", "SAME   text") == {"marked": [], "replaced": [], "added": [],
                                                      "removed": []}


def test_families_recovered_exactly(tmp_path):
    rows, fams = planted(short=False)
    # accidental copies: three records equal up to spacing and case are repeats, not a family
    extra = gsm8k_records(1, offset=500)[0]
    base = len(rows)
    rows += [extra, {"question": extra["question"].upper(), "answer": extra["answer"]},
             {"question": "  " + extra["question"], "answer": extra["answer"]}]
    data = read(tmp_path, rows)
    res = analyze_families(data.examples)
    got = sorted(sorted(f["members"]) for f in res.summary["families"])
    assert got == sorted(fams)
    labels = res.table["family"].to_numpy()
    assert (labels[base:] == -1).all()
    assert (labels[len(fams) * 6:] == -1).all()
    for f in res.summary["families"]:
        assert f["size"] == 6 and f["n_variants"] == 6
        if fams.index(f["members"]) % 2 == 0:   # one answer: the unmarked original is the medoid
            assert f["base"] == f["members"][0]
        assert f["varies"]["marked"]["members"] >= 3
        assert ["Show", 1] in f["varies"]["added"]["top"]


def test_family_coherence_against_numpy_and_scipy():
    rng = np.random.default_rng(0)
    common = rng.normal(size=64)
    rows = np.vstack([common + 0.3 * rng.normal(size=64) for _ in range(4)]
                     + [-common + 0.3 * rng.normal(size=64) for _ in range(2)])
    got = family_coherence(rows, tau=0.2)
    cos = [a @ b / np.linalg.norm(a) / np.linalg.norm(b) for a, b in combinations(rows, 2)]
    assert got["mean_cos"] == pytest.approx(np.mean(cos), rel=1e-12)
    assert got["min_cos"] == pytest.approx(min(cos), rel=1e-12)
    assert got["opposing_pairs"] == sum(c < -0.2 for c in cos) == 8
    s = scipy.linalg.svdvals(rows)
    assert got["first_direction_share"] == pytest.approx(s[0] ** 2 / (s ** 2).sum(), rel=1e-10)


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    """Both planted sets under the reference model."""
    tmp = tmp_path_factory.mktemp("families")
    out = {}
    for short in (True, False):
        rows, fams = planted(short=short)
        data = read(tmp, rows, f"data_{short}.jsonl")
        store = extract(data, EncodeConfig(k=1024), tmp / f"store_{short}")
        out[short] = (fams, data, store, analyze_store(store, examples=data.examples))
    return out


def test_half_flipped_families_are_incoherent(analysed):
    # short targets: the answer is the whole constraint, so the gradient shows the split
    fams, _, _, res = analysed[True]
    by_members = {tuple(f["members"]): f for f in res.families.summary["families"]}
    assert sorted(by_members) == sorted(tuple(m) for m in fams)
    for k, members in enumerate(fams):
        f = by_members[tuple(members)]
        if k % 2:
            assert not f["coherent"]
            assert "low_coherence" in f["reasons"] and "contradiction" in f["reasons"]
            assert f["coherence"]["mean_cos"] < 0.7
        else:
            assert f["coherent"] and f["reasons"] == []
            assert f["coherence"]["mean_cos"] >= 0.7
    assert res.families.summary["incoherent"] == len(fams) // 2


def test_long_answers_incoherent_by_contradiction(analysed):
    # full worked answers: a changed final number is 1-2 of ~100 target tokens; the text
    # contradiction still marks the family
    fams, _, _, res = analysed[False]
    for f in res.families.summary["families"]:
        k = [tuple(m) for m in fams].index(tuple(f["members"]))
        assert f["coherent"] == (k % 2 == 0)
        if k % 2:
            assert "contradiction" in f["reasons"]
        assert f["volatility"]["spread"] == pytest.approx(
            np.ptp(res.volatility.table["volatility"].to_numpy()[f["members"]]))


def test_families_are_not_counted_as_duplicates_unless_asked(analysed):
    fams, data, store, res = analysed[False]
    red = res.redundancy.summary
    in_family = {frozenset(p) for m in fams for p in combinations(m, 2)}
    near = [(p["a"], p["b"]) for p in res.redundancy.pairs if p["kind"] == "near_duplicate"]
    assert not any(frozenset(p) in in_family for p in near)
    assert red["near_duplicate_pairs_in_families"] > 0
    both = analyze_store(store, examples=data.examples,
                         config=AnalysisConfig(families_are_duplicates=True)).redundancy
    near_both = [(p["a"], p["b"]) for p in both.pairs if p["kind"] == "near_duplicate"]
    assert len(near_both) == len(near) + red["near_duplicate_pairs_in_families"]
    assert both.summary["near_duplicate_pairs_in_families"] == 0
    assert both.summary["redundant_examples"] > red["redundant_examples"]


def test_contradicting_pairs_per_family_against_a_loop():
    from constraintlab.io.example import Example, Message

    rng = np.random.default_rng(3)
    words = ["apple", "river", "tax", "planet", "violin", "copper", "garden", "lantern"]
    texts = []
    for f in range(6):                      # six families of five variants (one word changed)
        base = f"how many {words[f]} items are left after the seller gives away {f + 3} of them"
        texts += [base.replace("left", w) for w in ("left", "kept", "held", "owned", "there")]
    texts += [f"unrelated sentence number {i} about {words[i % 8]} and nothing else {i * 7}"
              for i in range(12)]
    examples = [Example(index=i, line=i + 1, source="<records>", schema="qa",
                        messages=(Message("user", t), Message("assistant", "answer")),
                        targets=(1,), chat=False, raw={}) for i, t in enumerate(texts)]
    pairs = {tuple(sorted(p)) for p in rng.integers(0, len(texts), (60, 2)).tolist()
             if p[0] != p[1]}
    res = analyze_families(examples, contradictions=pairs)
    fams = res.summary["families"]
    assert fams                              # families found
    for f in fams:
        members = set(f["members"])          # ids = row positions here
        want = sum(1 for x, y in pairs if x in members and y in members)
        assert f["contradicting_pairs"] == want
    assert sum(f["contradicting_pairs"] for f in fams) > 0
