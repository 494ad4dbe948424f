"""Contradictions (same input, different target): text rules, chat histories, the factor
signal, and invariances."""

from __future__ import annotations

import json

import numpy as np

from constraintlab.analysis import (
    AnalysisConfig,
    analyze_constraints,
    analyze_contradictions,
    compare_targets,
)
from constraintlab.analysis.contradictions import _same_input_factor_pairs, input_keys
from constraintlab.analysis.text import final_answer, normalize, numbers, short_diff
from constraintlab.io.example import Example, Message


def qa(i: int, q: str, a: str) -> Example:
    return Example(index=i, line=i + 1, source="<records>", schema="qa",
                   messages=(Message("user", q), Message("assistant", a)), targets=(1,),
                   chat=False, raw={"question": q, "answer": a})


def chat(i: int, turns: list[tuple[str, str]]) -> Example:
    msgs = tuple(Message(r, c) for r, c in turns)
    return Example(index=i, line=i + 1, source="<records>", schema="chat", messages=msgs,
                   targets=(len(msgs) - 1,), chat=True, raw={})


Q1 = ("Tom has 3 boxes with 12 pens each, and he keeps them on the shelf in his room next to "
      "the window. He gives away 5 pens to his friends at school. How many pens are left?")
A1 = "Tom has 3 * 12 = <<3*12=36>>36 pens.\nHe has 36 - 5 = <<36-5=31>>31 pens left.\n#### 31"


def cmp(a: str, b: str):
    return compare_targets(a, b, normalize(a), normalize(b))


def test_text_helpers():
    assert final_answer(A1) == "31"
    assert final_answer("so the answer is $1,200.") == "1200"
    assert final_answer("Final answer: \\boxed{3.50}") == "3.5"
    assert final_answer("no conclusion here") is None
    assert numbers("It costs $1,200.50 or -3 and .5") == ["1200.5", "-3", "0.5"]
    d = short_diff("the answer is 31 today", "the answer is 32 today")
    assert "[-31-]" in d and "{+32+}" in d


def test_compare_targets_rules():
    assert cmp(A1, A1.upper().replace(" ", "  ")) is None  # cosmetic only
    r = cmp(A1, A1.replace("#### 31", "#### 30"))
    assert r["reasons"][0] == "final_answer" and r["strength"] == 1.0
    r = cmp(A1, A1.replace("36 - 5", "37 - 5"))
    assert r["reasons"] == ["numbers"] and 0.5 < r["strength"] < 1.0
    r = cmp("Paris is the capital of France.", "I think it might be Lyon, in the south east.")
    assert "content" in r["reasons"]
    # a paraphrase with the same numbers and answer is not a contradiction
    assert cmp("He has 31 pens left. #### 31", "He is left with 31 pens. #### 31") is None
    # another path to the same answer (extra steps, other wording) is not one either
    other_path = ("3 boxes of 12 make <<3*12=36>>36, and giving 5 away leaves 36 - 5 = 31 pens "
                  "in total for Tom.\n#### 31")
    assert cmp(A1, other_path) is None
    # a number replaced in the same place is, and the detail says which
    r = cmp(A1, A1.replace("<<36-5=31>>31", "<<36-5=32>>32"))
    assert r["reasons"] == ["numbers"] and r["substitutions"] == [["31 31", "32 32"]]
    assert cmp(A1, A1.replace("36 - 5", "37 - 5"))["substitutions"] == [["36", "37"]]


def test_same_question_different_answers():
    exs = [qa(0, Q1, A1), qa(1, "What is 2 + 2?", "4"),
           qa(2, Q1.lower() + "  ", A1.replace("#### 31", "#### 29")),  # cosmetic q, new answer
           qa(3, Q1, A1),  # exact duplicate, not a contradiction
           qa(4, Q1.replace("5 pens", "7 pens"), A1.replace("36 - 5", "36 - 7")),  # other problem
           qa(5, Q1.replace("gives away", "gave away"), A1.replace("=31>>31", "=30>>30"))]
    res = analyze_contradictions(exs)
    got = {(p["a"], p["b"]): p for p in res.pairs}
    # 2 contradicts 0 and 3 (the same question up to case and spaces); 5 asks with another
    # word ("gave"): not the same input, never a contradiction
    assert set(got) == {(0, 2), (2, 3)}
    p = got[(0, 2)]
    assert p["kind"] == "contradiction" and p["score"] == 1.0
    assert p["detail"]["final_answers"] == ["31", "29"]
    assert "[-31-]" in p["detail"]["diff"] and "{+29+}" in p["detail"]["diff"]
    assert p["detail"]["input_similarity"] == 1.0
    t = res.table
    assert list(t.index[t["is_contradiction"]]) == [0, 2, 3]
    assert t.loc[1, "contradiction_score"] == 0.0
    assert ((t["contradiction_score"] >= 0) & (t["contradiction_score"] <= 1)).all()
    json.dumps(res.summary)
    json.dumps(res.pairs)


def test_chat_histories():
    hist = [("system", "You are terse."), ("user", "Is the store open on Sunday?")]
    exs = [chat(0, [*hist, ("assistant", "Yes, from 10 to 4.")]),
           chat(1, [*hist, ("assistant", "No, it is closed on Sundays.")]),
           chat(2, [*hist, ("assistant", "yes , from 10 to 4 !")]),
           chat(3, [("user", "Is the store open on Sunday?"),
                    ("assistant", "No, it is closed on Sundays.")])]  # another history
    out = analyze_constraints(examples=exs)
    contra = {(p["a"], p["b"]) for p in out.all_pairs(["contradiction"])}
    assert contra == {(0, 1), (1, 2)}
    near = {(p["a"], p["b"]) for p in out.all_pairs(["near_duplicate"])}
    assert (0, 2) in near and (0, 1) not in near


def _factors(N: int, d: int, planted, seed: int = 0):
    """Input factors aligned and output factors opposed on the planted pairs."""
    rng = np.random.default_rng(seed)
    fin = rng.standard_normal((N, d))
    fout = rng.standard_normal((N, d))
    for a, b in planted:
        fin[b] = fin[a] + 0.01 * rng.standard_normal(d)
        fout[b] = -fout[a]
    return fin, fout


def test_factor_signal_needs_same_input_and_a_model_that_conditions():
    N, d = 60, 32
    planted = [(4, 40), (7, 8), (20, 59), (12, 50), (30, 31)]
    fin, fout = _factors(N, d, planted)
    # without texts the input cannot be checked: nothing is proposed, the pairs are counted
    res = analyze_contradictions(input_factors=fin, output_factors=fout, model_conditions=True)
    assert res.pairs == []
    # no input keys, so no pair is compared: the counts are not measured (null, not 0)
    for key in ("factor_pairs", "factor_pairs_other_input", "factor_pairs_same_input",
                "factor_pairs_without_text_support"):
        assert res.summary[key] is None, key
    assert "not measured" in res.summary["factor_pairs_scope"]
    assert res.summary["factor_signal"]["proposes"] is False
    exs = [qa(i, f"question number {i} about topic {i * 7}", f"answer {i}") for i in range(N)]
    exs[8] = qa(8, exs[7].input_text, exs[7].target_text)        # same text as 7
    exs[59] = qa(59, exs[20].input_text.upper(), "a completely different reply")
    # aligned in the model but another input: shouted questions, a sibling (other numbers),
    # a reworded question with the same numbers
    exs[12] = qa(12, "HOW MANY GOATS GRAZE IN THE NORTH FIELD?", "#### 12")
    exs[50] = qa(50, "WHAT DOES THE BAKER SELL ON MONDAYS?", "#### 5")
    exs[40] = qa(40, "question number 4 about the topic 28", "answer 40")
    exs[31] = qa(31, "question number 30 about topic 210 ", "a different reply, unrelated")
    for cond in (True, False, None):
        res = analyze_contradictions(exs, input_factors=fin, output_factors=fout,
                                     model_conditions=cond)
        got = {(p["a"], p["b"]): p for p in res.pairs}
        # (20, 59) and (30, 31): the same input up to case and spaces, other targets: text pairs
        assert set(got) == {(20, 59), (30, 31)}
        assert got[(20, 59)]["detail"]["signal"] == "text+factors"
        # pairs of other inputs ((4, 40), (12, 50)) are not compared: not measured
        assert res.summary["factor_pairs_other_input"] is None
        assert res.summary["factor_pairs"] is None
        assert res.summary["factor_pairs_same_input"] == 3    # (7, 8), (20, 59), (30, 31)
        assert res.summary["factor_pairs_without_text_support"] == 1   # (7, 8): equal targets
        assert res.summary["factor_signal"]["proposes"] is (cond is True)
    # the factor signal's own proposals: only inside a same-input group beyond max_group
    many = [qa(i, "Same question?", f"reply number {i} " + "word " * i) for i in range(6)]
    fin, fout = _factors(6, d, [(4, 5)], seed=1)
    cfg = AnalysisConfig(max_group=2)
    on = analyze_contradictions(many, input_factors=fin, output_factors=fout,
                                model_conditions=True, config=cfg)
    off = analyze_contradictions(many, input_factors=fin, output_factors=fout,
                                 model_conditions=False, config=cfg)
    assert (4, 5) in on.positions and (4, 5) not in off.positions
    assert {(p["a"], p["b"]): p for p in on.pairs}[(4, 5)]["detail"]["signal"] == "factors"


def test_other_turns_entities_or_numbers_are_never_contradictions():
    """Issue 22: forks of one conversation at other lengths, templated prompts with another
    person, another number, a paraphrase: none is the same input."""
    h = [("user", "Where can I buy a bike?"), ("assistant", "A local bike shop."),
         ("user", "ok"), ("assistant", "Anything else?"), ("user", "what brand?")]
    exs = [chat(0, [*h[:1], ("assistant", "Try a local bike shop or a second-hand market.")]),
           chat(1, [*h[:3], ("assistant", "Great, enjoy the ride and wear a helmet.")]),
           chat(2, [*h, ("assistant", "Trek and Giant make reliable bikes.")]),
           chat(3, [*h[2:], ("assistant", "Any brand you like, honestly.")]),  # last turns only
           chat(4, [("user", "What is the home address of Anna Smith?"),
                    ("assistant", "I can't share private addresses.")]),
           chat(5, [("user", "What is the home address of Bob Jones?"),
                    ("assistant", "Sorry, I do not know where he lives, try a directory.")]),
           chat(6, [("user", "Convert 3.5 miles to km."), ("assistant", "About 5.6 km.")]),
           chat(7, [("user", "Convert 35 miles to km."), ("assistant", "About 56 km.")]),
           chat(8, [("user", "How do I bake bread?"), ("assistant", "Mix flour, water, yeast.")]),
           chat(9, [("user", "How can I bake bread?"), ("assistant", "Buy a bread machine.")]),
           # a system turn added: another history, not the same input
           chat(10, [("system", "Be brief."), ("user", "How do I bake bread?"),
                     ("assistant", "Knead, rest, bake at 230 C for 30 minutes.")]),
           # the same input up to formatting, another reply: the one contradiction
           chat(11, [("user", "how do I  bake bread"), ("assistant", "Buy it at the bakery.")])]
    res = analyze_contradictions(exs)
    assert res.positions == {(8, 11)}
    keys = input_keys(exs)
    # 3.5 and 35 normalise alike ("3 5" / "35" differ, but "3.5" vs "3 5" would not): the
    # numbers keep them apart
    assert keys[6][2] == ("3.5",) and keys[7][2] == ("35",)
    assert keys[8] == keys[11] and keys[8] != keys[10] and keys[0][1] == ("user",)
    assert input_keys([qa(0, "Pay 3.5 now", "x"), qa(1, "Pay 3 5 now", "y")])[0][0] == \
        input_keys([qa(1, "Pay 3 5 now", "y")])[0][0]
    assert analyze_contradictions([qa(0, "Pay 3.5 now", "x"), qa(1, "Pay 3 5 now", "y")]
                                  ).pairs == []


def test_invariant_to_permutation():
    rows = [(Q1, A1), (Q1, A1.replace("#### 31", "#### 3")), ("Name a colour.", "Blue."),
            ("name a colour", "Green is nice."), ("What is 5 * 5?", "25"), ("What is 5*5?", "25")]
    exs = [qa(i, q, a) for i, (q, a) in enumerate(rows)]
    perm = np.random.default_rng(3).permutation(len(exs))
    base = {(p["a"], p["b"], round(p["score"], 9)) for p in analyze_contradictions(exs).pairs}
    shuffled = [exs[i] for i in perm]
    got = {(p["a"], p["b"], round(p["score"], 9))
           for p in analyze_contradictions(shuffled).pairs}
    assert got == base and len(base) == 2


def test_config_controls_the_rules():
    exs = [qa(0, "Describe the sea.", "The sea is wide, deep and blue under the sky."),
           qa(1, "Describe the sea.", "The sea is wide, cold and grey under the sky.")]
    assert len(analyze_contradictions(exs).pairs) == 0  # Jaccard 0.67 >= 0.5: a variant
    strict = AnalysisConfig(contradiction_jaccard=0.8)
    assert len(analyze_contradictions(exs, config=strict).pairs) == 1


def _grouped_set(seed: int = 0, d: int = 16):
    """Same-input groups of many sizes (one beyond the small-group batching, 80 members),
    singletons, groups of other inputs sharing a factor centre (aligned but never the same
    input), targets drawn from 3 answers (equal ones: no contradiction)."""
    rng = np.random.default_rng(seed)
    sizes = [80, 2, 2, 3, 5, 7, 12, 30, 65, 2, 4] + [1] * 40
    exs, fin, fout = [], [], []
    centres = rng.standard_normal((len(sizes), d))
    centres[3] = centres[2]                   # two other inputs with one factor centre
    out_c = rng.standard_normal((len(sizes), d))
    for g, size in enumerate(sizes):
        q = f"Question {g}: how many apples are in basket {g}?"
        for _ in range(size):
            i = len(exs)
            exs.append(qa(i, q.upper() if rng.random() < 0.3 else q,
                          f"Count them. #### {rng.integers(1, 4)}"))
            fin.append(centres[g] + rng.uniform(0.0, 0.45) * rng.standard_normal(d))
            fout.append(rng.uniform(0, 1.5) * out_c[g] + rng.standard_normal(d))
    perm = rng.permutation(len(exs))          # groups interleaved in row order
    exs = [qa(j, exs[p].input_text, exs[p].target_text) for j, p in enumerate(perm)]
    return exs, np.asarray(fin)[perm], np.asarray(fout)[perm]


def _brute_force_factor_pairs(exs, fin, fout, config):
    """The old all-pairs factor path restricted to same-input pairs: every pair's cosines in
    float64, filtered by key and thresholds; plus the pairs within 1e-5 of a threshold (their
    side depends on float32 rounding)."""
    keys = input_keys(exs)
    Fi = fin / np.linalg.norm(fin, axis=1, keepdims=True)
    Fo = fout / np.linalg.norm(fout, axis=1, keepdims=True)
    Ci, Co = Fi @ Fi.T, Fo @ Fo.T
    ref, edge = {}, set()
    for a in range(len(exs)):
        for b in range(a + 1, len(exs)):
            if not keys[a] or keys[a] != keys[b]:
                continue
            if (abs(Ci[a, b] - config.factor_input_min) < 1e-5
                    or abs(Co[a, b] - config.factor_output_max) < 1e-5):
                edge.add((a, b))
            elif Ci[a, b] > config.factor_input_min and Co[a, b] < config.factor_output_max:
                ref[(a, b)] = (Ci[a, b], Co[a, b])
    return ref, edge, Ci, Co


def test_within_group_factor_pairs_equal_the_all_pairs_path_on_same_inputs():
    """Issue 26: the factor signal compares only same-input pairs; it finds exactly what the
    all-pairs pass found among them (cosines, counts, proposals, signals)."""
    exs, fin, fout = _grouped_set()
    cfg = AnalysisConfig(max_group=4, block_size=16)   # 80 members: 5 x 5 tiles
    ref, edge, Ci, _ = _brute_force_factor_pairs(exs, fin, fout, cfg)
    keys = input_keys(exs)
    all_pairs = [(a, b) for a in range(len(exs)) for b in range(a + 1, len(exs))]
    n_same = sum(1 for a, b in all_pairs if keys[a] == keys[b])
    assert 200 < len(ref) < n_same - 200     # thresholds cut inside the groups
    # other inputs with aligned factors exist (and are never compared)
    assert any(Ci[a, b] > cfg.factor_input_min for a, b in all_pairs if keys[a] != keys[b])
    groups: dict = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    Fi = (fin / np.linalg.norm(fin, axis=1, keepdims=True)).astype(np.float32)
    Fo = (fout / np.linalg.norm(fout, axis=1, keepdims=True)).astype(np.float32)
    a, b, cin, cout = _same_input_factor_pairs(list(groups.values()), Fi, Fo, cfg)
    got = {(x, y): (ci, co) for x, y, ci, co in zip(a.tolist(), b.tolist(), cin, cout,
                                                     strict=True)}
    assert len(got) == len(a) and (a < b).all()
    assert set(got) - edge == set(ref)
    for pair, (ci, co) in ref.items():
        np.testing.assert_allclose(got[pair], (ci, co), atol=1e-5)
    assert list(cin) == sorted(cin, reverse=True)
    # the whole analyzer: text pairs (head-capped groups) + the factor signal's own pairs
    for cond in (True, False):
        res = analyze_contradictions(exs, input_factors=fin, output_factors=fout,
                                     model_conditions=cond, config=cfg)
        text = analyze_contradictions(exs, config=cfg).positions
        differ = {p for p in ref if cmp(exs[p[0]].target_text, exs[p[1]].target_text)}
        assert res.summary["factor_pairs_same_input"] == len(got)
        assert res.summary["factor_pairs_without_text_support"] == len(
            [p for p in got if not cmp(exs[p[0]].target_text, exs[p[1]].target_text)])
        assert res.positions == text | (differ if cond else set())
        assert differ - text                  # pairs beyond the max_group head exist
        sig = {(p["a"], p["b"]): p["detail"]["signal"] for p in res.pairs}
        for pair in res.positions:
            want = ("text+factors" if pair in text and pair in got else
                    "text" if pair in text else "factors")
            assert sig[pair] == want, pair
    # at most max_pairs input-aligned pairs, the most aligned
    capped = _same_input_factor_pairs(list(groups.values()), Fi, Fo,
                                      AnalysisConfig(max_pairs=50, block_size=16))
    fi_all = [Ci[x, y] for x, y in [(x, y) for g in groups.values() for i, x in enumerate(g)
                                    for y in g[i + 1:]] if Ci[x, y] > 0.95]
    assert len(capped[0]) <= 50
    assert capped[2].min() >= sorted(fi_all, reverse=True)[49] - 1e-5
