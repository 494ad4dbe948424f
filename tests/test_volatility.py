"""Token volatility: per-token NLL and rank from the encoder against a plain forward pass, and the
volatility statistics against a direct NumPy computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tiny_models import build_model, gsm8k_records
from transformers import AutoModelForCausalLM

from constraintlab.analysis import AnalysisConfig, analyze_volatility, token_statistics
from constraintlab.encode import EncodeConfig, Encoder, extract
from constraintlab.encode.store import TokenProfiles
from constraintlab.io.example import Example, Message


def make_examples() -> list[Example]:
    recs = gsm8k_records(5, offset=40)
    out = []
    for i, r in enumerate(recs):
        if i % 2 == 0:
            msgs = (Message("user", r["question"]), Message("assistant", r["answer"]))
            out.append(Example(i, i + 1, "<records>", "chat", msgs, (1,), True, {}))
        else:
            msgs = (Message("user", r["question"][:80]), Message("assistant", r["answer"][:90]))
            out.append(Example(i, i + 1, "<records>", "prompt_completion", msgs, (1,), False, {}))
    return out


@pytest.fixture(scope="module", params=["qwen3", "gpt2"])
def setup(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"vol_{request.param}")
    path = build_model(request.param, root / "model", seed=2)
    examples = make_examples()
    cfg = EncodeConfig(model=str(path), k=64, batch_size=3)
    store = extract(examples, cfg, root / "store")
    encoded = Encoder(cfg).encode(examples)
    return path, examples, store, encoded


def direct(path, encoded) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-token NLL and rank from one unbatched forward pass of the plain model."""
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    nlls, ranks = [], []
    with torch.no_grad():
        for e in encoded:
            logits = model(input_ids=torch.as_tensor(e.input_ids)[None]).logits[0].double()
            pos = np.flatnonzero(e.target_mask)
            pos = pos[pos >= 1]
            z = logits[pos - 1]                                   # position p-1 predicts p
            y = torch.as_tensor(e.input_ids[pos])
            nlls.append((-torch.log_softmax(z, -1).gather(1, y[:, None])[:, 0]).numpy())
            picked = z.gather(1, y[:, None])
            ranks.append((z > picked).sum(1).numpy())
    return nlls, ranks


def test_token_nll_and_rank_match_plain_forward(setup):
    path, examples, store, encoded = setup
    tok = store.tokens
    nlls, ranks = direct(path, encoded)
    assert list(tok.counts) == [len(x) for x in nlls]
    for row in range(len(examples)):
        a, b = tok.offsets[row], tok.offsets[row + 1]
        np.testing.assert_allclose(tok.nll[a:b], nlls[row], rtol=2e-5, atol=2e-5)
        assert np.array_equal(tok.rank[a:b], ranks[row])
        e = encoded[row]
        assert np.array_equal(tok.ids[a:b], e.input_ids[1:][e.target_mask[1:]])
    # the store's loss is the mean of the token NLLs
    np.testing.assert_allclose(store.table["loss"], [x.mean() for x in nlls], rtol=1e-5)


def test_token_pieces_spell_the_target(setup):
    _, examples, store, _ = setup
    for row, ex in enumerate(examples):
        text = "".join(store.tokens.pieces(row))
        assert ex.target_text.strip()[:40] in text
        assert len(store.tokens.pieces(row)) == store.tokens.counts[row]


def test_full_logits_path_gives_the_same_tokens(setup):
    path, _, _, encoded = setup
    enc = Encoder(EncodeConfig(model=str(path), k=64))
    split = enc.compute(encoded)
    enc.engine.split_head = False
    full = enc.compute(encoded)
    np.testing.assert_allclose(full.token_nll, split.token_nll, rtol=1e-5, atol=1e-6)
    assert np.array_equal(full.token_rank, split.token_rank)
    assert np.array_equal(full.token_counts, split.token_counts)


def test_volatility_statistics_against_direct_computation(setup):
    path, _, store, encoded = setup
    nlls, ranks = direct(path, encoded)
    grad = store.table["grad_norm"].to_numpy()
    vocab = store.manifest["vocab_size"]
    for k in (1, 10):
        cfg = AnalysisConfig(volatility_top_k=k, volatility_weights=(1, 2, 3, 4),
                             volatility_list=3, volatility_tokens=2)
        res = analyze_volatility(store.tokens, grad, vocab_size=vocab, config=cfg)
        t = res.table
        miss = np.array([(r >= k).mean() for r in ranks])
        assert np.array_equal(t["topk_miss_share"].to_numpy(), miss)   # exact
        mean = np.array([x.mean() for x in nlls])
        mx = np.array([x.max() for x in nlls])
        np.testing.assert_allclose(t["mean_nll"], mean, rtol=2e-5)
        np.testing.assert_allclose(t["max_nll"], mx, rtol=2e-5)
        lnv = math.log(vocab)
        parts = np.column_stack([mean / (mean + lnv), mx / (mx + lnv), miss,
                                 grad / (grad + np.median(grad))])
        score = parts @ np.array([1, 2, 3, 4]) / 10
        np.testing.assert_allclose(t["volatility"], score, rtol=2e-5)
        s = res.summary
        assert s["percentiles"]["volatility"]["p99"] == pytest.approx(
            np.percentile(t["volatility"], 99))
        listed = [e["id"] for e in s["most_volatile"]]
        assert listed == list(np.argsort(-t["volatility"].to_numpy(), kind="stable")[:3])
        first = s["most_volatile"][0]
        row = first["id"]
        worst = np.argsort(-nlls[row], kind="stable")[:2]
        assert [x["position"] for x in first["tokens"]] == list(worst)
        assert [x["text"] for x in first["tokens"]] == [store.tokens.pieces(row)[w]
                                                         for w in worst]


def test_token_statistics_on_a_hand_built_profile():
    offsets = np.array([0, 3, 4, 8])
    nll = np.array([0.1, 2.0, 0.5, 7.0, 1.0, 1.0, 3.0, 0.0])
    rank = np.array([0, 12, 3, 500, 0, 10, 9, 0])
    mean, mx, miss = token_statistics(offsets, nll, rank, 10)
    np.testing.assert_allclose(mean, [2.6 / 3, 7.0, 5.0 / 4])
    np.testing.assert_allclose(mx, [2.0, 7.0, 3.0])
    np.testing.assert_allclose(miss, [1 / 3, 1.0, 1 / 4])
    with pytest.raises(ValueError):
        token_statistics(np.array([0, 0, 2]), nll[:2], rank[:2], 10)


def test_token_profiles_save_load_and_subset(tmp_path):
    prof = TokenProfiles.from_lists([[0.5, 1.5], [2.0]], [[0, 4], [1]], [[7, 8], [9]],
                                    [["a\u2028b", " <c>"], ["\n"]])
    prof.save(tmp_path)
    back = TokenProfiles.load(tmp_path)
    assert back.pieces(0) == ["a\u2028b", " <c>"] and back.pieces(1) == ["\n"]
    assert np.array_equal(back.offsets, [0, 2, 3])
    sub = back.subset([1])
    assert sub.pieces(0) == ["\n"] and sub.nll.tolist() == [2.0]
    df = back.profile(0)
    assert df["rank"].tolist() == [0, 4] and df["token"].tolist() == ["a\u2028b", " <c>"]
