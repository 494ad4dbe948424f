"""Feature store: layout, resume after kill -9, refusal of mismatched stores, CLI."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tiny_models import build_model, gsm8k_records

from constraintlab.cli import extract as extract_cli
from constraintlab.encode import EncodeConfig, Encoder, FeatureStore, extract
from constraintlab.errors import ConfigError, StoreMismatchError
from constraintlab.io import read_examples

ROOT = Path(__file__).resolve().parent.parent

DRIVER = textwrap.dedent("""
    import sys, time
    from constraintlab.encode import EncodeConfig, extract
    from constraintlab.encode.extraction import Encoder
    from constraintlab.io import read_examples
    model, data, out, delay = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    if delay:
        compute = Encoder.compute
        def slow(self, batch):
            result = compute(self, batch)
            time.sleep(delay)
            return result
        Encoder.compute = slow
    cfg = EncodeConfig(model=model, k=64, batch_size=2, max_batch_tokens=4096, seed=3)
    ds = read_examples(data)
    extract(ds, cfg, out, dataset_source=ds.source, content_hash=ds.content_hash)
""")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    model = build_model("qwen3", root / "model", seed=4)
    data = root / "data.jsonl"
    short = [r for r in gsm8k_records(60) if len(r["question"]) + len(r["answer"]) < 400]
    data.write_text("".join(json.dumps(r) + "\n" for r in short[:14]))
    driver = root / "driver.py"
    driver.write_text(DRIVER)
    return root, str(model), data, driver


def run_driver(env, out: Path, delay: float = 0.0) -> subprocess.Popen:
    _root, model, data, driver = env
    penv = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    return subprocess.Popen([sys.executable, str(driver), model, str(data), str(out),
                             str(delay)], env=penv, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def load_all(path: Path) -> dict:
    store = FeatureStore.open(path)
    return {"features": np.array(store.features), "in": np.array(store.input_factors),
            "out": np.array(store.output_factors), "table": store.table,
            "nll": store.tokens.nll, "nll_noinput": store.tokens.nll_noinput}


def test_killed_run_resumes_to_identical_store(env, tmp_path):
    killed = tmp_path / "killed"
    proc = run_driver(env, killed, delay=0.4)
    shards = killed / "shards"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if shards.exists() and len(list(shards.glob("*.npz"))) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = len(list(shards.glob("*.npz")))
    assert 2 <= n_before < 7                       # 14 examples, batches of 2
    with pytest.raises(StoreMismatchError, match="unfinished"):
        FeatureStore.open(killed)
    manifest = json.loads((killed / "manifest.json").read_text())
    assert manifest["complete"] is False

    # resume (here, in-process, with the driver's settings) and build an uninterrupted store
    _, model, data, _ = env
    cfg = EncodeConfig(model=model, k=64, batch_size=2, max_batch_tokens=4096, seed=3)
    enc = Encoder(cfg)
    ds = read_examples(data)
    extract(ds, cfg, killed, encoder=enc, dataset_source=ds.source, content_hash=ds.content_hash)
    extract(ds, cfg, tmp_path / "straight", encoder=enc, dataset_source=ds.source,
            content_hash=ds.content_hash)
    a, b = load_all(killed), load_all(tmp_path / "straight")
    for key in ("features", "in", "out", "nll", "nll_noinput"):
        assert a[key].dtype == np.float32 and np.array_equal(a[key], b[key]), key
    pd.testing.assert_frame_equal(a["table"], b["table"])
    for col in ("nll_noinput", "input_gain", "ifd"):      # input dependence, bit-identical
        assert np.array_equal(a["table"][col], b["table"][col]), col
    assert FeatureStore.open(killed).manifest["stats"]["examples_computed"] < 14
    assert not (killed / "shards").exists()


@pytest.fixture(scope="module")
def encoder(env):
    _, model, _, _ = env
    return Encoder(EncodeConfig(model=model, k=32, seed=1, target_modules=("q_proj", "v_proj",
                                                                           "down_proj")))


def test_store_layout_and_table(env, encoder, tmp_path):
    _, _, data, _ = env
    ds = read_examples(data)
    store = extract(ds, encoder.config, tmp_path / "s", encoder=encoder)
    n = len(ds)
    assert store.features.shape == (n, 32) and store.features.dtype == np.float32
    assert isinstance(store.features, np.memmap)
    d = encoder.engine.head.weight.shape[1]
    assert store.input_factors.shape == (n, d) and store.output_factors.shape == (n, d)
    t = store.table
    assert t["index"].tolist() == [ex.index for ex in ds.examples]
    assert t["line"].tolist() == [ex.line for ex in ds.examples]
    for col in ("loss", "n_target_tokens", "n_truncated", "truncated", "grad_norm"):
        assert col in t
    energy_cols = [c for c in t if c.startswith("energy:")]
    assert len(energy_cols) == 6                              # 3 module types x 2 layers
    np.testing.assert_allclose(t[energy_cols].sum(1), t["grad_norm"] ** 2, rtol=1e-5)
    by_layer, by_kind = store.energy_by("layer"), store.energy_by("kind")
    assert list(by_layer.columns) == [0, 1]
    assert sorted(by_kind.columns) == ["mlp.down_proj", "self_attn.q_proj", "self_attn.v_proj"]
    np.testing.assert_allclose(by_layer.sum(1).to_numpy(), by_kind.sum(1).to_numpy())
    assert store.n_params == encoder.loaded.n_params == sum(store.modules["n_params"])
    m = store.manifest
    assert m["dataset"]["content_hash"] == ds.content_hash
    assert m["dataset"]["path"] == ds.source
    assert m["projection"] == {"kind": "rademacher", "k": 32, "seed": 1}
    assert m["config"]["target_modules"] == ["q_proj", "v_proj", "down_proj"]
    assert m["model"]["weights"]["kind"] == "sha256"
    assert m["adapter_config"]["r"] == 8
    # features agree with a direct in-memory computation
    direct = encoder.compute(encoder.encode(ds.examples)).features
    np.testing.assert_allclose(store.features, direct, rtol=1e-5, atol=1e-6)


def test_mismatched_store_refused_and_complete_store_reused(env, encoder, tmp_path):
    _, model, data, _ = env
    ds = read_examples(data)
    out = tmp_path / "s"
    first = extract(ds, encoder.config, out, encoder=encoder)
    stamp = (out / "features.npy").stat().st_mtime_ns
    again = extract(ds, encoder.config, out, encoder=encoder)       # reused, not recomputed
    assert (out / "features.npy").stat().st_mtime_ns == stamp
    assert np.array_equal(first.features, again.features)
    other_data = read_examples(gsm8k_records(5, offset=100))
    with pytest.raises(StoreMismatchError, match="content_hash"):
        extract(other_data, encoder.config, out, encoder=encoder)
    other_cfg = EncodeConfig(model=model, k=16, seed=1,
                             target_modules=("q_proj", "v_proj", "down_proj"))
    with pytest.raises(StoreMismatchError, match=r"projection\.k: store has 32, now 16"):
        extract(ds, other_cfg, out, encoder=Encoder(other_cfg, loaded=encoder.loaded))
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("mine")
    with pytest.raises(StoreMismatchError, match="not a constraintlab feature store"):
        extract(ds, encoder.config, tmp_path / "junk", encoder=encoder, overwrite=True)
    rebuilt = extract(ds, other_cfg, out, encoder=Encoder(other_cfg, loaded=encoder.loaded),
                      overwrite=True)
    assert rebuilt.features.shape == (len(ds), 16)


def test_config_validation():
    with pytest.raises(ConfigError, match="projection"):
        EncodeConfig(projection="sparse")
    with pytest.raises(ConfigError, match="k must be a positive integer"):
        EncodeConfig(k=0)
    with pytest.raises(ConfigError, match="not both"):
        EncodeConfig(adapter="a", adapter_config="b")
    with pytest.raises(ConfigError, match="max_batch_tokens"):
        EncodeConfig(max_length=4096, max_batch_tokens=1024)
    assert EncodeConfig(target_modules=["q_proj"]).target_modules == ("q_proj",)


def test_reference_model_missing_is_a_clear_error(monkeypatch, tmp_path):
    from constraintlab.encode import model as model_mod

    monkeypatch.setattr(model_mod, "__file__", str(tmp_path / "encode" / "model.py"))
    with pytest.raises(ConfigError, match="reference model is not installed"):
        model_mod.resolve_model("constraintlab-reference")


def test_adapter_config_file_is_used(env, tmp_path):
    _, model, _data, _ = env
    cfg_path = tmp_path / "adapter_config.json"
    cfg_path.write_text(json.dumps({"peft_type": "LORA", "r": 2, "lora_alpha": 5,
                                    "target_modules": ["o_proj"], "lora_dropout": 0.1,
                                    "task_type": "CAUSAL_LM"}))
    enc = Encoder(EncodeConfig(model=model, adapter_config=str(cfg_path), k=8))
    assert [s.kind for s in enc.loaded.sites] == ["self_attn.o_proj"] * 2
    assert all(s.r == 2 and s.scaling == pytest.approx(2.5) for s in enc.loaded.sites)


def test_cli_extract(env, tmp_path, capsys):
    _, model, data, _ = env
    parser = argparse.ArgumentParser()
    extract_cli.register(parser.add_subparsers(dest="command"))
    out = tmp_path / "cli"
    args = parser.parse_args(["extract", str(data), "--model", model, "--out", str(out),
                              "-k", "24", "--lora-r", "4", "--target-modules", "q_proj",
                              "--max-length", "150", "-q"])
    assert args.func(args) == 0
    store = FeatureStore.open(out)
    assert store.features.shape == (14, 24)
    assert store.manifest["config"]["lora_r"] == 4
    assert store.table["truncated"].any()                    # --max-length 150 cuts some
    assert store.manifest["stats"]["n_truncated_examples"] == int(store.table["truncated"].sum())
    args = parser.parse_args(["extract", str(data), "--model", model, "--out", str(out),
                              "-k", "25", "--lora-r", "4", "--target-modules", "q_proj",
                              "--max-length", "150", "-q"])
    with pytest.raises(StoreMismatchError):
        args.func(args)


def test_plan_batches_buckets_by_length_within_budgets():
    from constraintlab.encode import plan_batches

    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 300, size=200).tolist()
    batches = plan_batches(lengths, batch_size=16, max_batch_tokens=1024)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(200))                  # every example exactly once
    for b in batches:
        assert len(b) <= 16
        assert len(b) * max(lengths[i] for i in b) <= 1024
    longest = [max(lengths[i] for i in b) for b in batches]
    assert longest == sorted(longest, reverse=True)          # sorted buckets, longest first
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert padded <= 1.1 * sum(lengths)                      # little padding
    assert plan_batches(lengths, 16, 1024) == batches        # deterministic


def test_store_of_another_format_is_not_reused_but_rebuilt(env, tmp_path):
    from constraintlab.api import analyze
    from constraintlab.encode.store import STORE_FORMAT, open_matching_store

    _, model, data, _ = env
    out = tmp_path / "report"
    first = analyze(str(data), model=model, out=out, k=32)
    store_dir = Path(first.data["run"]["feature_store"])
    manifest = json.loads((store_dir / "manifest.json").read_text())
    manifest["format"] = manifest["fingerprint"]["format"] = "constraintlab.features/1"
    (store_dir / "manifest.json").write_text(json.dumps(manifest))
    (store_dir / "tokens.npz").unlink()                     # format 1 had no token profiles
    ds = read_examples(data)
    cfg = EncodeConfig(model=model, k=32)
    assert open_matching_store(store_dir, cfg, ds.content_hash, len(ds)) is None
    with pytest.raises(StoreMismatchError, match="format"):
        extract(ds, cfg, store_dir)
    second = analyze(str(data), model=model, out=out, k=32)
    assert second.data["run"]["feature_store_reused"] is False
    rebuilt = FeatureStore.open(store_dir)
    assert rebuilt.manifest["format"] == STORE_FORMAT
    assert rebuilt.tokens is not None and len(rebuilt.tokens) == len(ds)


def test_store_is_reused_wherever_the_same_model_was_read_from(env, encoder, tmp_path):
    """peft records the base model's path in the adapter config: a store built from a checkout
    of the built-in model elsewhere (another path, same name and weights) is reused, not
    refused; any other difference still is."""
    _, _model, data, _ = env
    ds = read_examples(data)
    out = tmp_path / "s"
    extract(ds, encoder.config, out, encoder=encoder)
    manifest = json.loads((out / "manifest.json").read_text())
    adapter = manifest["fingerprint"]["adapter"]["config"]
    assert "base_model_name_or_path" in adapter
    adapter["base_model_name_or_path"] = "/elsewhere/constraintlab/reference/weights"
    (out / "manifest.json").write_text(json.dumps(manifest))
    stamp = (out / "features.npy").stat().st_mtime_ns
    extract(ds, encoder.config, out, encoder=encoder)                # reused
    assert (out / "features.npy").stat().st_mtime_ns == stamp
    adapter["r"] = adapter["r"] + 1                                  # a real difference
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreMismatchError, match=r"adapter\.config\.r: store has"):
        extract(ds, encoder.config, out, encoder=encoder)


def test_truncated_examples_are_a_gate_metric(env, tmp_path):
    """Examples cut at --max-length are counted in report.json (``dataset.truncated_examples``,
    equal to the extraction's own count) and a gate condition can fail on them."""
    import constraintlab
    from constraintlab.gate import check

    _, model, data, _ = env
    report = constraintlab.analyze(data, model=model, out=tmp_path / "rep", k=16,
                                   max_length=150)
    store = FeatureStore.open(report.data["run"]["feature_store"])
    want = store.manifest["stats"]["n_truncated_examples"]
    assert want > 0
    assert report.metrics()["truncated_examples"] == want
    assert report.data["dataset"]["truncated_examples"] == int(
        (report.examples["n_truncated"] > 0).sum())
    checks, _ = check(report, fail_on=["truncated_examples == 0"])
    assert not checks[0].passed
