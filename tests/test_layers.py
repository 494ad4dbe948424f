"""Layer map: per-site gradient energies against a per-example autograd loop, energies summing to
the squared gradient norm, and the dataset / zone maps against a pandas pivot of the same
numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from tiny_models import build_model, gsm8k_records

from constraintlab.analysis import AnalysisConfig, analyze_layers
from constraintlab.encode import EncodeConfig, Encoder, extract
from constraintlab.encode.store import parse_energy_column
from constraintlab.io.example import Example, Message

TARGETS = {"qwen3": ("q_proj", "v_proj", "o_proj", "up_proj", "down_proj"),
           "gpt2": ("c_attn", "c_proj", "c_fc")}
KINDS = {"qwen3": ["self_attn.q_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.up_proj",
                   "mlp.down_proj"],
         "gpt2": ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"]}


def make_examples(n: int = 6) -> list[Example]:
    out = []
    for i, r in enumerate(gsm8k_records(n, offset=60)):
        msgs = (Message("user", r["question"][:120]), Message("assistant", r["answer"][:150]))
        out.append(Example(i, i + 1, "<records>", "prompt_completion", msgs, (1,), False, {}))
    return out


@pytest.fixture(scope="module", params=["qwen3", "gpt2"])
def setup(request, tmp_path_factory):
    arch = request.param
    root = tmp_path_factory.mktemp(f"layers_{arch}")
    path = build_model(arch, root / "model", seed=4, layers=3)
    cfg = EncodeConfig(model=str(path), k=64, target_modules=TARGETS[arch], dtype="float64",
                       batch_size=4)
    examples = make_examples()
    store = extract(examples, cfg, root / "store")
    return arch, cfg, examples, store


def loop_energy(cfg, examples) -> np.ndarray:
    """(N, M) squared norm of each example's gradient on each LoRA site, one example at a time
    (mean NLL of the target tokens in float64; Hugging Face's own loss upcasts to float32 only)."""
    enc = Encoder(cfg)
    encoded = enc.encode(examples)
    model = enc.loaded.model
    sites = enc.loaded.sites
    params = [w for s in sites for w in (s.lora_A.weight, s.lora_B.weight)]
    for p in params:
        p.requires_grad_(True)
    out = np.zeros((len(encoded), len(sites)))
    for i, e in enumerate(encoded):
        ids = torch.as_tensor(e.input_ids)[None]
        pos = torch.as_tensor(np.flatnonzero(e.target_mask[1:]))        # predicts pos + 1
        logits = model(input_ids=ids).logits[0, pos]
        loss = -torch.log_softmax(logits, -1).gather(1, ids[0, pos + 1][:, None]).mean()
        grads = torch.autograd.grad(loss, params)
        for j in range(len(sites)):
            out[i, j] = float(grads[2 * j].pow(2).sum() + grads[2 * j + 1].pow(2).sum())
    return out


def test_site_energy_matches_autograd_loop_and_sums_to_grad_norm(setup):
    arch, cfg, examples, store = setup
    energy = store.energy
    assert energy.shape[1] == len(KINDS[arch]) * 3
    np.testing.assert_allclose(energy, loop_energy(cfg, examples), rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(energy.sum(1), store.table["grad_norm"] ** 2, rtol=1e-10)


def test_layer_maps_against_pandas_pivot(setup):
    arch, _, examples, store = setup
    n = len(examples)
    zones = np.array([0, 0, 1, 1, 1, -1])[:n]
    res = analyze_layers(store.energy, store.modules, zones=zones, zone_rank=[1, 0],
                         ids=store.table["index"].to_numpy(), config=AnalysisConfig())
    s = res.summary
    # independent reference: parse the store's column names, pivot with pandas
    cols = [c for c in store.table.columns if c.startswith("energy:")]
    long = pd.DataFrame([(i, *parse_energy_column(c), store.table[c].iloc[i]) for i in range(n)
                         for c in cols], columns=["row", "layer", "kind", "energy"])

    def pivot(rows) -> pd.DataFrame:
        sub = long[long["row"].isin(rows)]
        return sub.pivot_table(index="layer", columns="kind", values="energy", aggfunc="sum")

    ref = pivot(range(n)).loc[s["layers"], s["kinds"]].to_numpy()
    np.testing.assert_allclose(s["dataset"]["energy"], ref, rtol=1e-12)
    np.testing.assert_allclose(np.sum(s["dataset"]["share"]), 1.0)
    assert s["dataset"]["total"] == pytest.approx((store.table["grad_norm"] ** 2).sum(), rel=1e-10)
    assert s["layers"] == [0, 1, 2]
    assert sorted(s["kinds"]) == sorted(KINDS[arch])
    for z in (0, 1):
        zref = pivot(np.flatnonzero(zones == z)).loc[s["layers"], s["kinds"]].to_numpy()
        np.testing.assert_allclose(s["zones"][str(z)]["energy"], zref, rtol=1e-12)
    assert "-1" not in s["zones"]
    # an example's own map is its row; it sums to its squared gradient norm
    np.testing.assert_allclose(res.table.sum(1).to_numpy(), store.table["grad_norm"] ** 2,
                               rtol=1e-10)
    top = np.argmax(np.asarray(s["dataset"]["share"]).sum(0))
    assert s["dataset"]["top_kind"] == s["kinds"][top]


def test_analyze_store_builds_the_layer_map(setup):
    from constraintlab.analysis import analyze_store

    _, _, examples, store = setup
    res = analyze_store(store, examples=examples)
    assert res.layers is not None and res.volatility is not None and res.families is not None
    t = res.table()
    energy_cols = [c for c in t.columns if c.startswith("energy:")]
    np.testing.assert_allclose(t[energy_cols].sum(1), store.table["grad_norm"] ** 2, rtol=1e-10)
