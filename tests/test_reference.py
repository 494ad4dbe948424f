"""The shipped reference model: loads offline, is what model_info says, and has learned GSM8K.

Held-out losses are checked against baselines computed here, independently of the training
script: a unigram model of GSM8K train token frequencies (same tokenizer) and the same
architecture with random weights.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from constraintlab import reference

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
N_TEST_DOCS = 40
# Nats per token the trained model must beat the unigram baseline by. An untrained model is
# worse than the unigram model (about ln(vocab) = 8.3 vs 5.5 nats), the shipped one is
# about 2.8 nats better (see training.json and the README next to the weights).
MARGIN_NATS = 2.0

pytestmark = pytest.mark.skipif(not reference.is_installed(),
                                reason="reference weights not installed")


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(reference.weights_dir(), local_files_only=True)


@pytest.fixture(scope="module")
def model():
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(reference.weights_dir(), local_files_only=True)
    return m.eval()


def _rows(name: str) -> list[dict]:
    path = DATA_DIR / name
    if not path.is_file():
        pytest.skip(f"{path} missing (the shared GSM8K copy sits next to the repository)")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _test_sample() -> list[dict]:
    rows = _rows("gsm8k_test.jsonl")
    pick = np.random.default_rng(7).choice(len(rows), size=N_TEST_DOCS, replace=False)
    return [rows[i] for i in sorted(pick)]


@pytest.fixture(scope="module")
def unigram_logp(tokenizer) -> np.ndarray:
    """Add-one smoothed log-frequencies of GSM8K train tokens, ``(vocab,) float64``."""
    rows = _rows("gsm8k_train.jsonl")
    texts = [r["question"] + "\n\n" + r["answer"] for r in rows]
    ids = np.concatenate([np.asarray(d, dtype=np.int64) for d in
                          tokenizer(texts, add_special_tokens=False)["input_ids"]])
    counts = np.bincount(ids, minlength=len(tokenizer)).astype(np.float64) + 1.0
    return np.log(counts / counts.sum())


def _nll(model, docs: list[list[int]], masks: list[list[int]]) -> tuple[float, np.ndarray]:
    """Mean next-token NLL over the targets where ``mask`` is 1 (position 0 never a target).

    Returns the mean and the target ids, ``(n_targets,) int64``.
    """
    total, targets = 0.0, []
    with torch.no_grad():
        for ids, mask in zip(docs, masks, strict=True):
            x = torch.tensor([ids])
            logp = torch.log_softmax(model(input_ids=x).logits[0].double(), dim=-1)
            keep = torch.tensor(mask[1:], dtype=torch.bool)
            nxt = x[0, 1:]
            total -= float(logp[:-1].gather(1, nxt[:, None])[:, 0][keep].sum())
            targets.append(nxt[keep].numpy())
    targets = np.concatenate(targets)
    return total / len(targets), targets


def test_model_info_matches_files(model):
    info = reference.model_info()
    weights = reference.weights_dir() / "model.safetensors"
    assert info["name"] == reference.REFERENCE_MODEL_NAME == "constraintlab-reference"
    assert info["version"] == reference.REFERENCE_MODEL_VERSION
    assert info["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert info["n_params"] == sum(p.numel() for p in model.parameters())
    assert 5_000_000 <= info["n_params"] <= 10_000_000
    assert "--model" in info["note"]
    assert weights.stat().st_size < 40 * 2**20


def test_training_summary_documents_data_and_run():
    info = reference.model_info()["training"]
    for key in ("steps", "tokens_seen", "train_seconds", "final_train_loss", "heldout",
                "command", "data"):
        assert key in info
    assert {s["licence"] for s in info["data"]} == {"MIT"}
    assert not any("alpaca" in s["name"].lower() for s in info["data"])


def test_architecture_is_qwen3(model):
    cfg = model.config
    assert cfg.model_type == "qwen3"
    assert type(model).__name__ == "Qwen3ForCausalLM"
    assert cfg.tie_word_embeddings
    assert model.dtype == torch.float32


def test_tokenizer_special_tokens_and_roundtrip(tokenizer, model):
    vocab = tokenizer.get_vocab()
    for tok in ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"):
        assert tok in vocab
        assert tokenizer.convert_tokens_to_ids(tok) < model.config.vocab_size
    assert tokenizer.eos_token_id == model.config.eos_token_id
    assert tokenizer.pad_token_id == model.config.pad_token_id
    assert tokenizer.bos_token is None
    text = "Zoë paid $3.50 for 12 apples — 29¢ each?\n\n日本語 ok\t#### 42"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert tokenizer(text)["input_ids"] == ids  # no BOS/EOS added


def test_chat_template_and_assistant_mask(tokenizer):
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 3 + 4?"},
        {"role": "assistant", "content": "3 + 4 = <<3+4=7>>7\n#### 7"},
        {"role": "user", "content": "And doubled?"},
        {"role": "assistant", "content": " 14 apples"},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == (
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nWhat is 3 + 4?<|im_end|>\n"
        "<|im_start|>assistant\n3 + 4 = <<3+4=7>>7\n#### 7<|im_end|>\n"
        "<|im_start|>user\nAnd doubled?<|im_end|>\n"
        "<|im_start|>assistant\n 14 apples<|im_end|>\n"
    )
    out = tokenizer.apply_chat_template(messages, return_dict=True,
                                        return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    assert ids == tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids.count(tokenizer.convert_tokens_to_ids("<|im_start|>")) == 5
    assert ids.count(tokenizer.convert_tokens_to_ids("<|im_end|>")) == 5
    # The mask selects exactly the two assistant contents, each as one contiguous run.
    runs, cur = [], []
    for i, m in zip(ids, mask, strict=True):
        if m:
            cur.append(i)
        elif cur:
            runs.append(cur)
            cur = []
    assert [tokenizer.decode(r) for r in runs] == [messages[2]["content"], messages[4]["content"]]
    prompt = tokenizer.apply_chat_template(messages[:2], tokenize=False,
                                           add_generation_prompt=True)
    assert prompt.endswith("<|im_end|>\n<|im_start|>assistant\n")


def test_heldout_loss_beats_unigram_and_random_weights(tokenizer, model, unigram_logp):
    from transformers import AutoModelForCausalLM

    logp_uni = unigram_logp
    rows = _test_sample()
    docs = tokenizer([r["question"] + "\n\n" + r["answer"] for r in rows],
                     add_special_tokens=False)["input_ids"]
    masks = [[1] * len(d) for d in docs]
    nll_model, targets = _nll(model, docs, masks)
    nll_uni = float(-logp_uni[targets].mean())
    assert 4.0 < nll_uni < math.log(len(tokenizer))
    assert nll_model < nll_uni - MARGIN_NATS

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        untrained = AutoModelForCausalLM.from_config(model.config).eval()
    nll_random, _ = _nll(untrained, docs[:8], masks[:8])
    assert nll_random > nll_uni  # the margin above cannot be met without training


def test_chat_rendering_is_in_distribution(tokenizer, model, unigram_logp):
    logp_uni = unigram_logp
    rows = _test_sample()[:16]
    docs, masks = [], []
    for r in rows:
        out = tokenizer.apply_chat_template(
            [{"role": "user", "content": r["question"]},
             {"role": "assistant", "content": r["answer"]}],
            return_dict=True, return_assistant_tokens_mask=True)
        docs.append(out["input_ids"])
        masks.append(out["assistant_masks"])
    nll_model, targets = _nll(model, docs, masks)
    assert nll_model < float(-logp_uni[targets].mean()) - MARGIN_NATS
