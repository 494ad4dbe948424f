"""Half precision: bfloat16 / float16 weights against a float32 run of the same model.

Tolerances (stated in :mod:`constraintlab.encode.gradients`): per-example loss within 0.05
nats (mean absolute difference below 0.02), per-token NLL within 0.25 nats, projected features
at cosine >= 0.99 per example for bfloat16; float16 within 0.01 nats and cosine >= 0.999. The
float32 run is itself checked against float64 (1e-4). Also run: the CUDA logits path's fallback
(``torch.mm(out_dtype=)`` refused, half logits widened), which gives the same numbers.
"""

from __future__ import annotations

import numpy as np
import pytest
from tiny_models import build_model, gsm8k_records

from constraintlab.encode import EncodeConfig, Encoder
from constraintlab.io import read_examples

#: dtype -> (max |loss diff|, mean |loss diff|, max |token NLL diff|, min feature cosine,
#: max relative gradient-norm difference)
TOL = {"bfloat16": (0.05, 0.02, 0.25, 0.99, 0.05), "float16": (0.01, 0.004, 0.05, 0.999, 0.01),
       "float32": (1e-4, 1e-5, 1e-3, 0.999999, 1e-5)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    path = build_model("qwen3", tmp_path_factory.mktemp("m") / "model", hidden=64, layers=2,
                       intermediate=128, seed=5)
    data = read_examples(gsm8k_records(8, offset=60))
    out = {}
    for dtype in ("float64", "float32", "bfloat16", "float16"):
        enc = Encoder(EncodeConfig(model=str(path), dtype=dtype, k=256, batch_size=4))
        encoded = enc.encode(data.examples)
        out[dtype] = [enc.compute([encoded[i] for i in b]) for b in enc.plan(encoded)]
        if dtype == "bfloat16":
            enc.engine._mm_out_dtype = True        # the CUDA path, refused on CPU
            out["bfloat16-fallback"] = [enc.compute([encoded[i] for i in b])
                                        for b in enc.plan(encoded)]
            assert enc.engine._mm_out_dtype is False
    return out


def _cat(results, name):
    return np.concatenate([getattr(r, name) for r in results])


def _cosines(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_half_precision_within_tolerance(runs, dtype):
    ref = runs["float64"] if dtype == "float32" else runs["float32"]
    got = runs[dtype]
    max_loss, mean_loss, max_tok, min_cos, max_rel = TOL[dtype]
    d_loss = np.abs(_cat(got, "loss") - _cat(ref, "loss"))
    assert d_loss.max() <= max_loss and d_loss.mean() <= mean_loss, d_loss
    d_tok = np.abs(_cat(got, "token_nll") - _cat(ref, "token_nll"))
    assert d_tok.max() <= max_tok
    cos = _cosines(_cat(got, "features").astype(np.float64),
                   _cat(ref, "features").astype(np.float64))
    assert cos.min() >= min_cos, cos
    d_noinput = np.abs(_cat(got, "loss_noinput") - _cat(ref, "loss_noinput"))
    assert np.nanmax(d_noinput) <= max_loss
    # the per-example gradient norms
    rel = np.abs(_cat(got, "grad_norm") / _cat(ref, "grad_norm") - 1)
    assert rel.max() <= max_rel
    print(f"{dtype}: loss max {d_loss.max():.2e} mean {d_loss.mean():.2e}, token NLL max "
          f"{d_tok.max():.2e}, cosine min {cos.min():.6f}, grad norm rel {rel.max():.2e}")


def test_cuda_logits_fallback_is_the_same(runs):
    a, b = runs["bfloat16"], runs["bfloat16-fallback"]
    np.testing.assert_allclose(_cat(b, "token_nll"), _cat(a, "token_nll"), rtol=1e-6)
    np.testing.assert_allclose(_cat(b, "features"), _cat(a, "features"), rtol=1e-5,
                               atol=1e-8)
