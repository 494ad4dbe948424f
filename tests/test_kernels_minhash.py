"""MinHash kernels against their NumPy twins and against set arithmetic."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from constraintlab._kernels.minhash import (
    band_keys,
    band_keys_numpy,
    jaccard_pairs,
    jaccard_pairs_numpy,
    minhash_signatures,
    minhash_signatures_numpy,
    shingle_hashes,
    shingle_hashes_numpy,
    sorted_unique,
    sorted_unique_numpy,
)
from constraintlab.analysis.lexical import candidate_pairs, permutations
from constraintlab.analysis.text import corpus_bytes, normalize_many

TEXTS = [
    "the cat sat on the mat",
    "the cat sat on the mat",
    "the cat sat on a mat",
    "",
    "one",
    "two words",
    "naïve café straße 72",
    "a b c d e f g h i j k l",
]


def _shingled(texts, size):
    buf, s, e = corpus_bytes(normalize_many(texts))
    return buf, s, e, shingle_hashes(buf, s, e, size)


def test_shingles_match_twin_and_set_semantics():
    buf, s, e, (h, o) = _shingled(TEXTS, 3)
    h2, o2 = shingle_hashes_numpy(buf, s, e, 3)
    np.testing.assert_array_equal(h, h2)
    np.testing.assert_array_equal(o, o2)
    sizes = np.diff(o)
    # distinct word 3-grams per text; short texts get one shingle, the empty text none
    expect = []
    for t in normalize_many(TEXTS):
        w = t.split()
        expect.append(len({tuple(w[i:i + 3]) for i in range(len(w) - 2)}) if len(w) >= 3
                      else int(len(w) > 0))
    np.testing.assert_array_equal(sizes, expect)
    assert np.array_equal(h[o[0]:o[1]], h[o[1]:o[2]])  # identical texts, identical sets
    for d in range(len(TEXTS)):
        seg = h[o[d]:o[d + 1]]
        assert (np.diff(seg.astype(np.int64)) > 0).all()  # sorted unique


def test_signatures_bands_jaccard_match_twins():
    _, _, _, (h, o) = _shingled(TEXTS, 2)
    a, b = permutations(64, 3)
    sig = minhash_signatures(h, o, a, b)
    np.testing.assert_array_equal(sig, minhash_signatures_numpy(h, o, a, b))
    assert (sig[3] == 0xFFFFFFFF).all()  # empty document
    np.testing.assert_array_equal(band_keys(sig, 8, 8), band_keys_numpy(sig, 8, 8))
    pa, pb = np.triu_indices(len(TEXTS), 1)
    pa, pb = pa.astype(np.int64), pb.astype(np.int64)
    j = jaccard_pairs(h, o, pa, pb)
    np.testing.assert_allclose(j, jaccard_pairs_numpy(h, o, pa, pb), rtol=0, atol=1e-15)
    # against Python sets of word bigrams
    norm = normalize_many(TEXTS)

    def grams(t):
        w = t.split()
        return {tuple(w[i:i + 2]) for i in range(len(w) - 1)} if len(w) >= 2 else (
            {tuple(w)} if w else set())

    for x, y, v in zip(pa, pb, j, strict=True):
        A, B = grams(norm[x]), grams(norm[y])
        ref = 1.0 if not (A | B) else len(A & B) / len(A | B)
        assert abs(v - ref) < 1e-12


def test_minhash_estimates_jaccard():
    """The share of equal signature slots estimates the Jaccard (unbiased, sd ~ 1/sqrt(p))."""
    rng = np.random.default_rng(1)
    vocab = [f"w{i}" for i in range(400)]
    base = list(rng.choice(vocab, 300))
    other = base[:200] + list(rng.choice(vocab, 100))
    _, _, _, (h, o) = _shingled([" ".join(base), " ".join(other)], 1)
    a, b = permutations(1024, 0)
    sig = minhash_signatures(h, o, a, b)
    est = (sig[0] == sig[1]).mean()
    true = jaccard_pairs(h, o, np.array([0]), np.array([1]))[0]
    assert abs(est - true) < 4 / np.sqrt(1024)


def test_candidate_pairs_from_buckets():
    keys = np.array([[1, 9], [2, 9], [1, 7], [3, 3], [4, 3]], dtype=np.uint64)
    a, b = candidate_pairs(keys)
    assert list(zip(a.tolist(), b.tolist(), strict=True)) == [(0, 1), (0, 2), (3, 4)]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.text(alphabet="ab cdÉé,.\u00a0\u2019x", max_size=40), min_size=1,
                max_size=12), st.integers(1, 4))
def test_shingles_twin_property(texts, size):
    buf, s, e, (h, o) = _shingled(texts, size)
    h2, o2 = shingle_hashes_numpy(buf, s, e, size)
    np.testing.assert_array_equal(h, h2)
    np.testing.assert_array_equal(o, o2)
    n = len(texts)
    pa, pb = np.triu_indices(n, 1)
    j = jaccard_pairs(h, o, pa.astype(np.int64), pb.astype(np.int64))
    assert ((j >= 0) & (j <= 1)).all()


def test_raw_shingles_and_sorted_unique_subset_match_twins():
    buf, s, e, (h_set, o_set) = _shingled(TEXTS, 2)
    h, o = shingle_hashes(buf, s, e, 2, False)
    h2, o2 = shingle_hashes_numpy(buf, s, e, 2, False)
    np.testing.assert_array_equal(h, h2)
    np.testing.assert_array_equal(o, o2)
    docs = np.array([7, 0, 3, 6], dtype=np.int64)
    got = sorted_unique(h, o, docs)
    ref = sorted_unique_numpy(h, o, docs)
    for a, b in zip(got, ref, strict=True):
        np.testing.assert_array_equal(a, b)
    for i, d in enumerate(docs):  # the subset sets equal the full sets
        np.testing.assert_array_equal(got[0][got[1][i]:got[1][i + 1]],
                                      h_set[o_set[d]:o_set[d + 1]])
    # signatures of raw hashes (with repeats) equal those of the sets
    a, b = permutations(32, 1)
    np.testing.assert_array_equal(minhash_signatures(h, o, a, b),
                                  minhash_signatures(h_set, o_set, a, b))
