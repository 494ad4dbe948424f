"""Batching on the device: out-of-memory splitting, the token budget, activation checkpointing.

- A batch that runs out of memory (forced on CPU through ``GradientEngine.fault_hook``, which
  raises ``torch.OutOfMemoryError`` for batches above a size) is computed in halves: the store
  equals, number for number, a store built with batches that small from the start.
- :func:`token_budget` against the arithmetic of its docstring; :func:`resolve_batching` on a
  simulated CUDA device (free memory and the probe's peak given by the test).
- Activation checkpointing gives the same gradients as keeping activations (float64).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import build_model, gsm8k_records

from constraintlab.encode import EncodeConfig, Encoder, extract
from constraintlab.encode import budget as budget_mod
from constraintlab.encode.budget import (
    CPU_BATCH_SIZE,
    CPU_BATCH_TOKENS,
    EXTRA_BYTES,
    FREE_FRACTION,
    GIB,
    resolve_batching,
    token_budget,
)
from constraintlab.encode.gradients import is_out_of_memory
from constraintlab.errors import ConfigError
from constraintlab.io import read_examples


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return build_model("qwen3", tmp_path_factory.mktemp("m") / "model", hidden=32, layers=2,
                       seed=3)


@pytest.fixture(scope="module")
def data():
    return read_examples(gsm8k_records(10, offset=40))


def _oom_above(rows: int, seen: list):
    def hook(batch):
        seen.append(len(batch))
        if len(batch) > rows:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    return hook


def _assert_same_store(a, b):
    np.testing.assert_allclose(a.features, b.features, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(a.input_factors, b.input_factors, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(a.output_factors, b.output_factors, rtol=1e-5, atol=1e-7)
    for col in ("loss", "nll_noinput", "grad_norm"):
        np.testing.assert_allclose(a.table[col], b.table[col], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(a.tokens.nll, b.tokens.nll, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.tokens.nll_noinput, b.tokens.nll_noinput, rtol=1e-5,
                               atol=1e-6)
    assert np.array_equal(a.tokens.rank, b.tokens.rank)
    assert np.array_equal(a.tokens.offsets, b.tokens.offsets)


def test_out_of_memory_splits_and_the_store_equals_small_batches(model_path, data, tmp_path):
    cfg = EncodeConfig(model=str(model_path), k=64, batch_size=8, max_batch_tokens=4096)
    enc = Encoder(cfg)
    seen: list[int] = []
    enc.engine.fault_hook = _oom_above(2, seen)
    split = extract(data, cfg, tmp_path / "split", encoder=enc)
    assert enc.engine.n_splits >= 2                 # 8 -> 4 -> 2, at least
    assert max(seen) == 8 and enc.engine.failed_tokens is not None
    # later batches as large as a failed one are split before being tried
    assert seen.count(8) == 1
    small_cfg = EncodeConfig(model=str(model_path), k=64, batch_size=2, max_batch_tokens=4096)
    small = extract(data, small_cfg, tmp_path / "small")
    _assert_same_store(split, small)


def test_runtime_error_out_of_memory_is_split_other_errors_are_not(model_path, data):
    enc = Encoder(EncodeConfig(model=str(model_path), k=32, batch_size=4,
                               max_batch_tokens=4096))
    encoded = enc.encode(data.examples[:4])
    whole = enc.compute(encoded)

    def hook(batch):
        if len(batch) > 1:
            raise RuntimeError("CUDA error: out of memory")

    enc.engine.fault_hook = hook
    halves = enc.compute(encoded)
    np.testing.assert_allclose(halves.features, whole.features, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(halves.token_nll, whole.token_nll, rtol=1e-6)
    assert np.array_equal(halves.token_counts, whole.token_counts)

    def bad(batch):
        raise RuntimeError("shape mismatch")

    enc.engine.fault_hook = bad
    with pytest.raises(RuntimeError, match="shape mismatch"):
        enc.compute(encoded)
    assert is_out_of_memory(torch.OutOfMemoryError("x"))
    assert not is_out_of_memory(ValueError("out of memory"))


def test_one_example_out_of_memory_retries_with_checkpointing(model_path, data):
    enc = Encoder(EncodeConfig(model=str(model_path), dtype="float64", k=32,
                               batch_size=4, max_batch_tokens=4096))
    encoded = enc.encode(data.examples[:1])
    plain = enc.compute(encoded)

    def hook(batch):
        if not enc.engine.checkpointing:
            raise torch.OutOfMemoryError("CUDA out of memory")

    enc.engine.fault_hook = hook
    again = enc.compute(encoded)
    assert enc.engine.checkpointing
    np.testing.assert_allclose(again.features, plain.features, rtol=1e-10, atol=1e-13)

    def always(batch):
        raise torch.OutOfMemoryError("CUDA out of memory")

    enc.engine.fault_hook = always
    with pytest.raises(ConfigError, match="does not fit"):
        enc.compute(encoded)


def test_checkpointing_gives_the_same_gradients(model_path, data, monkeypatch):
    calls = []
    real = torch.utils.checkpoint.checkpoint

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", counting)
    base = dict(model=str(model_path), dtype="float64", k=48, batch_size=4,
                max_batch_tokens=4096)
    off = Encoder(EncodeConfig(**base))
    on = Encoder(EncodeConfig(**base, activation_checkpointing="on"))
    assert on.engine.checkpointing and not off.engine.checkpointing
    encoded = off.encode(data.examples[:6])
    a = off.compute(encoded)
    assert not calls
    b = on.compute(encoded)
    assert len(calls) == 2                          # both decoder blocks of the grad pass
    for name in ("features", "energy", "loss", "output_factors", "input_factors",
                 "token_nll", "token_nll_noinput"):
        np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=1e-10,
                                   atol=1e-13, err_msg=name)
    # and off again restores the plain forward
    on.engine.set_checkpointing(False)
    np.testing.assert_allclose(on.compute(encoded).features, a.features, rtol=1e-12)


def test_cpu_defaults_and_explicit_values(model_path):
    enc = Encoder(EncodeConfig(model=str(model_path), k=16))
    assert (enc.batch_size, enc.max_batch_tokens) == (CPU_BATCH_SIZE, CPU_BATCH_TOKENS)
    assert enc.batching.source == "cpu-default" and not enc.engine.checkpointing
    enc = Encoder(EncodeConfig(model=str(model_path), k=16, batch_size=3,
                               max_batch_tokens=2048, max_length=1024))
    assert (enc.batch_size, enc.max_batch_tokens) == (3, 2048)
    enc = Encoder(EncodeConfig(model=str(model_path), k=16, max_length=10000))
    assert enc.max_batch_tokens == 10000           # one longest example always fits


def test_token_budget_arithmetic():
    # the allowance is the smaller of 85 % of free and weights/4 + 6 GiB, less the fixed part
    tokens, small = token_budget(100 * GIB, 16 * GIB, 1 << 20, GIB, 2048)
    assert not small and tokens == (4 * GIB + EXTRA_BYTES - GIB) // (1 << 20)
    tokens, small = token_budget(10 * GIB, 16 * GIB, 1 << 20, 0, 2048)
    assert tokens == int(FREE_FRACTION * 10 * GIB) // (1 << 20)
    tokens, small = token_budget(2 * GIB, 16 * GIB, 4 << 20, 0, 2048)
    assert small and tokens == 2048                # not even one longest example fits
    tokens, _ = token_budget(1e15, 1e15, 1, 0, 2048)
    assert tokens == budget_mod.MAX_AUTO_TOKENS


class _FakeEngine:
    """What resolve_batching uses of a GradientEngine, on a simulated CUDA device."""

    def __init__(self, per_token: float, per_token_ckpt: float):
        self.device = torch.device("cuda")
        self.checkpointing = False
        self.per = {False: per_token, True: per_token_ckpt}
        self.loaded = type("L", (), {"model": torch.nn.Linear(1024, 1024, bias=False)})()
        self.probes = 0

    def set_checkpointing(self, on: bool) -> None:
        self.checkpointing = on

    def head_scratch_bytes(self) -> int:
        return 0

    def _run(self, batch):
        self.probes += 1
        n = sum(e.n_tokens for e in batch)
        _FakeEngine.peak = self.per[self.checkpointing] * n

    def _release(self) -> None:
        pass


@pytest.fixture
def fake_cuda(monkeypatch):
    free = {"bytes": 0}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (free["bytes"], 80 * GIB))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: None)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda *a: None)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda *a: None)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda *a: 0)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a: _FakeEngine.peak)
    return free


def test_resolve_batching_on_a_simulated_gpu(fake_cuda):
    fake_cuda["bytes"] = 60 * GIB
    eng = _FakeEngine(per_token=256 * 1024, per_token_ckpt=32 * 1024)
    wbytes = 1024 * 1024 * 4
    got = resolve_batching(EncodeConfig(device="cuda"), eng, 1000)
    expect = int((0.25 * wbytes + EXTRA_BYTES) // (256 * 1024 * 1.1))
    assert got.source == "cuda-free-memory" and got.batch_size is None
    assert abs(got.max_batch_tokens - expect) <= 1 and not got.checkpointing
    # an explicit budget wins, no probe runs
    eng.probes = 0
    got = resolve_batching(EncodeConfig(device="cuda", max_batch_tokens=5000), eng, 1000)
    assert (got.max_batch_tokens, got.source, eng.probes) == (5000, "config", 0)
    # too little memory for one max_length example: checkpointing is turned on (auto) ...
    fake_cuda["bytes"] = 1 * GIB
    eng = _FakeEngine(per_token=1 << 20, per_token_ckpt=64 * 1024)
    got = resolve_batching(EncodeConfig(device="cuda"), eng, 1000)
    assert got.checkpointing and eng.checkpointing
    assert abs(got.max_batch_tokens - int(FREE_FRACTION * GIB // (64 * 1024 * 1.1))) <= 1
    # ... and never with "off"
    eng = _FakeEngine(per_token=1 << 20, per_token_ckpt=64 * 1024)
    got = resolve_batching(EncodeConfig(device="cuda", activation_checkpointing="off"), eng,
                           1000)
    assert not got.checkpointing and got.max_batch_tokens == 2048


def test_probe_that_runs_out_of_memory_is_halved(fake_cuda):
    fake_cuda["bytes"] = 60 * GIB

    class Tight(_FakeEngine):
        def _run(self, batch):
            if sum(e.n_tokens for e in batch) > 512:
                raise torch.OutOfMemoryError("CUDA out of memory")
            super()._run(batch)

    eng = Tight(per_token=1 << 20, per_token_ckpt=1 << 16)
    per = budget_mod.measure_bytes_per_token(eng, 1000)
    assert per == pytest.approx((1 << 20) * 1.1) and eng.probes == 1

    class Never(_FakeEngine):
        def _run(self, batch):
            raise torch.OutOfMemoryError("CUDA out of memory")

    assert budget_mod.measure_bytes_per_token(Never(1, 1), 1000) == float("inf")
