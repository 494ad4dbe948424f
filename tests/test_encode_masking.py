"""Loss masks: loss only on target tokens, context only through conditioning, truncation
counted, whitespace targets rejected."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_models import build_model

from constraintlab.encode import EncodeConfig, Encoder
from constraintlab.errors import InputError
from constraintlab.io import read_examples
from constraintlab.io.example import Example, Message


def chat(index: int, *turns: tuple[str, str], targets: tuple[int, ...]) -> Example:
    msgs = tuple(Message(r, c) for r, c in turns)
    return Example(index, index + 1, "<records>", "chat", msgs, targets, True, {})


def plain(index: int, prompt: str, target: str) -> Example:
    msgs = (Message("user", prompt), Message("assistant", target))
    return Example(index, index + 1, "<records>", "prompt_completion", msgs, (1,), False, {})


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    root = tmp_path_factory.mktemp("mask_models")
    out = {}
    for arch in ("qwen3", "llama", "gpt2"):
        path = build_model(arch, root / arch, seed=1)
        out[arch] = Encoder(EncodeConfig(model=str(path), dtype="float64", projection="none",
                                         target_modules=None if arch == "gpt2" else
                                         ("q_proj", "v_proj", "up_proj")))
    return out


def target_text(enc: Encoder, ex: Example) -> str:
    e = enc.encode([ex])[0]
    return enc.loaded.tokenizer.decode(e.input_ids[e.target_mask])


def test_chat_template_masks_exactly_the_assistant_turns(encoders):
    ex = chat(0, ("system", "Be brief."), ("user", "What is 2 + 3?"),
              ("assistant", "It is 5."), ("user", "Times 2?"), ("assistant", "Then 10."),
              targets=(2, 4))
    # completion-only masking as TRL: content plus the template's end-of-turn, no header
    assert target_text(encoders["qwen3"], ex) == "It is 5.<|im_end|>\nThen 10.<|im_end|>\n"
    assert target_text(encoders["llama"], ex) == "It is 5.<|eot_id|>Then 10.<|eot_id|>"
    last_only = chat(0, *[(m.role, m.content) for m in ex.messages], targets=(4,))
    assert target_text(encoders["qwen3"], last_only) == "Then 10.<|im_end|>\n"


def test_plain_template(encoders):
    ex = plain(0, "What is 2 + 3?", "It is 5.")
    for arch, eos, bos in (("gpt2", "<|endoftext|>", None), ("llama", "<|eot_id|>", 0),
                           ("qwen3", "<|im_end|>", None)):
        enc = encoders[arch]
        e = enc.encode([ex])[0]
        tok = enc.loaded.tokenizer
        assert tok.decode(e.input_ids[e.target_mask]) == "It is 5." + eos
        assert tok.decode(e.input_ids) == (
            ("<s>" if bos is not None else "") + "What is 2 + 3?\n\nIt is 5." + eos)
        assert e.template == "plain"
    # a chat example with no chat template (GPT-2) is rendered plainly with role prefixes
    c = chat(1, ("user", "Hi there"), ("assistant", "Hello."), targets=(1,))
    e = encoders["gpt2"].encode([c])[0]
    tok = encoders["gpt2"].loaded.tokenizer
    assert tok.decode(e.input_ids) == "user: Hi there\n\nassistant: Hello.<|endoftext|>"
    # the byte-level BPE merges the separating space into " Hello": that token is a target
    assert tok.decode(e.input_ids[e.target_mask]) == " Hello.<|endoftext|>"


@pytest.mark.parametrize("arch", ["qwen3", "gpt2"])
def test_context_tokens_act_only_through_conditioning(arch, encoders):
    enc = encoders[arch]
    base = chat(0, ("user", "Tom has 3 apples and buys 4 more."), ("assistant", "He has 7."),
                ("user", "Thanks a lot"), targets=(1,))
    after = chat(1, ("user", "Tom has 3 apples and buys 4 more."), ("assistant", "He has 7."),
                 ("user", "Cheers mate, bye"), targets=(1,))
    before = chat(2, ("user", "Ann has 3 apples and buys 4 more."), ("assistant", "He has 7."),
                  ("user", "Thanks a lot"), targets=(1,))
    inside = chat(3, ("user", "Tom has 3 apples and buys 4 more."), ("assistant", "He has 8."),
                  ("user", "Thanks a lot"), targets=(1,))
    encoded = enc.encode([base, after, before, inside])
    res = enc.compute(encoded)
    g, loss = res.features, res.loss
    e0, e1, e2, e3 = encoded
    # a non-target token after the target is never context: gradient and loss unchanged
    assert not np.array_equal(e0.input_ids, e1.input_ids)
    np.testing.assert_allclose(g[1], g[0], rtol=1e-9, atol=1e-12)
    assert loss[1] == pytest.approx(loss[0], rel=1e-12)
    # a non-target token before it: same target tokens, different context -> new gradient
    assert e2.input_ids[e2.target_mask].tolist() == e0.input_ids[e0.target_mask].tolist()
    assert e2.n_target_tokens == e0.n_target_tokens
    assert np.linalg.norm(g[2] - g[0]) > 1e-3 * np.linalg.norm(g[0])
    # a token inside the target changes the loss
    assert e3.input_ids[e3.target_mask].tolist() != e0.input_ids[e0.target_mask].tolist()
    assert abs(loss[3] - loss[0]) > 1e-6


def test_whitespace_target_rejected():
    with pytest.raises(InputError, match="blank"):
        read_examples([{"prompt": "What?", "completion": "  \n\t"}])
    with pytest.raises(InputError, match="blank"):
        read_examples([{"messages": [{"role": "user", "content": "hi"},
                                     {"role": "assistant", "content": "   "}]}])


def test_encoder_rejects_blank_target_built_in_memory(encoders):
    with pytest.raises(InputError, match="whitespace") as info:
        encoders["gpt2"].encode([plain(0, "Fine?", "yes"), plain(7, "Really?", " \n ")])
    assert [p.line for p in info.value.problems] == [8]


def test_truncation_counted_and_all_truncated_rejected(encoders, tmp_path):
    enc = encoders["gpt2"]
    long = plain(0, "word " * 40, "The answer is 42.")
    full = enc.encode([long])[0]
    cfg = EncodeConfig(model=enc.config.model, dtype="float64", projection="none",
                       max_length=full.n_tokens - 3)
    short = Encoder(cfg, loaded=enc.loaded)
    cut = short.encode([long])[0]
    assert cut.n_truncated == 3 and cut.n_tokens == full.n_tokens - 3
    assert cut.n_target_tokens == full.n_target_tokens - 3
    cfg = EncodeConfig(model=enc.config.model, dtype="float64", projection="none",
                       max_length=20)
    with pytest.raises(InputError, match="max_length=20"):
        Encoder(cfg, loaded=enc.loaded).encode([long])
