"""Exactness: batched hook gradients == a plain per-example ``loss.backward()`` loop.

Reference per example: Hugging Face's own loss (``labels`` = -100 outside the target, i.e. the
mean NLL over target tokens) and ``torch.autograd.grad`` over the LoRA parameters in
``named_parameters`` order, one example at a time, unpadded. Models are tiny Qwen3 / Llama /
GPT-2 built from configs, saved and reloaded by path, run in float64.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import build_model, gsm8k_records

from constraintlab.encode import EncodeConfig, Encoder
from constraintlab.encode.projection import random_matrix
from constraintlab.io.example import Example, Message

ARCHS = ("qwen3", "llama", "gpt2")


def make_examples() -> list[Example]:
    """Chat (system/user/assistant, multi-turn with two targets) and prompt-completion
    examples of different lengths."""
    recs = gsm8k_records(6, offset=20)
    out = []
    for i, r in enumerate(recs):
        q, a = r["question"], r["answer"]
        if i % 3 == 0:
            msgs = (Message("system", "Answer briefly."), Message("user", q),
                    Message("assistant", a))
            out.append(Example(i, i + 1, "<records>", "chat", msgs, (2,), True, {}))
        elif i % 3 == 1:
            msgs = (Message("user", q[:60]), Message("assistant", a.split("\n")[0]),
                    Message("user", "And then?"), Message("assistant", a[-30:]))
            out.append(Example(i, i + 1, "<records>", "chat", msgs, (1, 3), True, {}))
        else:
            msgs = (Message("user", q), Message("assistant", a))
            out.append(Example(i, i + 1, "<records>", "prompt_completion", msgs, (1,), False, {}))
    return out


def reference(model, encoded) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-example loop: gradients (N, P), losses (N,), input and output factors (N, d)."""
    params = [p for n, p in model.named_parameters() if "lora_" in n]
    for p in params:
        p.requires_grad_(True)
    grads, losses, inp, outp = [], [], [], []
    try:
        for e in encoded:
            ids = torch.as_tensor(e.input_ids)[None]
            labels = ids.clone()
            labels[0, ~torch.as_tensor(e.target_mask)] = -100
            out = model(input_ids=ids, labels=labels, output_hidden_states=True)
            hidden = out.hidden_states[-1]
            g = torch.autograd.grad(out.loss, [*params, hidden])
            grads.append(torch.cat([x.flatten() for x in g[:-1]]).numpy())
            losses.append(out.loss.item())
            outp.append(g[-1][0].sum(0).numpy())
            m = ~torch.as_tensor(e.target_mask)
            inp.append(hidden[0, m].mean(0).detach().numpy())
    finally:
        for p in params:
            p.requires_grad_(False)
    return np.array(grads), np.array(losses), np.array(inp), np.array(outp)


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("grad_models")
    return {a: build_model(a, root / a, seed=3) for a in ARCHS}


def trained_adapter(encoder: Encoder, path, seed: int = 5):
    """Save a copy of ``encoder``'s adapter with random non-zero A and B."""
    gen = torch.Generator().manual_seed(seed)
    model = encoder.loaded.model
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.2)
    model.save_pretrained(path)
    return str(path)


@pytest.mark.parametrize("arch", ARCHS)
def test_batched_equals_loop_fresh_and_trained(arch, models, tmp_path):
    targets = None if arch == "gpt2" else ("q_proj", "v_proj", "down_proj")
    cfg = EncodeConfig(model=str(models[arch]), dtype="float64", projection="none",
                       target_modules=targets, lora_r=4, batch_size=8, max_batch_tokens=4096)
    enc = Encoder(cfg)
    assert not any(s.trained for s in enc.loaded.sites)     # standard init: B = 0
    examples = make_examples()
    encoded = enc.encode(examples)
    assert len({e.n_tokens for e in encoded}) >= 4               # different lengths
    assert len(enc.plan(encoded)) == 1                          # ... in one batch
    assert {e.template for e in encoded} == ({"plain"} if arch == "gpt2" else {"chat", "plain"})

    for stage in ("fresh", "trained"):
        if stage == "trained":
            cfg = EncodeConfig(model=str(models[arch]), dtype="float64", projection="none",
                               adapter=trained_adapter(enc, tmp_path / "adapter"),
                               batch_size=8, max_batch_tokens=4096)
            enc = Encoder(cfg)
            assert all(s.trained for s in enc.loaded.sites)
        res = enc.compute(encoded)
        ref_g, ref_loss, ref_in, ref_out = reference(enc.loaded.model, encoded)
        assert res.features.shape == (len(examples), enc.loaded.n_params)
        for i in range(len(examples)):
            assert rel(res.features[i], ref_g[i]) < 1e-5, (stage, i)
        np.testing.assert_allclose(res.loss, ref_loss, rtol=1e-6)  # HF upcasts logits to fp32
        np.testing.assert_allclose(res.grad_norm, np.linalg.norm(ref_g, axis=1), rtol=1e-5)
        np.testing.assert_allclose(res.energy.sum(1), res.grad_norm ** 2, rtol=1e-10)
        np.testing.assert_allclose(res.input_factors, ref_in, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(res.output_factors, ref_out, rtol=1e-5, atol=1e-9)
        # A-gradients are exactly zero at B = 0 and not at a trained adapter
        offset, a_norm = 0, 0.0
        for s in enc.loaded.sites:
            n_a = s.r * s.in_features
            a_norm += float(np.abs(ref_g[:, offset:offset + n_a]).sum())
            offset += s.n_params
        assert (a_norm == 0.0) == (stage == "fresh")


def test_energy_per_site_matches_loop(models):
    cfg = EncodeConfig(model=str(models["qwen3"]), dtype="float64", projection="none",
                       target_modules=("q_proj", "o_proj", "up_proj"), lora_r=2)
    enc = Encoder(cfg)
    encoded = enc.encode(make_examples()[:3])
    res = enc.compute(encoded)
    ref_g = reference(enc.loaded.model, encoded)[0]
    offset = 0
    for j, s in enumerate(enc.loaded.sites):
        block = ref_g[:, offset:offset + s.n_params]
        np.testing.assert_allclose(res.energy[:, j], (block ** 2).sum(1), rtol=1e-5)
        offset += s.n_params
    assert [s.kind for s in enc.loaded.sites[:3]] == [
        "self_attn.q_proj", "self_attn.o_proj", "mlp.up_proj"]
    assert [s.layer for s in enc.loaded.sites] == [0, 0, 0, 1, 1, 1]


def test_projected_features_equal_explicit_dense_map(models, tmp_path):
    """The factorised projection equals S @ g with S built row by row from the same seed
    (trained adapter, so both A- and B-blocks of S are exercised)."""
    path = str(models["gpt2"])
    fresh = Encoder(EncodeConfig(model=path, dtype="float64", projection="none", lora_r=2))
    adapter = trained_adapter(fresh, tmp_path / "adapter")
    raw_enc = Encoder(EncodeConfig(model=path, dtype="float64", projection="none",
                                   adapter=adapter))
    k = 16
    proj_enc = Encoder(EncodeConfig(model=path, dtype="float64", projection="gaussian", k=k,
                                    adapter=adapter, seed=11))
    encoded = raw_enc.encode(make_examples()[:4])
    raw = raw_enc.compute(encoded).features
    got = proj_enc.compute(encoded).features
    blocks = []
    for s in raw_enc.loaded.sites:
        for factor, (p, q) in (("A", (s.r, s.in_features)), ("B", (s.out_features, s.r))):
            left = random_matrix("gaussian", 11, (k, p), s.name, factor, "left")
            right = random_matrix("gaussian", 11, (k, q), s.name, factor, "right")
            blocks.append(np.stack([np.outer(left[j], right[j]).ravel() for j in range(k)]))
    dense = np.concatenate(blocks, axis=1) / np.sqrt(k)       # (k, P)
    assert dense.shape[1] == raw.shape[1]
    np.testing.assert_allclose(got, raw @ dense.T, rtol=1e-9, atol=1e-12)
