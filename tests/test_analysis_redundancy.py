"""Redundancy (exact / near duplicates, sets, keepers) and the analyze_constraints container."""

from __future__ import annotations

import json

import numpy as np
import pytest

from constraintlab.analysis import (
    PAIR_KINDS,
    AnalysisConfig,
    analyze_constraints,
    analyze_redundancy,
)
from constraintlab.analysis.redundancy import choose_keeper, formatting_marks
from constraintlab.errors import InputError
from constraintlab.io.example import Example, Message

LONG = ("Write a short note to a neighbour asking them to water the plants on the balcony while "
        "we are away for the weekend")
REPLY = ("Hi Sam, we are away from Friday to Sunday. Could you water the plants on our balcony "
         "once on Saturday? The key is under the blue pot. Thank you so much, Alex")


def ex(i: int, prompt: str, reply: str) -> Example:
    return Example(index=i, line=i + 1, source="<records>", schema="alpaca",
                   messages=(Message("user", prompt), Message("assistant", reply)),
                   targets=(1,), chat=False, raw={})


def test_exact_and_near_duplicates_sets_and_keepers():
    exs = [ex(0, LONG, REPLY), ex(1, "Name a prime.", "7"), ex(2, LONG, REPLY),
           ex(3, LONG.upper() + " !", REPLY.replace(" ", "  ").lower()),  # cosmetic
           ex(4, "Name a prime.", "7"), ex(5, LONG, REPLY),
           ex(6, "Translate 'cat' into French.", REPLY),  # same reply, another prompt
           ex(7, LONG, REPLY.replace("blue pot", "green pot")),  # one-word edit
           ex(8, "Say hi.", " ".join([REPLY] * 4)),  # one long reply under two prompts
           ex(9, "Be brief.", " ".join([REPLY] * 4))]
    res = analyze_redundancy(exs)
    pairs = {(p["kind"], p["a"], p["b"]): p for p in res.pairs}
    exact = {(a, b) for k, a, b in pairs if k == "exact_duplicate"}
    assert exact == {(0, 2), (0, 5), (1, 4)}  # (keeper, copy)
    near = {(a, b) for k, a, b in pairs if k == "near_duplicate"}
    assert {(0, 3), (2, 3), (3, 5), (0, 7), (2, 7), (5, 7), (3, 7)} == near
    assert pairs[("near_duplicate", 0, 3)]["detail"] == {"signal": "text", "jaccard": 1.0,
                                                        "normalized_equal": True}
    assert all(p["a"] < p["b"] and 0 <= p["score"] <= 1 for p in res.pairs)
    t = res.table
    assert t.loc[[0, 2, 3, 5, 7], "duplicate_set"].nunique() == 1
    assert t.loc[[1, 4], "duplicate_set"].nunique() == 1
    assert t.loc[6, "duplicate_set"] == -1 and not t.loc[6, "is_near_duplicate"]
    assert t["formatting_marks"].isna().tolist() == [i in (6, 8, 9) for i in range(10)]
    assert list(t.index[t["is_duplicate_keeper"]]) == [0, 1]
    assert t["is_redundant"].sum() == 5
    assert res.summary["redundancy_ratio"] == pytest.approx(5 / 10)
    assert res.summary["similar_text_other_input"] == 1  # (8, 9): similar text, other input
    json.dumps(res.summary)


def test_gradient_near_duplicates_and_exclusions():
    near = (np.array([0, 2]), np.array([1, 3]), np.array([0.999, 0.995], np.float32))
    res = analyze_redundancy(n=5, near_parallel=near, exclude={(2, 3)})
    assert [(p["a"], p["b"], p["detail"]["signal"]) for p in res.pairs] == [(0, 1, "gradient")]
    assert res.pairs[0]["score"] == pytest.approx(0.999)
    assert res.summary["duplicate_sets"] == 1


def test_empty_texts_are_not_near_duplicates():
    exs = [Example(index=i, line=i + 1, source="<records>", schema="text",
                   messages=(Message("assistant", t),), targets=(0,), chat=False, raw={})
           for i, t in enumerate(["", "...", "hello there friend", "Hello, there friend!"])]
    res = analyze_redundancy(exs)
    assert [(p["a"], p["b"]) for p in res.pairs] == [(2, 3)]


def test_analyze_constraints_container():
    rng = np.random.default_rng(0)
    exs = [ex(10 + 2 * i, f"prompt {i} about {w}", f"reply {i} on {w} and more")
           for i, w in enumerate(["sea", "sky", "sand", "salt", "sun", "snow"])]
    exs.append(ex(30, exs[0].input_text, exs[0].target_text))  # exact duplicate of id 10
    X = rng.standard_normal((7, 16))
    X[6] = X[0] * 2.0  # the copy has a parallel gradient
    out = analyze_constraints(X, examples=exs, n_params=1000)
    assert list(out.ids) == [10, 12, 14, 16, 18, 20, 30]
    t = out.table()
    assert list(t.index) == [10, 12, 14, 16, 18, 20, 30]
    assert {"leverage_score", "conflict_score", "is_exact_duplicate", "is_contradiction",
            "zone"} <= set(t.columns)
    pairs = out.all_pairs()
    assert {p["kind"] for p in pairs} <= set(PAIR_KINDS)
    assert ("exact_duplicate", 10, 30) in {(p["kind"], p["a"], p["b"]) for p in pairs}
    json.dumps(out.summary())
    from constraintlab.analysis.growth import GROWTH_VERDICTS
    assert out.determinacy.summary["determinacy"] in GROWTH_VERDICTS
    assert out.graph.number_of_nodes() == 7
    # lexical only
    lex = analyze_constraints(examples=exs)
    assert lex.pairs is None and lex.spectrum is None and lex.zones is None
    assert lex.redundancy is not None and lex.contradictions is not None


def test_input_errors():
    exs = [ex(0, "a", "b"), ex(1, "c", "d")]
    with pytest.raises(InputError, match="3 rows but there are 2 examples"):
        analyze_constraints(np.ones((3, 4)), examples=exs)
    with pytest.raises(InputError, match="both"):
        analyze_constraints(np.ones((2, 4)), input_factors=np.ones((2, 3)))
    with pytest.raises(InputError, match="distinct"):
        analyze_constraints(np.ones((2, 4)), ids=[1, 1])
    with pytest.raises(InputError):
        analyze_constraints()
    with pytest.raises(Exception, match="tau"):
        analyze_constraints(np.ones((2, 4)), config=AnalysisConfig(eps=0.5, tau_min=0.6))


def test_analyze_store_duck_typed():
    from types import SimpleNamespace

    import pandas as pd

    rng = np.random.default_rng(1)
    ids = np.array([0, 2, 3, 5])
    store = SimpleNamespace(features=rng.standard_normal((4, 8)).astype(np.float32),
                            input_factors=rng.standard_normal((4, 6)).astype(np.float32),
                            output_factors=rng.standard_normal((4, 6)).astype(np.float32),
                            n_params=123, table=pd.DataFrame({"index": ids}))
    from constraintlab.analysis import analyze_store

    out = analyze_store(store)
    assert list(out.ids) == [0, 2, 3, 5]
    assert out.spectrum.summary["ledger"]["unknowns"] == 123
    assert "factors" in out.contradictions.summary["signals"]
    exs = [ex(int(i), f"p{i}", f"r{i}") for i in ids]
    assert list(analyze_store(store, examples=exs).table().index) == [0, 2, 3, 5]
    with pytest.raises(InputError, match="not the ones of the store"):
        analyze_store(store, examples=exs[::-1])


def test_large_groups_stay_linear():
    exs = [ex(i, "Say hello.", "Hello!" if i % 2 else "hello") for i in range(400)]
    cfg = AnalysisConfig(max_group=20)
    out = analyze_constraints(examples=exs, config=cfg)
    red = out.redundancy
    assert red.summary["duplicate_sets"] == 1  # all 400 in one set (exact + cosmetic)
    assert red.table["is_redundant"].sum() == 399
    n_pairs = len(red.pairs)
    assert n_pairs < 400 * 20 + 400
    # cosmetic variants: the same normalised target, so no contradictions
    assert out.contradictions.summary["count"] == 0


def test_set_kinds_and_counts_by_brute_force():
    """A set is ``exact`` when all its members are one record (any size), ``near`` otherwise;
    near_duplicates + exact_duplicates = the redundant records (members beyond the keeper)."""
    exs = [ex(0, LONG, REPLY), ex(1, LONG, REPLY), ex(2, LONG, REPLY),     # exact, 3 members
           ex(3, "Name a prime.", "7"), ex(4, "Say hi.", "hi"),
           ex(5, LONG.upper() + " !", REPLY.lower()),                     # near the first three
           ex(6, "Name a prime.", "7")]                                    # exact with 3
    res = analyze_redundancy(exs[:3] + exs[3:5] + exs[6:])   # without the cosmetic variant
    s = res.summary
    kinds = {tuple(x["members"]): x["kind"] for x in s["sets"]}
    assert kinds == {(0, 1, 2): "exact", (3, 6): "exact"}
    assert (s["exact_duplicates"], s["near_duplicates"], s["duplicates"]) == (3, 0, 3)
    res = analyze_redundancy(exs)
    s = res.summary
    kinds = {tuple(x["members"]): x["kind"] for x in s["sets"]}
    assert kinds == {(0, 1, 2, 5): "near", (3, 6): "exact"}
    redundant = sum(len(m) - 1 for m in kinds)          # every member beyond the keeper
    assert s["duplicates"] == redundant == int(res.table["is_redundant"].sum()) == 4
    assert s["near_duplicates"] == redundant - s["exact_duplicates"] == 1
    assert s["near_duplicate_pairs"] == sum(p["kind"] == "near_duplicate" for p in res.pairs)


# ----- which copy a duplicate set keeps ----------------------------------------------------

CLEAN_Q = "Anna ate 4 apples on Tuesday. How many apples did she eat?"
CLEAN_A = "She ate 4 apples.\n#### 4"


def test_formatting_marks_count_by_hand():
    texts = ["Anna ate 4 apples.", "ANNA  ate  4  apples. ", "anna ate 4 apples. she did.",
             "A\tB\r\n\n\nC", "NASA went up."]
    marks = formatting_marks(texts)
    # whitespace: 3 double-space runs + 1 trailing space; capitals: ANNA
    assert marks.tolist() == [[0, 0, 0], [4, 1, 0], [0, 0, 2], [3, 0, 0], [0, 1, 0]]


def test_keeper_is_the_clean_copy_not_the_first():
    shouty = CLEAN_Q.replace(" ", "  ").replace("Anna", "ANNA")
    exs = [ex(0, shouty, CLEAN_A), ex(1, "Name a prime.", "7"), ex(2, CLEAN_Q, CLEAN_A),
           ex(3, "Name a prime.", "7")]
    res = analyze_redundancy(exs)
    sets = {tuple(s["members"]): s for s in res.summary["sets"]}
    assert sets[(0, 2)]["keeper"] == 2 and sets[(0, 2)]["keeper_reason"] == "formatting"
    # 11 runs of spaces + ANNA = 12 marks in 12 + 6 = 18 words
    assert sets[(0, 2)]["keeper_detail"] == ("fewest formatting marks: 0 per 100 words, the next "
                                             "copy (0) 66.7 (whitespace 11, capitals 1)")
    assert sets[(1, 3)]["keeper"] == 1 and sets[(1, 3)]["keeper_reason"] == "file_order"
    t = res.table
    assert t["duplicate_of"].tolist() == [2, -1, -1, 1]
    assert t["keep"].tolist() == [False, True, True, False]
    assert t["formatting_marks"].tolist() == [12, 0, 0, 0]
    assert t["is_duplicate_keeper"].tolist() == [False, True, True, False]
    assert res.summary["keeper_reasons"] == {"formatting": 1, "file_order": 1}


def test_keeper_by_loss_when_formatting_is_alike():
    # four copies formatted alike (exact duplicates) with known losses; one id order
    exs = [ex(10 + i, CLEAN_Q, CLEAN_A) for i in range(4)]
    loss = np.array([1.30, 0.95, 0.95 + 5e-5, np.nan])
    res = analyze_redundancy(exs, loss=loss)
    (s,) = res.summary["sets"]
    # 0.95 and 0.95005 tie (LOSS_TIE): neither beats the other, so file order picks id 11
    assert s["keeper"] == 11 and s["keeper_reason"] == "file_order"
    loss[2] = 0.5
    (s,) = analyze_redundancy(exs, loss=loss).summary["sets"]
    assert s["keeper"] == 12 and s["keeper_reason"] == "loss"
    assert "0.5000 nats/token, the next copy (11) 0.9500" in s["keeper_detail"]
    # the loss only orders copies that format alike: formatting comes first
    exs[0] = ex(10, CLEAN_Q, CLEAN_A.replace("She", "SHE"))
    exs[2] = ex(12, CLEAN_Q.replace(" ", "  "), CLEAN_A)
    res = analyze_redundancy(exs, loss=np.array([0.1, 0.95, 0.5, np.nan]))
    (s,) = res.summary["sets"]
    assert (s["keeper"], s["keeper_reason"]) == (11, "loss")  # 11 and 13 clean; 13 unmeasured
    assert res.table["duplicate_of"].tolist() == [11, -1, 11, 11]


def test_choose_keeper_against_brute_force_order():
    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(2, 7))
        marks = rng.integers(0, 3, size=(n, 3))
        words = rng.integers(60, 140, size=n)
        loss = np.round(rng.uniform(0.5, 1.5, n), 1)
        loss[rng.random(n) < 0.2] = np.nan
        members = list(rng.permutation(n))
        keeper, reason, _ = choose_keeper(members, marks, loss, words=words)
        # the documented order: marks per 100 words (within 1 of the best tie), loss, index
        rate = 100 * marks.sum(axis=1) / words
        close = [m for m in range(n) if rate[m] < rate.min() + 1]
        want = min(close, key=lambda m: (loss[m] if np.isfinite(loss[m]) else np.inf, m))
        assert keeper == want
        assert (reason == "formatting") == (len(close) == 1)


def test_shipped_sample_keeps_the_clean_copies():
    from pathlib import Path

    from constraintlab.io import read_examples
    data = read_examples(Path(__file__).resolve().parents[1] / "data" / "gsm8k_sample.jsonl")
    res = analyze_redundancy(data.examples)
    shouted = [ex.index for ex in data.examples
               if ex.input_text.startswith(("COMPARED  to  the  amount", "ANNA  ate"))]
    assert len(shouted) == 2
    t = res.table
    for i in shouted:
        keeper = int(t.loc[i, "duplicate_of"])
        assert keeper >= 0 and not t.loc[i, "keep"]
        clean = data.examples[[e.index for e in data.examples].index(keeper)].input_text
        assert "  " not in clean and not clean.split()[0].isupper()
        (s,) = [s for s in res.summary["sets"] if i in s["members"]]
        assert s["keeper"] == keeper and s["keeper_reason"] == "formatting"


def test_mean_loss_of_the_token_profiles():
    from types import SimpleNamespace

    from constraintlab.analysis.redundancy import _mean_loss
    tokens = SimpleNamespace(offsets=np.array([0, 2, 2, 5]),
                             nll=np.array([1.0, 3.0, 2.0, 2.0, 5.0], np.float32))
    np.testing.assert_allclose(_mean_loss(tokens, 3), [2.0, np.nan, 3.0])
    assert _mean_loss(None, 3) is None
