"""Probe: a real LoRA update on chosen examples vs the first-order prediction.

References are independent of ``constraintlab.probe``: a second copy of the model (same
``lora_init_seed``, so the same adapter), per-example losses from the model's full logits and
per-example gradients from ``torch.autograd.grad``, one example at a time; the update applied
by hand.

Test setting for the correlation: tiny Qwen3 (hidden 32, 2 layers, LoRA r 8 on q/v), GSM8K
records 0-2 trained on, 8 probe examples sampled from records 3-15, float64,
**SGD, lr 1e-3, 1 step**:
Spearman(predicted, actual) >= 0.7 is required (about 1.0 is measured).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from tiny_models import build_model, gsm8k_records

from constraintlab.cli.main import main
from constraintlab.cli.probe import summary_lines
from constraintlab.encode import EncodeConfig
from constraintlab.encode.model import load_model
from constraintlab.encode.tokenize import Renderer
from constraintlab.errors import ConfigError
from constraintlab.io import read_examples
from constraintlab.probe import (
    ProbeConfig,
    parse_ids,
    probe,
    sample_rest,
    select,
    zone_members,
)

TRAIN = [0, 1, 2]
N_RECORDS = 16
PROBE_SIZE = 8


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    path = build_model("qwen3", root / "qwen3", hidden=32, layers=2)
    records = gsm8k_records(N_RECORDS)
    data = root / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    enc = EncodeConfig(model=str(path), dtype="float64")   # float32 is the CLI test's
    return {"root": root, "path": path, "data": data, "records": records, "enc": enc,
            "loaded": load_model(enc), "ref": _Reference(enc, records)}


class _Reference:
    """A second copy of the model; losses and gradients one example at a time."""

    def __init__(self, enc: EncodeConfig, records: list[dict]) -> None:
        self.loaded = load_model(enc)
        self.model = self.loaded.model
        self.params = [p for n, p in self.model.named_parameters() if "lora_" in n]
        self.theta0 = [p.detach().clone() for p in self.params]
        renderer = Renderer(self.loaded.tokenizer, max_length=enc.max_length)
        self.examples = read_examples(records).examples
        self.encoded = renderer.encode_all(self.examples)
        self._at_theta0: dict[int, tuple[float, torch.Tensor]] = {}

    def token_logp(self, i: int) -> torch.Tensor:
        """(n_target,) float64 log-probabilities of example i's predicted target tokens."""
        return self.forward(i)[0]

    def forward(self, i: int) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Target-token log-probabilities and every hidden state (1, T, d) of example i."""
        e = self.encoded[i]
        ids = torch.from_numpy(e.input_ids)[None]
        out = self.model(input_ids=ids, output_hidden_states=True)
        logits = out.logits[0, :-1].double()
        mask = torch.from_numpy(e.target_mask[1:])
        logp = torch.log_softmax(logits, dim=-1)
        return logp[mask].gather(1, ids[0, 1:][mask][:, None])[:, 0], out.hidden_states

    def at_theta0(self, i: int) -> tuple[float, torch.Tensor]:
        """Loss and flat gradient (P,) of example i at the initial adapter (cached)."""
        if i not in self._at_theta0:
            self._at_theta0[i] = self.loss_and_grad(i)
        return self._at_theta0[i]

    def loss_and_grad(self, i: int) -> tuple[float, torch.Tensor]:
        for p in self.params:
            p.requires_grad_(True)
        with torch.enable_grad():
            loss = -self.token_logp(i).mean()
            grads = torch.autograd.grad(loss, self.params)
        for p in self.params:
            p.requires_grad_(False)
        return float(loss.detach()), torch.cat([g.reshape(-1).double() for g in grads])

    def set_theta(self, flat: torch.Tensor) -> None:
        with torch.no_grad():
            at = 0
            for p in self.params:
                p.copy_(flat[at:at + p.numel()].reshape(p.shape).to(p.dtype))
                at += p.numel()

    def theta0_flat(self) -> torch.Tensor:
        return torch.cat([t.reshape(-1).double() for t in self.theta0])


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_identical(model, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    for k, v in after.items():
        assert torch.equal(v, before[k]), k
    assert not any(p.requires_grad for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())


@pytest.fixture(scope="module")
def sgd_run(setup):
    """SGD, lr 1e-3, 1 step on records 0-2; the model's state before and the result."""
    loaded = setup["loaded"]
    before = _state(loaded.model)
    cfg = ProbeConfig(optimizer="sgd", lr=1e-3, steps=1, probe_size=PROBE_SIZE, top_tokens=5)
    result = probe(setup["records"], examples=TRAIN, config=cfg, encode=setup["enc"],
                   loaded=loaded)
    return before, result


def test_sgd_matches_hand_computed_update_and_correlates(setup, sgd_run):
    before, result = sgd_run
    _assert_identical(setup["loaded"].model, before)
    ref = setup["ref"]
    t = result.table
    probe_ids = list(t.index)
    assert len(probe_ids) == PROBE_SIZE and not set(probe_ids) & set(TRAIN)
    g_train = torch.stack([ref.at_theta0(i)[1] for i in TRAIN]).mean(0)
    lr = 1e-3
    ref_before = [ref.at_theta0(j)[0] for j in probe_ids]
    ref_pred = [float(-lr * g_train @ ref.at_theta0(j)[1]) for j in probe_ids]
    with torch.no_grad():
        run0 = {j: ref.forward(j) for j in probe_ids}
        ref.set_theta(ref.theta0_flat() - lr * g_train)
        try:
            run1 = {j: ref.forward(j) for j in probe_ids}
        finally:
            ref.set_theta(ref.theta0_flat())
    ref_logp0 = {j: run0[j][0] for j in probe_ids}
    ref_logp1 = {j: run1[j][0] for j in probe_ids}
    ref_after = [float(-ref_logp1[j].mean()) for j in probe_ids]
    # Qwen3's RMSNorm computes in float32 even in a float64 model, so a padded batch (the
    # probe's training step) and single examples (the reference) agree to ~1e-8, not 1e-15;
    # the loss changes measured here are 1e-6 .. 1e-4.
    np.testing.assert_allclose(t["loss_before"], ref_before, rtol=0, atol=1e-10)
    np.testing.assert_allclose(t["loss_after"], ref_after, rtol=0, atol=2e-8)
    np.testing.assert_allclose(t["predicted_change"], ref_pred, rtol=1e-4, atol=1e-10)
    actual = np.array(ref_after) - np.array(ref_before)
    np.testing.assert_allclose(t["actual_change"], actual, rtol=0, atol=2e-8)
    assert np.abs(actual).min() > 1e-6
    rho = spearmanr(t["predicted_change"], t["actual_change"]).statistic
    assert result.spearman == pytest.approx(rho)
    assert result.spearman >= 0.7
    assert result.pearson >= 0.7
    # the most moved target token, against the reference's per-token log-probabilities
    deltas = {j: (ref_logp1[j] - ref_logp0[j]).numpy() for j in probe_ids}
    j_max = max(probe_ids, key=lambda j: np.abs(deltas[j]).max())
    top = result.summary["top_tokens"]
    assert len(top) == 5 and top[0]["example"] == j_max
    assert top[0]["delta_logp"] == pytest.approx(
        deltas[j_max][np.abs(deltas[j_max]).argmax()], abs=1e-5)
    assert abs(top[0]["delta_logp"]) >= abs(top[-1]["delta_logp"])
    # hidden-state drift: per layer, cosine before/after averaged over every probe token
    n_layers = len(run0[probe_ids[0]][1])
    cos = [sum(float(torch.nn.functional.cosine_similarity(
        run0[j][1][layer][0].double(), run1[j][1][layer][0].double(), dim=-1).sum())
        for j in probe_ids) / sum(ref.encoded[j].n_tokens for j in probe_ids)
        for layer in range(n_layers)]
    drift = [d["cosine"] for d in result.summary["drift"]]
    np.testing.assert_allclose(1 - np.array(drift), 1 - np.array(cos), rtol=1e-3, atol=1e-12)


def test_drift_per_layer(setup, sgd_run):
    _, result = sgd_run
    drift = result.summary["drift"]
    assert [d["layer"] for d in drift] == [0, 1, 2]       # embeddings + 2 blocks
    # LoRA does not touch the embeddings: cos(x, x) = 1 up to rounding (the drift is ~1e-4)
    assert drift[0]["cosine"] == pytest.approx(1.0, abs=1e-9)
    assert 1 - 1e-4 < drift[-1]["cosine"] < 1.0            # the update moved the last block


def test_adamw_prediction_and_bitwise_restore(setup):
    loaded, ref = setup["loaded"], setup["ref"]
    before = _state(loaded.model)
    cfg = ProbeConfig(steps=1, lr=1e-4, probe_size=5, top_tokens=0)   # AdamW defaults
    result = probe(setup["records"], examples=TRAIN, config=cfg, encode=setup["enc"],
                   loaded=loaded)
    _assert_identical(loaded.model, before)
    g_train = torch.stack([ref.at_theta0(i)[1] for i in TRAIN]).mean(0)
    step = -1e-4 * g_train / (g_train.abs() + 1e-8)     # Adam's first step
    pred = [float(ref.at_theta0(j)[1] @ step) for j in result.table.index]
    np.testing.assert_allclose(result.table["predicted_change"], pred, rtol=1e-4, atol=1e-10)
    # the real first AdamW step is the same elementwise step
    assert result.summary["update_norm"] == pytest.approx(float(step.norm()), rel=1e-4)
    assert result.summary["optimizer"] == {"name": "adamw", "lr": 1e-4, "betas": [0.9, 0.999],
                                           "eps": 1e-8, "weight_decay": 0.0, "steps": 1}
    assert result.summary["top_tokens"] == []
    json.loads(result.to_json())


def test_save_adapter_and_probe_file(setup):
    """--save-adapter writes the updated adapter (it reproduces ``loss_after``) and the model
    in memory is restored; a probe file's examples are measured with their own indices."""
    loaded = setup["loaded"]
    before = _state(loaded.model)
    out = setup["root"] / "adapter"
    probe_file = setup["root"] / "probe-set.jsonl"
    probe_file.write_text("".join(json.dumps(r) + "\n" for r in setup["records"][5:8]))
    cfg = ProbeConfig(optimizer="sgd", lr=1e-2, steps=2)
    result = probe(setup["records"], examples=TRAIN, probe_data=probe_file, config=cfg,
                   encode=setup["enc"], loaded=loaded, save_adapter=out)
    _assert_identical(loaded.model, before)
    assert list(result.table.index) == [0, 1, 2]
    assert result.summary["probe_source"] == str(probe_file)
    assert (out / "adapter_config.json").is_file()
    assert (out / "adapter_model.safetensors").is_file()
    assert result.summary["adapter_saved_to"] == str(out)
    trained = load_model(EncodeConfig(model=str(setup["path"]), adapter=str(out),
                                      dtype="float64"))
    assert trained.info["trained_adapter"]
    ref = setup["ref"]
    for j in result.table.index:
        e = ref.encoded[5 + j]                      # probe file row j = dataset record 5 + j
        assert result.table.loc[j, "loss_before"] == pytest.approx(ref.at_theta0(5 + j)[0],
                                                                   abs=1e-10)
        ids = torch.from_numpy(e.input_ids)[None]
        with torch.no_grad():
            logits = trained.model(input_ids=ids).logits[0, :-1].double()
        mask = torch.from_numpy(e.target_mask[1:])
        loss = torch.nn.functional.cross_entropy(logits[mask], ids[0, 1:][mask])
        assert float(loss) == pytest.approx(result.table.loc[j, "loss_after"], abs=1e-10)
    assert (result.table["loss_after"] != result.table["loss_before"]).all()


def test_summary_lines(setup, sgd_run):
    _, result = sgd_run
    text = "\n".join(summary_lines(result, argparse.Namespace(data="d.jsonl", out=None)))
    assert f"Spearman {result.spearman:.3f}" in text
    assert "sgd lr 0.001 x 1 step)" in text and "trained on: 0, 1, 2" in text
    helped = result.helped(5)
    assert list(helped.index) == list(result.table.sort_values("actual_change").index[:5])
    for i in helped.index[helped.actual_change < 0]:
        assert f"\n  {i:>7} " in text
    assert "hidden-state drift" in text and "layer   2" in text
    assert repr(result.summary["top_tokens"][0]["token"]) in text


def test_selection_helpers(setup):
    data = read_examples(setup["records"])
    assert parse_ids(" 3, 17,3 ,42") == [3, 17, 42]
    for bad in ("", " , ", "3,x", "-1"):
        with pytest.raises(ConfigError):
            parse_ids(bad)
    with pytest.raises(ConfigError, match="unknown example index 99"):
        select(data, [1, 99])
    a = sample_rest(data, TRAIN, 5, seed=1)
    assert [ex.index for ex in a] == [ex.index for ex in sample_rest(data, TRAIN, 5, seed=1)]
    assert len(a) == 5 and not {ex.index for ex in a} & set(TRAIN)
    assert [ex.index for ex in a] == sorted(ex.index for ex in a)
    assert len(sample_rest(data, TRAIN, 100, seed=0)) == N_RECORDS - len(TRAIN)
    with pytest.raises(ConfigError, match="every example"):
        sample_rest(data, range(N_RECORDS), 5, seed=0)
    report = {"zones": {"zones": [{"id": 0, "members": [4, 5]}, {"id": 1, "members": [1, 2]}]}}
    assert zone_members(report, 1) == [1, 2]
    with pytest.raises(ConfigError, match="zone 7 not found"):
        zone_members(report, 7)
    for bad in ({"optimizer": "lion"}, {"steps": 0}, {"lr": -1.0}, {"betas": (0.9, 1.0)},
                {"optimizer": "sgd", "weight_decay": 0.1}):
        with pytest.raises(ConfigError):
            ProbeConfig(**bad)


def _fake_report(directory: Path, base: Path) -> Path:
    """A real report directory (conftest's ``gate_report``) whose zones are replaced by two
    planted ones: zone 0 = examples 0, 1 and zone 1 = examples 5, 6."""
    import shutil

    shutil.copytree(base, directory)
    data = json.loads((directory / "report.json").read_text(encoding="utf-8"))
    data["zones"]["zones"] = [{**z, "id": i, "members": m} for i, (z, m) in enumerate(
        zip([{}, {}], [[0, 1], [5, 6]], strict=True))]
    (directory / "report.json").write_text(json.dumps(data), encoding="utf-8")
    return directory


def test_zones_are_read_through_the_report(tmp_path, gate_report):
    from constraintlab.report.report import Report

    directory = _fake_report(tmp_path / "r", gate_report)
    report = Report.load(directory)
    assert report.path == directory and Report.load(directory / "report.json").path == directory
    assert report.zone_members(1) == [5, 6]
    assert zone_members(str(directory), 0) == zone_members(report, 0) == [0, 1]
    with pytest.raises(ConfigError, match=r"zone 3 not found in the report \(zones: 0, 1\)"):
        report.zone_members(3)
    (directory / "report.json").write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read the analysis report"):
        zone_members(directory, 0)


def test_cli_user_errors_exit_2(setup, capsys, gate_report):
    data, model = str(setup["data"]), str(setup["path"])
    report = str(_fake_report(setup["root"] / "fake-report", gate_report))
    cases = [
        ([data, "--model", model], "--examples 3,17,42 or --zone"),
        ([data, "--model", model, "--examples", " , "], "selection is empty"),
        ([data, "--model", model, "--zone", "9", "--report", report], "zone 9 not found"),
        ([data, "--model", model, "--zone", "0", "--report", str(setup["root"] / "nope")],
         "no report.json"),
        ([data, "--model", model, "--examples", "1", "--report", report], "give --zone"),
        ([data, "--model", model, "--examples", "1", "--steps", "0"], "steps must be"),
    ]
    for argv, message in cases:
        assert main(["probe", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)
    proc = subprocess.run([sys.executable, "-m", "constraintlab", "probe", data, "--model", model,
                           "--examples", "2,400"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "unknown example index 400" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_zone_from_report_writes_json(setup, capsys, gate_report):
    report = str(_fake_report(setup["root"] / "zone-report", gate_report))
    out = setup["root"] / "probe.json"
    code = main(["probe", str(setup["data"]), "--model", str(setup["path"]), "--zone", "1",
                 "--report", report, "--optimizer", "sgd", "--lr", "1e-3", "--steps", "1",
                 "--probe-size", "4", "--top-tokens", "3", "--out", str(out), "--json"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads(out.read_text())
    assert printed == saved
    assert saved["train_examples"] == [5, 6]
    assert saved["n_probe"] == 4 and len(saved["examples"]) == 4
    assert not {row["index"] for row in saved["examples"]} & {5, 6}
    assert saved["optimizer"]["name"] == "sgd" and len(saved["top_tokens"]) == 3
    assert saved["adapter_saved_to"] is None
    assert saved["encode_config"]["dtype"] == "float32"
    assert [d["layer"] for d in saved["drift"]] == [0, 1, 2]
