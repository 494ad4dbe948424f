"""What the user can get wrong around the encoder: a clear ConstraintlabError (CLI exit 2), and
nothing written before is lost or corrupted.

- ``--out`` that is a file; an existing store whose manifest is not JSON / not an object;
- a model directory whose ``pytorch_model.bin`` torch refuses to unpickle (weights only);
- CLI: the same cases exit 2 with the message and no traceback.
(Truncated shards and records whose target is truncated away: tests/test_encode_input_dependence.)
"""

from __future__ import annotations

import fractions
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_models import build_model, gsm8k_records

from constraintlab.encode import EncodeConfig, Encoder, FeatureStore, extract
from constraintlab.encode.store import open_matching_store
from constraintlab.errors import ConfigError, ConstraintlabError, StoreMismatchError
from constraintlab.io import read_examples

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("enc_errors")
    model = build_model("qwen3", root / "model", seed=5)
    data = root / "data.jsonl"
    recs = [r for r in gsm8k_records(30) if len(r["question"]) + len(r["answer"]) < 300][:4]
    data.write_text("".join(json.dumps(r) + "\n" for r in recs))
    enc = Encoder(EncodeConfig(model=str(model), k=8))
    return root, model, data, enc


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def cli(*args: str) -> subprocess.CompletedProcess:
    penv = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "constraintlab", *args], capture_output=True,
                          text=True, env=penv, timeout=300)


def test_out_that_is_a_file_is_refused_untouched(env, tmp_path):
    _root, _model, data, enc = env
    target = tmp_path / "features"
    target.write_text("my notes")
    for overwrite in (False, True):
        with pytest.raises(ConfigError, match="is a file, not a directory"):
            extract(read_examples(data), enc.config, target, encoder=enc, overwrite=overwrite)
    assert target.read_text() == "my notes"
    with pytest.raises(ConfigError, match="cannot write the feature store"):
        extract(read_examples(data), enc.config, target / "sub", encoder=enc)
    assert target.read_text() == "my notes"


@pytest.mark.parametrize("manifest", ["{\"format\": \"constraintlab.feat", "[1, 2, 3]", "null",
                                      "\"text\"", "\xff\xfe"])
def test_damaged_manifest_is_refused_and_kept(env, tmp_path, manifest):
    _root, _model, data, enc = env
    ds = read_examples(data)
    out = tmp_path / "s"
    extract(ds, enc.config, out, encoder=enc)
    (out / "manifest.json").write_text(manifest, encoding="latin-1")
    before = snapshot(out)
    with pytest.raises(StoreMismatchError, match=r"manifest\.json is damaged"):
        extract(ds, enc.config, out, encoder=enc)
    with pytest.raises(StoreMismatchError, match="damaged"):
        FeatureStore.open(out)
    assert open_matching_store(out, enc.config, ds.content_hash, len(ds)) is None
    assert snapshot(out) == before                        # nothing deleted or rewritten
    rebuilt = extract(ds, enc.config, out, encoder=enc, overwrite=True)
    assert len(rebuilt) == len(ds)


def test_damaged_store_files_are_a_clear_error(env, tmp_path):
    _root, _model, data, enc = env
    out = tmp_path / "s"
    extract(read_examples(data), enc.config, out, encoder=enc)
    (out / "features.npy").write_bytes(b"\x93NUMPY trunc")
    with pytest.raises(StoreMismatchError, match="damaged"):
        FeatureStore.open(out)


@pytest.fixture(scope="module")
def pickled_model(env):
    root, model, _data, _enc = env
    path = root / "pickled"
    shutil.copytree(model, path)
    from transformers import AutoModelForCausalLM

    state = AutoModelForCausalLM.from_pretrained(str(model)).state_dict()
    state["note"] = fractions.Fraction(1, 3)   # a Python object: not loadable weights-only
    (path / "model.safetensors").unlink()
    torch.save(state, path / "pytorch_model.bin")
    return path


def test_pickled_checkpoint_refused_with_what_to_do(pickled_model):
    with pytest.raises(ConfigError) as info:
        Encoder(EncodeConfig(model=str(pickled_model), k=8))
    msg = str(info.value)
    assert "pytorch_model.bin is a pickled PyTorch checkpoint" in msg
    assert "fractions.Fraction" in msg and "safetensors" in msg
    assert "\x1b" not in msg


def test_cli_exit_2_without_traceback(env, pickled_model, tmp_path):
    _root, model, data, _enc = env
    out_file = tmp_path / "a_file"
    out_file.write_text("keep")
    runs = {
        "out is a file": (["extract", str(data), "--model", str(model), "--out", str(out_file),
                           "-q"], "is a file, not a directory"),
        "pickled model": (["extract", str(data), "--model", str(pickled_model), "--out",
                           str(tmp_path / "x"), "-q"], "pickled PyTorch checkpoint"),
    }
    store = tmp_path / "store"
    (store / "shards").mkdir(parents=True)
    (store / "manifest.json").write_text("[]")
    runs["manifest not an object"] = (["extract", str(data), "--model", str(model), "--out",
                                       str(store), "-q"], "manifest.json is damaged")
    for name, (args, expected) in runs.items():
        proc = cli(*args)
        assert proc.returncode == 2, (name, proc.stderr[-2000:])
        assert expected in proc.stderr, (name, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr, name
    assert out_file.read_text() == "keep"
    assert (store / "manifest.json").read_text() == "[]"


def test_constraintlab_errors_only(env):
    # every refusal above is a ConstraintlabError (what the CLI turns into exit 2)
    assert issubclass(StoreMismatchError, ConstraintlabError)
    assert issubclass(ConfigError, ConstraintlabError)
