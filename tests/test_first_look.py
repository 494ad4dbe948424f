"""Cheap first looks: ``limit``/``sample`` read the records asked for (reference: slicing and
the seeded numpy draw), and the shared store cache serves the same rows in any form (a path,
a list, a ``datasets.Dataset``) from any output folder, with the same results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import constraintlab
from constraintlab.cli.main import main
from constraintlab.io import read_examples

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "gsm8k_sample.jsonl"


def test_limit_and_sample_read_the_records_asked_for() -> None:
    whole = read_examples(SAMPLE)
    first = read_examples(SAMPLE, limit=7)
    assert [e.index for e in first] == list(range(7)) and first.n_records == 7
    assert [e.target_text for e in first] == [e.target_text for e in whole.examples[:7]]
    drawn = read_examples(SAMPLE, sample=9, sample_seed=4)
    want = sorted(np.random.default_rng(4).choice(len(whole), size=9, replace=False).tolist())
    assert [e.index for e in drawn] == want
    assert [e.target_text for e in drawn] == [whole[i].target_text for i in want]
    # a subset never shares the identity of the whole, nor of another subset
    hashes = {whole.content_hash, first.content_hash, drawn.content_hash,
              read_examples(SAMPLE, sample=9, sample_seed=5).content_hash}
    assert len(hashes) == 4
    assert read_examples(SAMPLE, limit=10_000).content_hash == whole.content_hash


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path, list[dict]]:
    from tiny_models import build_model, gsm8k_records

    root = tmp_path_factory.mktemp("first_look")
    rows = gsm8k_records(10)
    data = root / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return build_model("qwen3", root / "model"), data, rows


def test_the_cache_serves_the_same_rows_in_any_form(tiny, tmp_path, monkeypatch) -> None:
    import datasets

    import constraintlab.api as api

    model, data, rows = tiny
    cache = tmp_path / "cache"
    first = constraintlab.analyze(data, model=str(model), k=16, out=tmp_path / "a", cache=cache)
    assert first.data["run"]["feature_store_reused"] is False
    store = first.data["run"]["feature_store"]
    assert Path(store).parent == cache

    def no_extraction(*args, **kwargs):
        raise AssertionError("gradients were recomputed")

    monkeypatch.setattr(api, "extract", no_extraction)
    for again in (rows, datasets.Dataset.from_list(rows)):
        other = constraintlab.analyze(again, model=str(model), k=16, out=tmp_path / "b",
                                      cache=cache)
        assert other.data["run"]["feature_store"] == store
        assert other.data["run"]["feature_store_reused"] is True
        assert other.metrics() == first.metrics()
        assert np.array_equal(other.examples["loss"].to_numpy(),
                              first.examples["loss"].to_numpy())
    monkeypatch.undo()
    # another encoder setting is another store
    third = constraintlab.analyze(rows[:6], model=str(model), k=16, cache=cache)
    assert third.data["run"]["feature_store"] != store
    assert len(list(cache.iterdir())) == 2


def test_cli_limit_is_a_quick_look(tiny, tmp_path, capsys) -> None:
    model, data, _ = tiny
    out = tmp_path / "rep"
    code = main(["analyze", str(data), "--model", str(model), "-k", "16", "--limit", "6",
                 "--out", str(out), "--quiet", "--cache", str(tmp_path / "c")])
    assert code == 0, capsys.readouterr().err
    rep = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert rep["dataset"]["n_examples"] == 6 and rep["dataset"]["read_config"]["limit"] == 6
    manifest = json.loads((Path(rep["run"]["feature_store"]) / "manifest.json").read_text())
    assert manifest["dataset"]["n_examples"] == 6


def test_the_estimate_counts_tokens_and_work(tiny) -> None:
    """Tokens from a 64-example sample extrapolate to the exact count (reference: tokenising
    every example); the work is 4 P T + 2 P T_y with P the model's parameter count."""
    from tiny_models import gsm8k_records

    from constraintlab.encode import EncodeConfig
    from constraintlab.encode.estimate import EFFICIENCY, estimate_extraction
    from constraintlab.encode.extraction import Encoder

    model, _, _ = tiny
    enc = Encoder(EncodeConfig(model=str(model), k=8))
    examples = read_examples(gsm8k_records(200)).examples
    est = estimate_extraction(examples, enc.renderer, enc.loaded.model, k=8,
                              max_batch_tokens=512)
    exact = [enc.renderer.encode(ex, i)[0] for i, ex in enumerate(examples)]
    tokens = sum(e.n_tokens for e in exact)
    target = sum(e.n_target_tokens for e in exact)
    assert est.tokens == pytest.approx(tokens, rel=0.1)
    assert est.target_tokens == pytest.approx(target, rel=0.1)
    p = sum(t.numel() for t in enc.loaded.model.parameters())
    assert est.model_params == p
    assert est.flops == 4.0 * p * est.tokens + 2.0 * p * est.target_tokens
    assert est.rate > 0 and est.seconds == pytest.approx(est.flops / (est.rate * EFFICIENCY))
    assert "estimate: 200 examples" in est.line()
