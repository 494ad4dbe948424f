"""The shared text view: one normalisation pass per text kind, one MinHash pass per kind, pairs
filtered from it against brute-force Jaccard, band coverage, link groups against networkx."""

from __future__ import annotations

from itertools import combinations

import networkx as nx
import numpy as np
import pytest

import constraintlab.analysis.lexical as lexical
import constraintlab.analysis.text as text_module
from constraintlab.analysis import AnalysisConfig, TextView, analyze_constraints, components
from constraintlab.analysis.lexical import bands_cover, near_duplicate_pairs
from constraintlab.analysis.text import jaccard, normalize, word_shingles
from constraintlab.io.example import Example, Message

VOCAB = [f"w{i}" for i in range(400)]


def ex(i: int, prompt: str, reply: str) -> Example:
    msgs = (Message("user", prompt), Message("assistant", reply)) if prompt else (
        Message("assistant", reply),)
    return Example(index=i, line=i + 1, source="<records>", schema="alpaca" if prompt else "text",
                   messages=msgs, targets=(len(msgs) - 1,), chat=False, raw={})


def corpus(seed: int = 0, n_base: int = 25, per_base: int = 5) -> list[Example]:
    """Base texts of 40 random words and variants with 0..12 words replaced (Jaccard of the
    3-shingles from about 0.3 to 1), shuffled; a few empty and repeated records."""
    rng = np.random.default_rng(seed)
    texts = []
    for _ in range(n_base):
        base = list(rng.choice(VOCAB, 40))
        texts.append(" ".join(base))
        for _ in range(per_base):
            w = list(base)
            for j in rng.choice(40, int(rng.integers(0, 13)), replace=False):
                w[j] = str(rng.choice(VOCAB))
            texts.append(" ".join(w))
    texts += ["", "", texts[3].upper(), texts[3]]
    order = rng.permutation(len(texts))
    out = []
    for i, k in enumerate(order):
        prompt, _, reply = texts[k].partition(" ")
        out.append(ex(i, f"Q {prompt}" if texts[k] else "", reply or ""))
    return out


def brute_force(norm: list[str], size: int, threshold: float) -> dict[tuple[int, int], float]:
    sh = [word_shingles(t, size) for t in norm]
    return {(i, j): jaccard(sh[i], sh[j]) for i, j in combinations(range(len(norm)), 2)
            if norm[i] and norm[j] and jaccard(sh[i], sh[j]) >= threshold}


def as_dict(a, b, j) -> dict[tuple[int, int], float]:
    return {(int(x), int(y)): float(v) for x, y, v in zip(a, b, j, strict=True)}


def test_example_text_is_input_blank_line_target():
    assert ex(0, "Add 2 and 3.", "5").text == "Add 2 and 3.\n\n5"
    assert ex(1, "", "just text").text == "just text"


def test_filtered_pairs_match_brute_force_and_a_pass_of_their_own():
    exs = corpus()
    cfg = AnalysisConfig()
    view = TextView(exs, cfg)
    assert view.norm_record == [normalize(e.text) for e in exs]
    p50 = as_dict(*view.pairs(0.5, on="record")[:3])
    p80 = as_dict(*view.pairs(0.8, on="record")[:3])
    ref50 = brute_force(view.norm_record, cfg.shingle_size, 0.5)
    ref80 = brute_force(view.norm_record, cfg.shingle_size, 0.8)
    assert len(ref50) > 2 * len(ref80) > 40  # the corpus spans both thresholds
    # exact: every pair returned has the brute-force Jaccard, at or above the threshold
    assert all(ref50[k] == pytest.approx(v, abs=1e-12) for k, v in p50.items())
    assert set(p80) == set(ref80)            # the high threshold loses nothing
    assert len(set(p50) & set(ref50)) >= 0.98 * len(ref50)
    # recall never below a pass run at that threshold alone
    for t, got in ((0.5, p50), (0.8, p80)):
        own = as_dict(*near_duplicate_pairs(view.norm_record, cfg, threshold=t)[:3])
        assert set(own) <= set(got)
        assert all(got[k] == own[k] for k in own)


def test_uncovered_bands_are_added_to_the_one_pass():
    exs = corpus(seed=1)
    cfg = AnalysisConfig(lsh_bands=32, lsh_rows=4)   # 4-row bands: not covered by 3-row ones
    view = TextView(exs, cfg)
    a, b, j, stats = view.pairs(0.8, on="record")
    assert stats["lsh_threshold"] == 0.5 and stats["extra_bands"] == [[32, 4]]
    own = as_dict(*near_duplicate_pairs(view.norm_record, cfg, threshold=0.8)[:3])
    assert set(own) <= set(as_dict(a, b, j))
    assert set(as_dict(a, b, j)) == set(brute_force(view.norm_record, 3, 0.8))


def test_a_lower_threshold_than_planned_reruns_the_pass():
    exs = corpus(seed=2)
    view = TextView(exs, AnalysisConfig(), thresholds={"record": (0.8,)})
    view.pairs(0.8)
    got = as_dict(*view.pairs(0.3)[:3])
    ref = brute_force(view.norm_record, 3, 0.3)
    assert set(got) <= set(ref) and len(got) >= 0.95 * len(ref)
    assert view.pairs(0.8)[3]["lsh_threshold"] == 0.3


def test_one_normalisation_per_kind_and_one_minhash_per_kind(monkeypatch):
    calls = {"normalize": 0, "minhash": 0}
    real_norm, real_sig = text_module.normalize_many, lexical.minhash_signatures

    def count_norm(texts):
        calls["normalize"] += 1
        return real_norm(texts)

    def count_sig(*args):
        calls["minhash"] += 1
        return real_sig(*args)

    monkeypatch.setattr(text_module, "normalize_many", count_norm)
    monkeypatch.setattr(lexical, "minhash_signatures", count_sig)
    exs = corpus(seed=3)
    X = np.random.default_rng(0).standard_normal((len(exs), 16))
    out = analyze_constraints(X, examples=exs)
    assert out.redundancy is not None and out.families is not None
    # record/input/target normalised once each; one MinHash pass, over records (no analyzer
    # asks for near inputs since a contradiction is the same input up to formatting)
    assert calls == {"normalize": 3, "minhash": 1}
    view = TextView(exs, thresholds={"input": (0.8,)})      # asked for: one pass over inputs
    calls.update(minhash=0)
    view.pairs(0.8, on="input")
    view.pairs(0.8, on="input")
    assert calls["minhash"] == 1


def test_shingles_are_the_normalised_word_shingles():
    exs = corpus(seed=4)[:20]
    view = TextView(exs)
    for i, e in enumerate(exs):
        assert view.shingles(i, "input") == word_shingles(normalize(e.input_text), 2)
        assert view.shingles(i) == word_shingles(normalize(e.text), 3)
        assert view.shingles(i) is view.shingles(i)   # cached
    with pytest.raises(ValueError):
        view.pairs(0.5, on="answer")


def _cover_reference(low: tuple[int, int], high: tuple[int, int]) -> bool:
    (b1, r1), (b2, r2) = low, high
    lows = [set(range(u * r1, (u + 1) * r1)) for u in range(b1)]
    return all(any(lb <= set(range(t * r2, (t + 1) * r2)) for lb in lows) for t in range(b2))


def test_bands_cover_matches_the_row_sets():
    for b1 in range(1, 9):
        for r1 in range(1, 7):
            for b2 in range(1, 9):
                for r2 in range(1, 7):
                    assert bands_cover((b1, r1), (b2, r2)) == _cover_reference((b1, r1),
                                                                              (b2, r2))
    assert bands_cover((42, 3), (21, 6))   # the defaults: 0.5 covers 0.8


def test_components_match_networkx():
    rng = np.random.default_rng(5)
    for n, m in ((1, 0), (10, 0), (30, 12), (200, 150), (60, 300)):
        a = rng.integers(0, n, m)
        b = rng.integers(0, n, m)
        g = nx.Graph()
        g.add_edges_from(zip(a.tolist(), b.tolist(), strict=True))
        ref = sorted(sorted(c) for c in nx.connected_components(g))
        got = components(n, a, b)
        assert got == ref
        assert [c[0] for c in got] == sorted(c[0] for c in got)
