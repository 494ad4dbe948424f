"""Input dependence: the target scored with its input removed, against a plain forward pass.

Reference per example, built independently of the encoder's splicing: the no-input text is
rendered by the tokenizer itself (``apply_chat_template`` on the conversation with every
non-target turn's content emptied; for prompt-completion the start token and
``completion + eos`` tokenised alone), every target run of the with-input sequence is located
in it by a subsequence search, and a plain ``model(input_ids).logits`` of a freshly loaded copy
of the model (float64, one example at a time, unpadded) gives ``-log_softmax`` at the positions
before them. The store's per-token ``nll_noinput``, ``nll_noinput``/``input_gain``/``ifd``
columns must match to float tolerance; resuming a killed extraction keeps them bit-identical.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from tiny_models import build_model, gsm8k_records

from constraintlab.encode import EncodeConfig, Encoder, FeatureStore, extract
from constraintlab.encode.store import SHARDS, shard_key
from constraintlab.errors import InputError
from constraintlab.io import read_examples
from constraintlab.io.example import Example, Message


def make_examples() -> list[Example]:
    """Chat with a system prompt, multi-turn chat (two targets; one target with an earlier
    assistant turn as input), prompt-completion, and plain text (no input)."""
    recs = gsm8k_records(8, offset=40)
    out = []
    for i, r in enumerate(recs):
        q, a = r["question"], r["answer"]
        k = i % 4
        if k == 0:
            msgs = (Message("system", "You are a careful math tutor."), Message("user", q),
                    Message("assistant", a))
            out.append(Example(i, i + 1, "<records>", "chat", msgs, (2,), True, {}))
        elif k == 1:
            msgs = (Message("user", q[:80]), Message("assistant", a.split("\n")[0]),
                    Message("user", "And then?"), Message("assistant", a[-40:]))
            targets = (1, 3) if i % 8 == 1 else (3,)
            out.append(Example(i, i + 1, "<records>", "chat", msgs, targets, True, {}))
        elif k == 2:
            msgs = (Message("user", q), Message("assistant", a))
            out.append(Example(i, i + 1, "<records>", "prompt_completion", msgs, (1,), False,
                               {}))
        else:
            out.append(Example(i, i + 1, "<records>", "text", (Message("assistant", a[:200]),),
                               (0,), False, {}))
    return out


@pytest.fixture(scope="module", params=["qwen3", "gpt2"])
def setup(request, tmp_path_factory):
    arch = request.param
    path = build_model(arch, tmp_path_factory.mktemp(f"noinput_{arch}") / "model", seed=2)
    enc = Encoder(EncodeConfig(model=str(path), dtype="float64", k=16, batch_size=8))
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float64).eval()
    return arch, enc, ref


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    out, start = [], None
    for i, m in enumerate([*list(mask), False]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            out.append((start, i))
            start = None
    return out


def reference_noinput_ids(enc: Encoder, ex: Example) -> list[int]:
    """The no-input sequence as the tokenizer renders it (not the encoder's splice)."""
    tok = enc.loaded.tokenizer
    start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    if ex.chat and tok.chat_template:
        msgs = [{"role": m.role, "content": m.content if i in ex.targets else ""}
                for i, m in enumerate(ex.messages)]
        return tok(tok.apply_chat_template(msgs, tokenize=False),
                   add_special_tokens=False)["input_ids"]
    if ex.chat:   # plain rendering of a chat: "role: content\n\n", content emptied
        parts = []
        for i, m in enumerate(ex.messages):
            if i in ex.targets:
                parts.append(f"{m.role}: {m.content}{tok.eos_token}")
            else:
                parts.append(f"{m.role}: ")
        return tok("\n\n".join(parts), add_special_tokens=False)["input_ids"]
    target = ex.messages[ex.targets[0]].content + tok.eos_token
    ids = tok(target, add_special_tokens=False)["input_ids"]
    return ids if ex.schema == "text" else [start, *ids]


def token_nll(model, ids: list[int]) -> np.ndarray:
    """(len(ids),) -log p(ids[t] | ids[:t]) by a plain forward pass (NaN at t = 0)."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    logp = torch.log_softmax(logits, dim=-1)
    out = np.full(len(ids), np.nan)
    out[1:] = -logp[:-1].gather(1, torch.tensor(ids[1:])[:, None])[:, 0].numpy()
    return out


def locate(haystack: list[int], needle: list[int], start: int) -> int:
    for at in range(start, len(haystack) - len(needle) + 1):
        if haystack[at:at + len(needle)] == needle:
            return at
    raise AssertionError(f"target run {needle} not found in the no-input sequence")


def test_noinput_nll_matches_plain_forward_per_schema(setup, tmp_path):
    arch, enc, ref = setup
    examples = make_examples()
    store = extract(examples, enc.config, tmp_path / "s", encoder=enc)
    encoded = enc.encode(examples)
    t, tokens = store.table, store.tokens
    assert tokens.nll_noinput is not None and tokens.nll_noinput.dtype == np.float32
    seen = set()
    for row, (ex, e) in enumerate(zip(examples, encoded, strict=True)):
        ids = e.input_ids.tolist()
        predicted = e.predicted_targets()
        a, b = tokens.offsets[row], tokens.offsets[row + 1]
        # with input: the per-token NLL is a plain forward pass on the full sequence
        np.testing.assert_allclose(tokens.nll[a:b], token_nll(ref, ids)[predicted], rtol=2e-6)
        # without input: locate every target run in the tokenizer's own no-input rendering
        ref_ids = reference_noinput_ids(enc, ex)
        assert e.noinput_ids.tolist() == ref_ids, (arch, ex.schema)   # splice == rendering
        where = np.full(len(ids), -1)
        cursor = 0
        for s, stop in runs(e.target_mask):
            at = locate(ref_ids, ids[s:stop], cursor)
            where[s:stop] = np.arange(at, at + stop - s)
            cursor = at + stop - s
        expected = token_nll(ref, ref_ids)[where[predicted]]
        assert not np.isnan(expected).any()
        np.testing.assert_allclose(tokens.nll_noinput[a:b], expected, rtol=2e-6)
        np.testing.assert_allclose(t["nll_noinput"][row], expected.mean(), rtol=1e-10)
        np.testing.assert_allclose(t["input_gain"][row], expected.mean() - t["loss"][row],
                                   rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(t["ifd"][row], t["loss"][row] / expected.mean(),
                                   rtol=1e-10)
        # the profile shows both, token by token
        prof = tokens.profile(row)
        np.testing.assert_allclose(prof["input_gain"], prof["nll_noinput"] - prof["nll"])
        if ex.schema == "text":   # nothing to remove: the very same numbers
            assert t["nll_noinput"][row] == t["loss"][row] and t["input_gain"][row] == 0.0
            assert t["ifd"][row] == 1.0
            np.testing.assert_array_equal(tokens.nll_noinput[a:b], tokens.nll[a:b])
        else:
            assert t["input_gain"][row] != 0.0
        seen.add((ex.schema, len(ex.targets), ex.messages[0].role))
    assert {("chat", 1, "system"), ("chat", 2, "user"), ("chat", 1, "user"),
            ("prompt_completion", 1, "user"), ("text", 1, "assistant")} <= seen


def test_truncated_target_scored_on_what_is_left(setup):
    _arch, enc, ref = setup
    rec = gsm8k_records(1, offset=60)[0]
    ex = Example(0, 1, "<records>", "prompt_completion",
                 (Message("user", rec["question"]), Message("assistant", rec["answer"])),
                 (1,), False, {})
    full = enc.encode([ex])[0]
    cut_len = full.n_tokens - full.n_target_tokens // 2
    cfg = EncodeConfig(model=enc.config.model, dtype="float64", k=16, max_length=cut_len)
    short = Encoder(cfg, loaded=enc.loaded)
    e = short.encode([ex])[0]
    assert 0 < e.n_target_tokens < full.n_target_tokens
    res = short.compute([e])
    ref_ids = reference_noinput_ids(enc, ex)[:1 + e.n_target_tokens]
    np.testing.assert_allclose(res.token_nll_noinput, token_nll(ref, ref_ids)[1:], rtol=1e-9)
    assert res.loss_noinput[0] == pytest.approx(np.mean(token_nll(ref, ref_ids)[1:]), rel=1e-12)


class Interrupted(RuntimeError):
    pass


class DiesAfter(Encoder):
    """An encoder that stops (like a killed run) after ``n`` batches."""

    def __init__(self, config, loaded, n: int) -> None:
        super().__init__(config, loaded=loaded)
        self.left = n

    def compute(self, batch):
        if self.left == 0:
            raise Interrupted("killed")
        self.left -= 1
        return super().compute(batch)


def load_all(path) -> dict:
    store = FeatureStore.open(path)
    return {"features": np.array(store.features), "table": store.table,
            "nll": store.tokens.nll, "nll_noinput": store.tokens.nll_noinput,
            "rank": store.tokens.rank, "offsets": store.tokens.offsets}


def test_resume_after_kill_and_damaged_shards_is_bit_identical(setup, tmp_path):
    _arch, enc, _ref = setup
    cfg = EncodeConfig(model=enc.config.model, dtype="float64", k=16, batch_size=1)
    examples = make_examples()
    out = tmp_path / "killed"
    with pytest.raises(Interrupted):
        extract(examples, cfg, out, encoder=DiesAfter(cfg, enc.loaded, 4))
    shards = out / SHARDS
    # one work unit (8 examples < unit_size), batches of one: shards 000000-000000 .. 000000-000007
    names = [shard_key(0, b) for b in range(4)]
    assert sorted(p.name for p in shards.glob("0*.npz")) == [f"{n}.npz" for n in names]
    assert len(list(shards.glob("*.ok"))) == 4
    # a killed disk write: shard 1 truncated; shard 2 complete but its marker never written;
    # shard 3's marker damaged
    data = (shards / f"{names[1]}.npz").read_bytes()
    (shards / f"{names[1]}.npz").write_bytes(data[:len(data) // 2])
    (shards / f"{names[2]}.ok").unlink()
    (shards / f"{names[3]}.ok").write_text("{not json")
    resumed = Encoder(cfg, loaded=enc.loaded)
    extract(examples, cfg, out, encoder=resumed)
    extract(examples, cfg, tmp_path / "straight", encoder=resumed)
    a, b = load_all(out), load_all(tmp_path / "straight")
    pd.testing.assert_frame_equal(a["table"], b["table"], check_exact=True)
    for key in ("features", "nll", "nll_noinput", "rank", "offsets"):
        assert np.array_equal(a[key], b[key], equal_nan=True), key
    # 8 examples, batches of one: 4 recomputed (the damaged shards 1-3 and the rest = 4 + 3)
    assert FeatureStore.open(out).manifest["stats"]["examples_computed"] == 7
    assert not shards.exists()


def test_on_invalid_skip_leaves_out_a_target_truncated_away(setup, tmp_path):
    _arch, enc, _ref = setup
    recs = [{"question": r["question"], "answer": r["answer"]}
            for r in gsm8k_records(4, offset=80)]
    recs[1]["question"] = " ".join([recs[1]["question"]] * 6)         # input alone too long
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    encoded = enc.encode(read_examples(path).examples)
    max_length = max(e.n_tokens for i, e in enumerate(encoded) if i != 1)  # the others fit
    assert encoded[1].n_input_tokens > max_length
    cfg = EncodeConfig(model=enc.config.model, dtype="float64", k=16, max_length=max_length)
    short = Encoder(cfg, loaded=enc.loaded)
    with pytest.raises(InputError, match=f"{path}:2: target truncated away by max_length"):
        extract(read_examples(path, on_invalid="error"), cfg, tmp_path / "strict",
                encoder=short)
    assert not (tmp_path / "strict").exists()
    ds = read_examples(path, on_invalid="skip")
    store = extract(ds, cfg, tmp_path / "s", encoder=short)
    assert len(store) == 3 and store.table["index"].tolist() == [0, 2, 3]
    [finding] = store.skipped
    assert (finding.source, finding.line, finding.index, finding.code) == (
        str(path), 2, 1, "target_truncated")
    assert finding.message.startswith(f"target truncated away by max_length={max_length}")
    assert str(finding).startswith(f"{path}:2: ")
    assert [ex.index for ex in store.select_examples(ds.examples)] == [0, 2, 3]
    assert store.manifest["dataset"]["n_examples"] == 4 and store.manifest["n_rows"] == 3
    again = extract(ds, cfg, tmp_path / "s", encoder=short)          # reused, same findings
    assert [str(f) for f in again.skipped] == [str(finding)]
