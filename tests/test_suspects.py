"""Suspect score: the signals against loops, the rules on hand-written cases, the score's
properties (range, monotone in each signal, permutation-stable), and a planted set scored
with the reference model where the obvious corruptions rank first."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import median_abs_deviation, norm

from constraintlab.analysis import AnalysisConfig
from constraintlab.analysis.suspects import (
    analyze_suspects,
    capability,
    ending_surprise,
    false_arithmetic,
    false_calculations,
    input_dependence,
    result_positions,
    robust_z,
    unsupported_final_answer,
)
from constraintlab.encode.store import TokenProfiles


def _profiles(rng: np.random.Generator, n: int = 60, gain: float = 0.3) -> TokenProfiles:
    """N examples of 6-14 tokens, each ending in a line "#### <d>" and a closing token."""
    nll, noinput, pieces = [], [], []
    for _ in range(n):
        body = int(rng.integers(3, 11))
        p = [f" w{j}" for j in range(body)] + ["\n", "####", " 7", "<eos>"]
        x = rng.gamma(2.0, 1.0, len(p))
        x[-3:] = rng.uniform(0.0, 0.2, 3)             # a predictable ending
        nll.append(x)
        noinput.append(x + rng.uniform(0.0, 2 * gain, len(p)))
        pieces.append(p)
    ids = [rng.integers(0, 50, len(p)) for p in pieces]
    return TokenProfiles.from_lists(nll, [np.zeros(len(p)) for p in pieces], ids, pieces,
                                    nll_noinput=noinput)


def _with(tp: TokenProfiles, row: int, *, nll=None, noinput=None) -> TokenProfiles:
    """A copy of ``tp`` with example ``row``'s per-token arrays replaced."""
    rows = range(len(tp))
    sl = [slice(tp.offsets[r], tp.offsets[r + 1]) for r in rows]
    n_ = [tp.nll[s].copy() for s in sl]
    ni = [tp.nll_noinput[s].copy() for s in sl]
    if nll is not None:
        n_[row] = np.asarray(nll, dtype=np.float32)
    if noinput is not None:
        ni[row] = np.asarray(noinput, dtype=np.float32)
    return TokenProfiles.from_lists(n_, [tp.rank[s] for s in sl], [tp.ids[s] for s in sl],
                                    [tp.pieces(r) for r in rows], nll_noinput=ni)


# ------------------------------------------------------------------- signals vs references
def test_input_dependence_matches_a_loop():
    rng = np.random.default_rng(0)
    tp = _profiles(rng, 20)
    ni = tp.nll_noinput.copy()
    ni[tp.offsets[3]] = np.nan                        # a token not scored without input
    got = input_dependence(tp.offsets, tp.nll, ni)
    for i in range(20):
        a, b = tp.offsets[i], tp.offsets[i + 1]
        want = sum(float(ni[t]) - float(tp.nll[t]) for t in range(a + 1, b)   # first left out
                   if not math.isnan(ni[t]))
        assert got[i] == pytest.approx(want, rel=1e-6, abs=1e-6)
    every = input_dependence(tp.offsets, tp.nll, ni, skip_first=False)
    assert every[0] == pytest.approx(float(np.nansum(ni[:tp.offsets[1]] - tp.nll[:tp.offsets[1]])),
                                     rel=1e-6)
    # no input at all (both NLLs equal): no value
    same = input_dependence(tp.offsets, tp.nll, tp.nll.copy())
    assert np.isnan(same).all()


def test_ending_surprise_is_the_max_over_the_last_line():
    pieces = [[" a", " b", "\n", "####", " 1", "<eos>"], [" x", " y", "<eos>"],
              [" p", "\n", " q", "\n", " "]]
    nll = [np.array([5, 1, 0, 2, 3, 0.5]), np.array([4, 1, 2]), np.array([1, 0, 9, 0, 0])]
    tp = TokenProfiles.from_lists(nll, [np.zeros(len(p)) for p in pieces],
                                  [np.zeros(len(p)) for p in pieces], pieces)
    got = ending_surprise(tp.offsets, tp.nll, [tp.pieces(i) for i in range(3)], 32)
    # last lines: "#### 1<eos>" -> max(2, 3, 0.5); no line break -> whole; trailing blank
    # tokens skipped -> the line " q" and what follows
    np.testing.assert_allclose(got, [3.0, 4.0, 9.0])
    short = ending_surprise(tp.offsets, tp.nll, [tp.pieces(i) for i in range(3)], 2)
    np.testing.assert_allclose(short, [3.0, 2.0, 9.0])


def test_robust_z_matches_scipy():
    """Centre = median; scale = scipy's normal-consistent MAD of the bulk's side (values at or
    below the median for side="high", at or above for "low"), taken about the median of all."""
    x = np.random.default_rng(1).standard_t(3, 101)
    x[7] = np.nan
    ok = ~np.isnan(x)
    med = np.median(x[ok])
    for side, bulk in (("high", x[ok][x[ok] <= med]), ("low", x[ok][x[ok] >= med])):
        z, center, scale = robust_z(x, side)
        want_scale = median_abs_deviation(bulk, center=lambda a, axis: med, scale="normal")
        assert center == pytest.approx(med)
        assert scale == pytest.approx(want_scale, rel=1e-3)   # 1.4826 vs 1 / Phi^-1(3/4)
        np.testing.assert_allclose(z[ok], (x[ok] - med) / scale)
        assert np.isnan(z[7])
    with pytest.raises(ValueError, match="side"):
        robust_z(x, "both")


def test_robust_z_scale_ignores_one_sided_contamination():
    """A known answer: 70 % N(3, 2^2) clean rows and 30 % far above them. The bulk-side scale
    grows less than half as much as the two-sided MAD over the clean spread (2); on clean
    normal data both agree."""
    rng = np.random.default_rng(11)
    clean = rng.normal(3.0, 2.0, 7000)
    x = np.concatenate([clean, rng.normal(15.0, 1.0, 3000)])
    _, _, scale = robust_z(x)
    mad = median_abs_deviation(x, scale="normal")
    assert 2.0 < scale < 2.0 + 0.5 * (mad - 2.0)
    _, _, s_clean = robust_z(clean)
    assert s_clean == pytest.approx(median_abs_deviation(clean, scale="normal"), rel=0.05)


@pytest.mark.parametrize("text, expected", [
    ("He pays 3 * 4 = <<3*4=12>>12 dollars.\n#### 12", (0, 1)),
    ("He pays 3 * 4 = <<3*4=15>>15 dollars.\n#### 15", (1, 1)),
    ("Half is <<10/3=3.33>>3.33 and <<2+2=4>>4", (0, 2)),
    ("so 3 + 4 = 7 apples, and 1,200 / 4 = 300", (0, 2)),
    ("so 3 + 4 = 8 apples", (1, 1)),
    ("X*6 + 9 = 87 years; 27(1/3)=9", (0, 0)),  # variables, implied products
    ("50% * 50% = 25%", (0, 1)),                # percentages are read (issue 22)
    ("it costs $400 000 x 3/100 = $12 000", (0, 0)),              # digit groups
    # hand-checked lines of real GSM8K train solutions (issue 22): what the rule cannot read
    # it leaves alone; what it reads it judges right
    ("The third present needs 2 + 1 1/2 = 3 1/2 square feet of wrapping paper.", (0, 1)),
    ("Carrie needs 2 + 1 1/2 + 3 1/2 = 7 square feet of wrapping paper", (0, 1)),
    ("The third present needs 2 + 1 1/2 = 4 1/2 square feet", (1, 1)),   # mixed numbers read
    ("1 1/3 + 1 = 2 1/3 cups", (0, 0)),           # no terminating decimal: not read
    ("so the birds eat 2 - 1/2 = 1 1/2 cups of birdseed. Each cup feeds 14 birds, so the "
     "feeder feeds 14 * 1 1/2 = 21 birds weekly.", (0, 2)),           # train row 802
    ("she has 4/12 + 3/12 = 7 /12 of a bottle of shampoo left.", (0, 0)),   # train row 6718
    ("we would divide both sides of the equation by 1.2, like this: 192 / 1.2 = 1.2Y / 1.2 or "
     "160 = Y.", (0, 0)),
    ("divide each side by 5 to figure out how many nuggets Alyssa ate, 100/5 = 5A/5 or 20 = A.",
     (0, 0)),
    ("The second present needs 3 / 4 * 2 = 1 1/2 square feet", (0, 1)),
    ("So he pays $0.49 * 3 = $1.47 for the pens", (0, 1)),
    ("So, Bea earned $2.50 - $2.24 = 26 cents more than Dawn.", (0, 1)),   # train row 2429
    ("So, Bea earned $2.50 - $2.24 = 36 cents more than Dawn.", (1, 1)),
    ("He saves 20% * $50 = $10 a week", (0, 1)),                   # percent as a hundredth
    ("That is 0.25 * 100 = 25% of the class", (0, 1)),            # percent as a number
    ("so 10 + 5 = 16% more", (1, 1)),
    ("2 * 3 = 3 * 2 = 6", (0, 1)),                                 # a chain: the last step
    ("3 * 4 = 12 feet and 12 feet * 2 = 24 feet", (0, 1)),
])
def test_false_arithmetic(text, expected):
    assert false_arithmetic(text) == expected
    assert len(false_calculations(text)) == expected[0]


def test_false_calculations_name_the_calculation():
    assert false_calculations("so 3 + 4 = 8 apples") == [
        {"calculation": "3 + 4 = 8", "computed": 7.0}]
    assert false_calculations("He pays <<3*4=15>>15 dollars") == [
        {"calculation": "3*4 = 15", "computed": 12.0}]


@pytest.mark.parametrize("text, expected", [
    ("3 + 4 = <<3+4=7>>7\n#### 7", False),
    ("3 + 4 = <<3+4=7>>7\n#### 9", True),
    ("The answer is 9.", False),                          # not a worked target
    ("First 2 and 3 make 5, so the answer is 6", True),
    ("Die Antwort lautet 5.", False),
    ("He paid $400 000 - $282 000 = $118 000 in all.\n#### 118000", False),  # digit groups
    ("He paid $400 000 - $282 000 = $118 000 in all.\n#### 118001", True),
    ("Each costs $2.00/8 = $<<2/8=0.25>>0.25\n#### 25", False),          # dollars -> cents
    ("16 * 2 = <<16*2=32>>32 feet, so it took three days.\n#### 3", False),  # a number word
    ("16 * 2 = <<16*2=32>>32 feet, so it took three days.\n#### 4", True),
])
def test_unsupported_final_answer(text, expected):
    assert unsupported_final_answer(text) is expected


# -------------------------------------------------------------------------- score properties
def test_score_range_threshold_and_formula():
    rng = np.random.default_rng(2)
    tp = _profiles(rng, 80)
    res = analyze_suspects(tp)
    s = res.score
    assert ((s >= 0) & (s <= 1)).all()
    cfg = AnalysisConfig()
    np.testing.assert_array_equal(res.is_suspect, s >= 1 - cfg.suspect_alpha)
    # independent recomputation: z from scipy's MAD of the bulk's side (x 1.4826), p_surprise
    # by Sidak over the ending and the whole target
    nll, ni = tp.nll.astype(np.float64), tp.nll_noinput.astype(np.float64)
    bounds = list(zip(tp.offsets[:-1], tp.offsets[1:], strict=True))
    d = np.array([float((ni[a + 1:b] - nll[a + 1:b]).sum()) for a, b in bounds])
    e = np.log(np.array([nll[b - 3:b].max() for _, b in bounds]) + 0.05)
    t = np.log(np.array([nll[a:b].mean() for a, b in bounds]))

    def z(x):
        med = np.median(x)
        low = x[x <= med]
        return (x - med) / (1.4826 * median_abs_deviation(low, center=lambda a, axis: med))

    z1, z2, z3 = z(-d), z(e), z(t)
    np.testing.assert_allclose(res.z, np.column_stack([z1, z2, z3]), rtol=1e-9, atol=1e-12)
    # the weighted Bonferroni combination of the two questions, written out: p = min(1,
    # p_input / w_input, p_surprise / w_surprise)
    from constraintlab.analysis.suspects import QUESTION_WEIGHTS

    w_in, w_sur = QUESTION_WEIGHTS
    p_s = 1 - (1 - np.minimum(norm.sf(z2), norm.sf(z3))) ** 2
    p = np.minimum(1.0, np.minimum(norm.sf(z1) / w_in, p_s / w_sur))
    np.testing.assert_allclose(s, 1 - p, rtol=1e-9, atol=1e-12)
    # evidence: -log10 of the same p-value (no rounding), from scipy's log survival function
    lp = np.minimum(0.0, np.minimum(norm.logsf(z1) - np.log(w_in), np.log(p_s) - np.log(w_sur)))
    np.testing.assert_allclose(res.evidence, -lp / np.log(10), rtol=1e-9, atol=1e-12)
    assert res.summary["suspects"] == int(res.is_suspect.sum())
    assert set(res.table.columns) >= {"suspect_score", "is_suspect", "suspect_reasons"}


def test_monotone_in_each_signal():
    rng = np.random.default_rng(3)
    tp = _profiles(rng, 60)
    base = analyze_suspects(tp)
    row = int(np.argsort(base.z[:, 0])[-5])            # in the input signal's upper tail
    a, b = tp.offsets[row], tp.offsets[row + 1]
    prev_score, prev_z = base.score[row], base.z[row, 0]
    for k in (1, 2, 3):   # less and less explained by the input: dependence goes down
        ni = tp.nll[a:b] + (tp.nll_noinput[a:b] - tp.nll[a:b]) * (1 - k / 4)
        r = analyze_suspects(_with(tp, row, noinput=ni))
        assert r.z[row, 0] > prev_z and r.score[row] >= prev_score
        prev_score, prev_z = r.score[row], r.z[row, 0]
    row = int(np.argsort(base.z[:, 1])[-5])             # in the ending signal's upper tail
    a, b = tp.offsets[row], tp.offsets[row + 1]
    prev_score, prev_z = base.score[row], base.z[row, 1]
    for k in (1, 2, 3):   # a more and more surprising final token (the input gain kept)
        x = tp.nll[a:b].copy()
        x[-2] += k
        ni = tp.nll_noinput[a:b].copy()
        ni[-2] += k
        r = analyze_suspects(_with(tp, row, nll=x, noinput=ni))
        assert r.z[row, 1] > prev_z and r.score[row] >= prev_score
        prev_score, prev_z = r.score[row], r.z[row, 1]
    row = int(np.argsort(base.z[:, 2])[-5])             # in the whole target's upper tail
    a, b = tp.offsets[row], tp.offsets[row + 1]
    prev_score, prev_z = base.score[row], base.z[row, 2]
    for k in (1, 2, 3):   # a more and more surprising body (ending and input gain kept)
        x = tp.nll[a:b].copy()
        x[1:-4] += 0.5 * k
        ni = tp.nll_noinput[a:b].copy()
        ni[1:-4] += 0.5 * k
        r = analyze_suspects(_with(tp, row, nll=x, noinput=ni))
        assert r.z[row, 2] > prev_z and r.score[row] >= prev_score
        prev_score, prev_z = r.score[row], r.z[row, 2]


def test_rules_raise_the_score_and_flag():
    rng = np.random.default_rng(4)
    tp = _profiles(rng, 30)
    targets = ["3 + 4 = <<3+4=7>>7\n#### 7"] * 30
    targets[5] = "3 + 4 = <<3+4=8>>8\n#### 8"
    targets[9] = "3 + 4 = <<3+4=7>>7 and 2 more\n#### 9"
    trunc = np.eye(30, dtype=int)[11]
    plain = analyze_suspects(tp, targets=["x"] * 30, n_truncated=trunc)
    r = analyze_suspects(tp, targets=targets, contradictions={(1, 2)}, n_truncated=trunc)
    for row, reason in [(5, "false_arithmetic"), (9, "unsupported_final_answer")]:
        assert r.is_suspect[row] and reason in r.reasons[row]
        assert r.score[row] >= plain.score[row] - 1e-12
    # each rule hit names what it judged
    assert r.table["suspect_detail"].iloc[5] == "false: 3+4 = 8 (is 7)"
    assert "final answer 9 appears nowhere" in r.table["suspect_detail"].iloc[9]
    assert r.table["suspect_detail"].iloc[0] == ""
    # a contradiction pair is a pair to resolve, listed as a note on both sides: no evidence
    # against either side (issue 22), the score unchanged
    assert r.summary["contradiction_pairs"] == [[1, 2]]
    for row in (1, 2):
        assert "contradiction" in r.reasons[row]
        assert r.score[row] == plain.score[row] and r.is_suspect[row] == plain.is_suspect[row]
    others = [i for i in range(30) if i not in (5, 9)]
    np.testing.assert_allclose(r.score[others], plain.score[others])
    # truncation is a note: listed among the reasons, no evidence of a wrong target
    assert "truncated" in r.reasons[11] and not r.is_suspect[11]
    # a rule hit adds -log10(suspect_rule_p) = 3 to the evidence (the ranking key)
    np.testing.assert_allclose(r.evidence[[5, 9]], plain.evidence[[5, 9]] + 3.0, rtol=1e-12)
    # ranks and p-values: the ranking key, never saturated (p = 10^-evidence)
    np.testing.assert_allclose(r.table["suspect_p"], 10.0 ** -r.evidence, rtol=1e-12)
    want_rank = np.empty(30, int)
    want_rank[np.lexsort((np.arange(30), -r.evidence))] = np.arange(1, 31)
    np.testing.assert_array_equal(r.table["suspect_rank"], want_rank)
    for v in r.summary["listed"]:
        row = v["id"]
        assert v["rank"] == want_rank[row] and v["p_value"] == pytest.approx(10 ** -r.evidence[row])
    # the ending of an example cut at max_length was not scored: no ending signal for it
    whole = analyze_suspects(tp, targets=["x"] * 30)
    assert np.isnan(r.table["ending_surprise"].iloc[11]) and np.isnan(r.z[11, 1])
    assert not np.isnan(whole.z[11, 1]) and not whole.is_suspect[11]
    # far-tail model evidence (score rounds to 1) still outranks a rule hit on a bulk example
    a, b = tp.offsets[0], tp.offsets[1]
    strong = _with(tp, 0, noinput=tp.nll[a:b] - 3.0)      # the input makes it 3 nats harder
    big = analyze_suspects(strong, targets=targets)
    assert big.score[0] == 1.0 and big.evidence[0] > big.evidence[5] >= 3.0 - 1e-12


def test_stable_under_permuting_rows():
    rng = np.random.default_rng(5)
    tp = _profiles(rng, 50)
    ids = np.arange(100, 150)
    r = analyze_suspects(tp, ids=ids)
    perm = rng.permutation(50)
    tq = tp.subset(perm)
    q = analyze_suspects(tq, ids=ids[perm])
    np.testing.assert_allclose(q.table.loc[ids, "suspect_score"].to_numpy(),
                               r.table.loc[ids, "suspect_score"].to_numpy(), rtol=1e-12)
    assert (q.table.loc[ids, "suspect_reasons"] == r.table.loc[ids, "suspect_reasons"]).all()


def test_capability_against_hand_numbers():
    # two examples; unigram counts {0: 2, 1: 1, 2: 1}; gain 0.5 nats on each of 4 tokens
    offsets = np.array([0, 2, 4])
    nll = np.array([1.0, 2.0, 3.0, 2.0])
    ids = np.array([0, 0, 1, 2])
    cap = capability(offsets, nll, ids, nll + 0.5)
    p = np.array([0.5, 0.25, 0.25])
    assert cap["unigram_entropy"] == pytest.approx(-(p * np.log(p)).sum())
    assert cap["mean_target_nll"] == pytest.approx(2.0)
    # the first token of each target (the frame) is left out: tokens 1 and 3 count
    assert cap["relative_input_gain"] == pytest.approx(1.0 / 5.0)
    dep = cap["input_dependence"]
    assert dep["median"] == pytest.approx(0.5) and dep["median_per_token"] == pytest.approx(0.5)
    assert dep["share_near_zero"] == 0.0
    assert cap["conditions_on_input"] is True and cap["predicts_targets"] is False
    assert cap["limited"] is True and "--model" in cap["message"]


def test_capability_rules_fire_on_planted_numbers():
    """Four examples of 3 tokens, known NLLs: unigram entropy ln 3 (ids 0, 1, 2 once each per
    example); the input explains 0.001 nats of tokens 1-2 of every example except a gain of
    1 nat per token in example 0."""
    offsets = np.array([0, 3, 6, 9, 12])
    nll = np.full(12, 0.2)
    ids = np.tile([0, 1, 2], 4)
    ni = nll + 0.001
    ni[1:3] += 1.0
    cap = capability(offsets, nll, ids, ni)
    assert cap["unigram_entropy"] == pytest.approx(math.log(3))
    assert cap["nll_ratio"] == pytest.approx(0.2 / math.log(3))
    # gain (2 * 1.001 + 6 * 0.001) / no-input NLL (2 * 1.201 + 6 * 0.201)
    assert cap["relative_input_gain"] == pytest.approx(2.008 / 3.608)
    assert cap["input_dependence"]["share_near_zero"] == pytest.approx(0.75)
    assert cap["input_dependence"]["median"] == pytest.approx(0.002)
    assert cap["conditions_on_input"] is True and cap["limited"] is False
    weak = capability(offsets, nll, ids, nll + 0.001)       # no example depends on its input
    assert weak["relative_input_gain"] == pytest.approx(0.001 / 0.201)
    assert weak["conditions_on_input"] is False and weak["limited"] is True
    assert weak["input_dependence"]["share_near_zero"] == 1.0
    assert any("taken from another example" in r for r in weak["out_of_reach"])
    assert "0.5 %" in weak["message"] and "--model" in weak["message"]
    # predicting no better than the token frequencies: surprise checks out of reach
    flat = capability(offsets, np.full(12, math.log(3)), ids, np.full(12, math.log(3)) + 1)
    assert flat["predicts_targets"] is False and flat["limited"] is True
    assert any("end or read unlike" in r for r in flat["out_of_reach"])


def test_result_positions_and_arithmetic_reach():
    pieces = ["He", " pays", " 3", " *", " 4", " =", " $<<", "3", "*", "4", "=", "1", "2",
              ">>", "1", "2", ".\n", "####", " 1", "2"]
    assert result_positions(pieces) == [11, 12]                 # the computed 12, not copies
    assert result_positions(["3", " +", " 4", " =", " 7", "."]) == [4]    # plain a op b = c
    assert result_positions(["No", " numbers", " here", "."]) == []
    n = len(pieces)
    offsets = np.array([0, n])
    ids = np.array([hash(p) % 97 for p in pieces])
    for result_nll, computes in ((0.1, True), (2.0, False)):
        nll = np.full(n, 0.05)
        nll[[11, 12]] = result_nll
        cap = capability(offsets, nll, ids, None, pieces=[pieces])
        ar = cap["arithmetic"]
        assert ar["result_digits"] == 2 and ar["result_nll"] == pytest.approx(result_nll)
        assert ar["copied_nll"] == pytest.approx(0.05)       # 3, 4, 3, 4, 1, 2, 1, 2 copied
        assert cap["computes_arithmetic"] is computes
        assert any("arithmetic" in r for r in cap["out_of_reach"]) is not computes


def test_out_of_reach_signals_leave_the_score():
    rng = np.random.default_rng(6)
    tp = _profiles(rng, 40, gain=0.001)           # the input explains almost nothing
    r = analyze_suspects(tp)
    assert r.summary["capability"]["conditions_on_input"] is False
    assert r.summary["signals"]["input_dependence"]["in_reach"] is False
    assert not any("input_unexplained" in x for x in r.reasons)
    ungated = analyze_suspects(tp, config=AnalysisConfig(suspect_gate=False))
    assert ungated.summary["signals"]["input_dependence"]["in_reach"] is True


# ------------------------------------------------------------------ in the analysis
def test_analysis_runs_suspects_with_the_contradiction_pairs():
    """``analyze_constraints`` fills ``.suspects`` and its table columns, equal to a direct
    call that is handed the contradictions analyzer's pairs, the targets and the
    truncation counts (rows 4 and 9: same question, other final answer)."""
    from constraintlab.analysis import analyze_constraints
    from constraintlab.io import read_examples

    rng = np.random.default_rng(7)
    n = 30
    records = [{"question": f"Tom has {i} apples and buys {i + 3} more. How many now?",
                "answer": f"{i} + {i + 3} = <<{i}+{i + 3}={2 * i + 3}>>{2 * i + 3}\n#### "
                          f"{2 * i + 3}"} for i in range(n)]
    records[9] = {"question": records[4]["question"],
                  "answer": "4 + 7 = <<4+7=11>>11 and 3 more\n#### 14"}
    records[12]["answer"] = "12 + 15 = <<12+15=28>>28\n#### 28"          # false arithmetic
    examples = read_examples(records)
    tp = _profiles(rng, n)
    trunc = np.zeros(n, dtype=np.int64)
    trunc[20] = 5
    res = analyze_constraints(rng.standard_normal((n, 32)).astype(np.float32),
                              examples=examples, tokens=tp, grad_norm=np.ones(n),
                              vocab_size=50, n_truncated=trunc)
    assert (4, 9) in res.contradictions.positions
    direct = analyze_suspects(tp, targets=[ex.target_text for ex in examples], ids=res.ids,
                              contradictions=res.contradictions.positions, n_truncated=trunc,
                              config=res.config)
    got = res.suspects
    assert got is not None and got.name == "suspects" and got in res.results
    np.testing.assert_array_equal(got.score, direct.score)
    assert got.reasons == direct.reasons
    for row, reason in ((4, "contradiction"), (9, "contradiction"), (12, "false_arithmetic")):
        assert reason in got.reasons[row]
    assert got.is_suspect[12] and got.summary["contradiction_pairs"] == [[4, 9]]
    assert "truncated" in got.reasons[20]       # a note, not a flag
    table = res.table()
    cols = ["is_suspect", "suspect_score", "suspect_reasons", "suspect_evidence",
            "input_dependence", "ending_surprise"]
    assert set(cols) <= set(table.columns)
    pd.testing.assert_frame_equal(table[cols], direct.table[cols].loc[table.index])
    assert res.summary()["suspects"]["capability"]["message"]


# ------------------------------------------------------- planted set, reference model
def test_planted_corruptions_rank_first(shared_data, tmp_path):
    """30 GSM8K test problems (never trained on by the reference model); five targets planted
    wrong. The three with loud or written-out evidence (an off-topic reply, another final
    answer, a false intermediate result) are the three most suspect and flagged; a cut-off
    solution and another problem's solution (one moderate signal each for a 5M model on 30
    rows) are among the six most suspect (behind one clean row whose input explains nothing:
    robust z 3.3; Fisher's method, before issue 22's weighting, ranked the cut-off one
    fourth by pooling its two moderate signals, z 1.9 and 2.8)."""
    from constraintlab.encode import EncodeConfig, extract
    from constraintlab.io import read_examples

    lines = (shared_data / "gsm8k_test.jsonl").read_text(encoding="utf-8").splitlines()[:30]
    rows = [{"question": r["question"], "answer": r["answer"]} for r in map(json.loads, lines)]
    planted = {}
    planted[3] = rows[17]["answer"]                                      # swapped
    words = rows[8]["answer"].split(" ")
    planted[8] = " ".join(words[:len(words) // 3])                       # truncated
    head, final = rows[12]["answer"].rsplit("####", 1)
    planted[12] = f"{head}#### {int(final.replace(',', '')) + 7}"        # final answer
    ans = rows[20]["answer"]
    start = ans.index("<<")
    eq, stop = ans.index("=", start), ans.index(">>", start)
    value = ans[eq + 1:stop]
    wrong = str(int(float(value)) + 3)
    planted[20] = ans[:eq + 1] + wrong + ">>" + wrong + ans[stop + 2 + len(value):]
    planted[25] = ("The capital of France is Paris. It is known for the Eiffel Tower, its "
                   "museums and its cafes.")                            # off-topic
    for i, t in planted.items():
        rows[i] = {"question": rows[i]["question"], "answer": t}
    path = tmp_path / "planted.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    ds = read_examples(path)
    store = extract(ds, EncodeConfig(k=16, lora_r=1), tmp_path / "store")
    res = analyze_suspects(store.tokens, targets=[ex.target_text for ex in ds],
                           n_truncated=store.table["n_truncated"].to_numpy())
    order = np.lexsort((-res.evidence, -res.score)).tolist()
    obvious = {12, 20, 25}
    assert set(order[:3]) == obvious
    assert res.is_suspect[sorted(obvious)].all()
    assert order.index(8) < 6 and order.index(3) < 6
    assert res.summary["capability"]["conditions_on_input"] is True


def test_sidak_pair_against_the_formula():
    """ln(1 - (1 - min p)^m) over the available p-values, exact far into the tail (where the
    direct formula underflows to ln(m p))."""
    from constraintlab.analysis.suspects import _log_p_sidak

    p = np.array([[0.3, 0.01], [np.nan, 0.2], [np.nan, np.nan], [1e-40, 0.5], [1.0, 1.0],
                  [1e-300, np.nan]])
    got = _log_p_sidak(np.log(p))
    want = [np.log(1 - 0.99 ** 2), np.log(0.2), np.nan, np.log(2e-40), 0.0, np.log(1e-300)]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_unmeasured_suspects_are_null_and_fail_the_gate():
    """Issue 22: when the capability statement rules a check out, the suspect count is not
    measured: null in the summary (and so in report.json), failing every gate condition; the
    flags of the checks that ran stay in ``flagged`` and the table."""
    from constraintlab.gate import Condition, evaluate

    rng = np.random.default_rng(12)
    tp = _profiles(rng, 40)
    ok = analyze_suspects(tp)
    assert ok.summary["capability"]["limited"] is False and ok.summary["measured"] is True
    assert ok.summary["suspects"] == int(ok.is_suspect.sum())
    # the same data judged by a model asked to explain 99 % of the targets from the inputs
    cfg = AnalysisConfig(capability_min_gain=0.99)
    off = analyze_suspects(tp, config=cfg)
    assert off.summary["capability"]["conditions_on_input"] is False
    assert off.summary["suspects"] is None and off.summary["suspect_share"] is None
    assert off.summary["measured"] is False and "input_dependence" in off.summary["not_measured"]
    assert off.summary["flagged"] == int(off.is_suspect.sum())
    checks = evaluate([Condition.parse("suspect_share < 0.02"), Condition.parse("suspects == 0")],
                      {"suspect_share": off.summary["suspect_share"],
                       "suspects": off.summary["suspects"]})
    assert [c.passed for c in checks] == [False, False]
    # without the gate every signal is used: measured again
    ungated = analyze_suspects(tp, config=AnalysisConfig(capability_min_gain=0.99,
                                                         suspect_gate=False))
    assert ungated.summary["measured"] is True and ungated.summary["suspects"] is not None


def test_advice_never_rests_on_what_the_capability_statement_rules_out():
    """Interference above its null from a model that barely conditions on the input is said to
    restate the model's ignorance, never "separate adapters"; volatility from a model that
    does not know the text says so; unmeasured suspects ask for --model."""
    from types import SimpleNamespace

    from constraintlab.analysis.advice import advise

    def res(summary):
        return SimpleNamespace(summary=summary)

    inter = res({"interference_above_null": True, "interference_excess": 1.4,
                 "most_interfering_pair": {"a": 0, "b": 1}})
    vol = res({"percentiles": {"volatility": {"p99": 0.9, "max": 0.95}},
               "most_volatile": [{"id": 3, "volatility": 0.95, "mean_nll": 7.0}]})

    def results(limited: bool, predicts: bool, measured: bool):
        cap = {"limited": limited, "predicts_targets": predicts}
        return SimpleNamespace(contradictions=None, redundancy=None, families=None,
                               volatility=vol, zones=None, determinacy=None, spectrum=None,
                               interference=inter,
                               suspects=res({"capability": cap, "measured": measured}))

    cfg = AnalysisConfig()
    good = " ".join(advise(results(False, True, True), cfg))
    assert "separate adapters" in good and "Check the most volatile" in good
    bad = " ".join(advise(results(True, False, False), cfg))
    assert "separate adapters" not in bad and "restates its ignorance" in bad
    assert "Check the most volatile" not in bad and "does not know this text" in bad
    assert "--model" in bad


def test_weighted_bonferroni_against_the_formula_and_its_null():
    """The combination written out (min over the available of p_c / w_c, weights of the
    available renormalised), and its calibration by Monte-Carlo: with independent uniform
    p-values P(p <= a) = 1 - (1 - w a)(1 - (1 - w) a) (exactly, a short formula), and <= a
    when both questions are the same uniform (any dependence)."""
    from constraintlab.analysis.suspects import QUESTION_WEIGHTS
    from constraintlab.analysis.suspects.stats import (
        _log_p_combined,
        _log_p_weighted_bonferroni,
    )

    w = np.array([0.7, 0.2, 0.1])
    p = np.array([[0.07, 0.5, 0.5], [np.nan, 0.02, 0.3], [np.nan, np.nan, np.nan],
                  [0.9, 0.9, 1e-250], [np.nan, np.nan, 0.4]])
    want = [0.1, min(0.02 / (0.2 / 0.3), 0.3 / (0.1 / 0.3)), 1.0, 1e-249, 0.4]
    np.testing.assert_allclose(np.exp(_log_p_weighted_bonferroni(np.log(p), w)), want,
                               rtol=1e-12)
    with pytest.raises(ValueError, match="positive weights"):
        _log_p_weighted_bonferroni(np.log(p), [1.0, 0.0, 1.0])

    rng = np.random.default_rng(11)
    n = 400_000
    u = rng.random((n, 3))
    got = np.exp(_log_p_combined(np.log(u)))
    wi, ws = QUESTION_WEIGHTS
    for a in (0.01, 0.05):
        exact = 1 - (1 - wi * a) * (1 - ws * a)
        sd = math.sqrt(exact * (1 - exact) / n)
        assert abs((got <= a).mean() - exact) < 4 * sd
    same = np.column_stack([u[:, 0], u[:, 0], np.full(n, np.nan)])   # p_surprise = p_input
    for a in (0.01, 0.05):
        assert (np.exp(_log_p_combined(np.log(same))) <= a).mean() <= a


@pytest.mark.parametrize("carrier", ["input", "surprise"])
def test_combined_auroc_within_001_of_the_signal_that_carries_the_kind(carrier):
    """Issue 22: when one question carries a kind and the other is pure noise, the combined
    p-value ranks the kind within 0.01 AUROC of that signal alone (sklearn's AUROC), in the
    shapes measured on the planted GSM8K sets (seed 0, 10 %): a spread shift of the input
    question (swapped targets: robust z 2.3, sd 0.8-1.2) and a loud, tight ending (cut-off
    targets: 3.4, sd 0.3). Fisher's method falls below on the input kind (the check can
    fail). The weights trade: a quieter surprise-only kind with pure-noise input (z 3.0, as
    cut-off targets at 30 %) loses 0.017 in this model (on the planted sets their input
    signal is not pure noise; ``bench_suspects`` measures them)."""
    from scipy.stats import chi2
    from sklearn.metrics import roc_auc_score

    from constraintlab.analysis.suspects.stats import _log_p_combined

    rng = np.random.default_rng(5)
    n = 30_000
    clean = rng.standard_normal((n, 3))
    pos = rng.standard_normal((n, 3))
    if carrier == "input":
        pos[:, 0] = rng.normal(2.2, 1.0, n)
        col = 0
    else:
        pos[:, 1] = rng.normal(3.4, 0.3, n)
        col = 1
    Z = np.vstack([clean, pos])
    y = np.r_[np.zeros(n), np.ones(n)]
    single = roc_auc_score(y, Z[:, col])
    lp = norm.logsf(Z)
    combined = roc_auc_score(y, -_log_p_combined(lp))
    assert combined >= single - 0.01
    p_s = 1 - (1 - np.minimum(norm.sf(Z[:, 1]), norm.sf(Z[:, 2]))) ** 2
    fisher = roc_auc_score(y, -chi2.logsf(-2 * (lp[:, 0] + np.log(p_s)), 4))
    if carrier == "input":
        assert fisher < single - 0.01
