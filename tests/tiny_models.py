"""Tiny causal LMs and tokenizers built locally from configs (never downloaded).

Every builder writes a normal Hugging Face directory (``config.json``, ``model.safetensors``,
tokenizer files) so tests exercise the same ``from_pretrained(path)`` path users do.

- :func:`build_tokenizer` trains a small byte-level BPE on GSM8K text; ``"chatml"`` (Qwen-like)
  and ``"llama"`` variants carry a chat template, ``"gpt2"`` has none.
- :func:`build_model` makes a randomly initialised Qwen3 / Llama / GPT-2 of a few thousand to a
  few million parameters, seeded, and saves it with its tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

GSM8K = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gsm8k_train.jsonl"

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
LLAMA_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' "
    "+ message['content'] + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)


def gsm8k_records(n: int, *, offset: int = 0) -> list[dict]:
    """The first ``n`` GSM8K training records (``question``/``answer``) after ``offset``.

    Skips the calling test (with the reason) when ``../shared/data`` is not beside the checkout.
    """
    if not GSM8K.exists():
        import pytest

        pytest.skip(f"real datasets not found at {GSM8K.parent}")
    out = []
    with GSM8K.open() as fh:
        for i, line in enumerate(fh):
            if i < offset:
                continue
            if len(out) >= n:
                break
            out.append(json.loads(line))
    return out


def _corpus(n_lines: int = 400) -> list[str]:
    lines = []
    for rec in gsm8k_records(n_lines):
        lines.append(rec["question"])
        lines.append(rec["answer"])
    lines += ["user: assistant: system: Answer briefly.", "The quick brown fox.  \n\t"]
    return lines


def build_tokenizer(kind: str, path: str | Path, *, vocab_size: int = 600):
    """Train a byte-level BPE tokenizer and save it as a fast HF tokenizer.

    Parameters
    ----------
    kind : {"chatml", "llama", "gpt2"}
        ``chatml``: Qwen-like special tokens and chat template, no BOS. ``llama``: BOS ``<s>``
        added to plain text, Llama-3-like chat template. ``gpt2``: no chat template.
    path : directory to save into (created).

    Returns
    -------
    transformers.PreTrainedTokenizerFast, reloaded from ``path`` with ``AutoTokenizer``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    specials = {
        "chatml": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "llama": ["<s>", "</s>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        "gpt2": ["<|endoftext|>"],
    }[kind]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(_corpus(), trainer=trainer)
    kwargs: dict = {}
    if kind == "chatml":
        kwargs = dict(eos_token="<|im_end|>", pad_token="<|endoftext|>",
                      additional_special_tokens=["<|im_start|>"])
    elif kind == "llama":
        bos = tok.token_to_id("<s>")
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)])
        kwargs = dict(bos_token="<s>", eos_token="<|eot_id|>",
                      additional_special_tokens=["<|start_header_id|>", "<|end_header_id|>"])
    else:
        kwargs = dict(eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)
    if kind == "chatml":
        fast.chat_template = CHATML_TEMPLATE
    elif kind == "llama":
        fast.chat_template = LLAMA_TEMPLATE
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(path)
    return AutoTokenizer.from_pretrained(path)


def build_model(arch: str, path: str | Path, *, hidden: int = 32, layers: int = 2,
                intermediate: int | None = None, heads: int = 4, kv_heads: int = 2,
                vocab_size: int = 600, seed: int = 0, tokenizer_kind: str | None = None,
                model_vocab: int | None = None, tie_embeddings: bool = False) -> Path:
    """Build a random tiny causal LM of architecture ``arch`` and save it (with tokenizer).

    Parameters
    ----------
    arch : {"qwen3", "llama", "gpt2"}
    path : directory to write (created); reload with ``from_pretrained(path)``.
    hidden, layers, intermediate, heads, kv_heads : model size (``intermediate`` defaults to
        ``2 * hidden``; GPT-2 uses ``4 * hidden`` and ignores ``kv_heads``).
    seed : seeds the weight init through a private ``torch.Generator`` state (``fork_rng``).
    tokenizer_kind : defaults to ``chatml`` for qwen3, ``llama`` for llama, ``gpt2`` for gpt2.
    model_vocab : embedding rows (default: the tokenizer's size); larger values give a real
        model's vocabulary cost (e.g. 151936 for Qwen3) with the small trained tokenizer.
    tie_embeddings : share input embedding and ``lm_head`` (Qwen3 and Llama only).

    Returns
    -------
    Path of the saved model directory.
    """
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, Qwen3Config

    path = Path(path)
    kind = tokenizer_kind or {"qwen3": "chatml", "llama": "llama", "gpt2": "gpt2"}[arch]
    tok = build_tokenizer(kind, path, vocab_size=vocab_size)
    vocab = max(len(tok), model_vocab or 0)
    inter = intermediate or 2 * hidden
    if arch == "qwen3":
        cfg = Qwen3Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter,
                          num_hidden_layers=layers, num_attention_heads=heads,
                          num_key_value_heads=kv_heads, head_dim=hidden // heads,
                          max_position_embeddings=2048, tie_word_embeddings=tie_embeddings,
                          pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    elif arch == "llama":
        cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter,
                          num_hidden_layers=layers, num_attention_heads=heads,
                          num_key_value_heads=kv_heads, max_position_embeddings=2048,
                          tie_word_embeddings=tie_embeddings, bos_token_id=tok.bos_token_id,
                          eos_token_id=tok.eos_token_id)
    elif arch == "gpt2":
        cfg = GPT2Config(vocab_size=vocab, n_embd=hidden, n_layer=layers, n_head=heads,
                         n_positions=2048, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id)
    else:
        raise ValueError(f"unknown arch {arch!r}")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(cfg)
        # HF's tiny default init (std 0.02) gives near-uniform predictions; a larger spread makes
        # gradients of different examples less alike, which the tests need.
        for name, p in model.named_parameters():
            if p.dim() == 2 and "norm" not in name and "ln" not in name:
                torch.nn.init.normal_(p, std=0.15)
    model.save_pretrained(path)
    return path
