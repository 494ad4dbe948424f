"""Train the built-in reference model ``constraintlab-reference`` from scratch, on CPU.

Reproduce the shipped weights (from the repository root, 2 CPU cores)::

    python -m constraintlab.reference.train --out constraintlab/reference/weights

What it does
------------
1. Reads GSM8K train (``../shared/data/gsm8k_train.jsonl``, 7,473 rows, MIT licence) and GSM8K
   test (1,319 rows, MIT; used only for the held-out loss, never for training).
2. Trains a byte-level BPE tokenizer (``tokenizers``; Qwen2-style pre-tokenizer regex, digits
   split one by one, NFC) with 4,096 entries including the special tokens ``<|endoftext|>``
   (eos), ``<|im_start|>``, ``<|im_end|>`` and ``<|pad|>``, and wraps it as a Hugging Face fast
   tokenizer with a ChatML chat template whose assistant contents sit inside
   ``{% generation %}`` markers (``return_assistant_tokens_mask=True`` works).
3. Builds a ``Qwen3Config`` causal LM (hidden 256, 6 layers, 4 query / 2 key-value heads of 64,
   MLP 704, tied embeddings, RoPE, max 1024 positions: 5.48 M parameters) with seeded init.
4. Trains on every GSM8K train row rendered the two ways the encoder renders data: plain text
   ``question + sep + answer + <|endoftext|>`` (sep ``"\\n\\n"`` mostly, sometimes ``"\\n"`` or
   ``" "``) and the ChatML chat form (user = question, assistant = answer; sometimes with one of
   a few self-written system prompts, sometimes two question/answer turns in one conversation).
   One document per row (position 0 = its first token, as the encoder sees an example), rows
   bucketed by length; AdamW, linear warm-up then cosine decay, gradient clipping at 1.0, bf16
   autocast for the matmuls (weights fp32). All randomness is seeded from ``--seed``: rendering
   choices and shuffling through a ``torch.Generator``, the weight init under
   ``torch.manual_seed`` inside a forked RNG state; the tokenizer training is deterministic.
5. Writes ``config.json``, ``generation_config.json``, ``model.safetensors`` (fp32), the
   tokenizer files, and ``training.json`` (data and licences, settings, steps, tokens seen,
   wall time, final train loss, held-out GSM8K test loss and the unigram baseline).

Shipped run (seed 0, all defaults; numbers from ``weights/training.json``)
---------------------------------------------------------------------------
600 steps of at most 4,096 padded tokens, 2,317,744 tokens seen (0.72 epoch of the rendered
set), 18.4 min of training (19.1 min in all) on 2 CPU cores shared with other jobs, one torch
thread. Final train loss 2.672 nats/token (last 50 steps); held-out GSM8K test loss 2.794
nats/token (first 400 problems, plain rendering) against 5.565 for the unigram baseline.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from constraintlab._hashing import file_sha256

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"

EOS = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
PAD = "<|pad|>"
SPECIAL_TOKENS = (EOS, IM_START, IM_END, PAD)

# Qwen2's pre-tokenizer pattern: letters with an optional leading non-letter, single digits,
# punctuation runs, newlines, whitespace.
SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# ChatML, as Qwen renders it; assistant contents (and only they) inside generation markers.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{% generation %}{{- message['content'] }}{% endgeneration %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Self-written system prompts (part of this project, MIT) so chat inputs with a system turn
# are in distribution.
SYSTEM_PROMPTS = (
    "You are a helpful assistant.",
    "You are a careful math tutor. Solve the problem step by step.",
    "Answer the question. Show your reasoning and end with the final number.",
    "You are a helpful assistant that solves grade-school math word problems.",
)

DATA_SOURCES = (
    {
        "name": "GSM8K train",
        "file": "gsm8k_train.jsonl",
        "use": "training (tokenizer and model)",
        "origin": "openai/grade-school-math, grade_school_math/data/train.jsonl",
        "licence": "MIT",
    },
    {
        "name": "GSM8K test",
        "file": "gsm8k_test.jsonl",
        "use": "held-out loss only (never trained on)",
        "origin": "openai/grade-school-math, grade_school_math/data/test.jsonl",
        "licence": "MIT",
    },
    {
        "name": "system prompts",
        "file": "constraintlab/reference/train.py (SYSTEM_PROMPTS)",
        "use": "training (system turns of some chat documents)",
        "origin": "written for this project",
        "licence": "MIT",
    },
)


def read_jsonl(path: Path) -> list[dict]:
    """Read a JSON-lines file into a list of dicts."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def plain_text(question: str, answer: str, sep: str = "\n\n") -> str:
    """The plain (non-chat) rendering of one question/answer pair."""
    return question + sep + answer


def chat_messages(turns: Sequence[tuple[str, str]], system: str | None = None) -> list[dict]:
    """A chat conversation from ``(question, answer)`` turns, optionally with a system turn."""
    messages = [] if system is None else [{"role": "system", "content": system}]
    for q, a in turns:
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return messages


def build_tokenizer(rows: Sequence[dict], vocab_size: int):
    """Train the byte-level BPE tokenizer on GSM8K train and wrap it for ``transformers``.

    Parameters
    ----------
    rows : sequence of dict
        GSM8K records with ``question`` and ``answer``.
    vocab_size : int
        Size of the vocabulary, special tokens included.

    Returns
    -------
    transformers.PreTrainedTokenizerFast
    """
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Role names as they follow <|im_start|> (no leading space), once per row so they merge.
    roles = ("system\n", "user\n", "assistant\n", "tool\n", "developer\n")

    def corpus():
        for r in rows:
            yield plain_text(r["question"], r["answer"])
            yield from roles
        yield from SYSTEM_PROMPTS

    tok.train_from_iterator(corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS,
        pad_token=PAD,
        extra_special_tokens=[IM_START, IM_END],
        chat_template=CHAT_TEMPLATE,
        model_max_length=1024,
        clean_up_tokenization_spaces=False,
    )


def save_tokenizer(tokenizer, out: Path) -> None:
    """Save the tokenizer so both transformers 4.56+ and 5 load it with ``AutoTokenizer``.

    The chat template goes into ``tokenizer_config.json`` (not a separate ``.jinja`` file), the
    class is the generic ``PreTrainedTokenizerFast`` and the ChatML markers are listed as
    ``additional_special_tokens``.
    """
    tokenizer.save_pretrained(out)
    path = out / "tokenizer_config.json"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    cfg.pop("extra_special_tokens", None)
    cfg.pop("backend", None)
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg["additional_special_tokens"] = [IM_START, IM_END]
    cfg["bos_token"] = None
    cfg["add_bos_token"] = False
    cfg["add_eos_token"] = False
    cfg["chat_template"] = CHAT_TEMPLATE
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (out / "chat_template.jinja").unlink(missing_ok=True)
    special = {"eos_token": EOS, "pad_token": PAD, "additional_special_tokens": [IM_START, IM_END]}
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n",
                                                 encoding="utf-8")


def build_model(tokenizer, seed: int, *, hidden: int = 256, layers: int = 6, heads: int = 4,
                kv_heads: int = 2, intermediate: int = 704, max_positions: int = 1024):
    """A freshly initialised ``Qwen3ForCausalLM`` (fp32) sized for the reference model.

    Parameters
    ----------
    tokenizer : PreTrainedTokenizerFast
        Gives the vocabulary size and the special token ids.
    seed : int
        Seed of the weight initialisation.
    """
    from transformers import Qwen3Config, Qwen3ForCausalLM

    eos_id = tokenizer.convert_tokens_to_ids(EOS)
    im_end_id = tokenizer.convert_tokens_to_ids(IM_END)
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=hidden // heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        bos_token_id=None,
        eos_token_id=eos_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config.dtype = "float32"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen3ForCausalLM(config)
    model.generation_config.eos_token_id = [eos_id, im_end_id]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = None
    return model


def render_epoch(rows: Sequence[dict], tokenizer, gen: torch.Generator,
                 max_len: int) -> list[list[int]]:
    """Token ids of one epoch's documents: each row once as plain text and once as a chat.

    Separators, system prompts and two-turn chats are drawn from ``gen``.
    """
    n = len(rows)
    eos_id = tokenizer.convert_tokens_to_ids(EOS)
    u = torch.rand(n, 3, generator=gen)
    partner = torch.randint(0, n, (n,), generator=gen)
    sys_pick = torch.randint(0, len(SYSTEM_PROMPTS), (n,), generator=gen)
    plain, chats = [], []
    for i, r in enumerate(rows):
        sep = "\n\n" if u[i, 0] < 0.8 else ("\n" if u[i, 0] < 0.9 else " ")
        plain.append(plain_text(r["question"], r["answer"], sep))
        turns = [(r["question"], r["answer"])]
        if u[i, 1] < 0.15:
            p = rows[int(partner[i])]
            turns.append((p["question"], p["answer"]))
        system = SYSTEM_PROMPTS[int(sys_pick[i])] if u[i, 2] < 0.25 else None
        chats.append(tokenizer.apply_chat_template(chat_messages(turns, system), tokenize=False))
    enc = tokenizer(plain + chats, add_special_tokens=False)["input_ids"]
    docs = [[*ids, eos_id] for ids in enc[:n]] + enc[n:]
    return [d[:max_len] for d in docs]


def make_batches(docs: Sequence[Sequence[int]], batch_tokens: int, gen: torch.Generator,
                 pool: int = 64) -> list[list[int]]:
    """Indices of ``docs`` grouped into length-bucketed batches of at most ``batch_tokens``.

    Documents are shuffled, sorted by length inside pools of ``pool`` batches' worth, cut into
    batches whose padded size (rows x longest) stays within ``batch_tokens``, and the batches
    are shuffled again.
    """
    order = torch.randperm(len(docs), generator=gen).tolist()
    mean_len = sum(len(d) for d in docs) / max(len(docs), 1)
    chunk = max(1, int(pool * batch_tokens / mean_len))
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start:start + chunk], key=lambda i: len(docs[i]))
        cur: list[int] = []
        longest = 0
        for i in part:
            longest_new = max(longest, len(docs[i]))
            if cur and longest_new * (len(cur) + 1) > batch_tokens:
                batches.append(cur)
                cur, longest_new = [], len(docs[i])
            cur.append(i)
            longest = longest_new
        if cur:
            batches.append(cur)
    perm = torch.randperm(len(batches), generator=gen).tolist()
    return [batches[p] for p in perm]


def collate(docs: Sequence[Sequence[int]], idx: Sequence[int], pad_id: int):
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (-100 on padding)."""
    longest = max(len(docs[i]) for i in idx)
    ids = torch.full((len(idx), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(idx), longest), dtype=torch.long)
    for r, i in enumerate(idx):
        ids[r, :len(docs[i])] = torch.tensor(docs[i])
        mask[r, :len(docs[i])] = 1
    labels = ids.masked_fill(mask == 0, -100)
    return ids, mask, labels


def lr_at(step: int, total: int, peak: float, warmup: int, floor: float = 0.1) -> float:
    """Linear warm-up to ``peak`` over ``warmup`` steps, then cosine decay to ``floor * peak``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def unigram_log_probs(docs: Sequence[Sequence[int]], vocab_size: int) -> torch.Tensor:
    """Add-one smoothed unigram log-probabilities ``(vocab_size,) float64`` from token counts."""
    counts = torch.ones(vocab_size, dtype=torch.float64)
    for d in docs:
        counts += torch.bincount(torch.tensor(d, dtype=torch.long), minlength=vocab_size)
    return torch.log(counts / counts.sum())


@torch.no_grad()
def heldout_nll(model, tokenizer, train_rows: Sequence[dict], test_rows: Sequence[dict],
                batch_size: int = 16) -> dict:
    """Mean next-token NLL (nats) on GSM8K test, plain rendering, against a unigram baseline.

    Every test document is ``question + "\\n\\n" + answer`` without special tokens; the targets
    are its tokens 1..T-1. The baseline predicts each target with its add-one smoothed
    frequency in GSM8K train rendered the same way.
    """
    vocab = len(tokenizer)
    enc = tokenizer
    train_docs = enc([plain_text(r["question"], r["answer"]) for r in train_rows],
                     add_special_tokens=False)["input_ids"]
    logp_uni = unigram_log_probs(train_docs, vocab)
    test_docs = enc([plain_text(r["question"], r["answer"]) for r in test_rows],
                    add_special_tokens=False)["input_ids"]
    model.eval()
    total_model = total_uni = 0.0
    n_tokens = 0
    pad_id = tokenizer.pad_token_id
    for start in range(0, len(test_docs), batch_size):
        idx = list(range(start, min(start + batch_size, len(test_docs))))
        ids, mask, labels = collate(test_docs, idx, pad_id)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].double()
        tgt = labels[:, 1:]
        keep = tgt != -100
        nll = torch.nn.functional.cross_entropy(
            logits.reshape(-1, vocab), tgt.reshape(-1), ignore_index=-100, reduction="none")
        total_model += float(nll.sum())
        total_uni += float(-logp_uni[tgt[keep]].sum())
        n_tokens += int(keep.sum())
    model.train()
    return {
        "split": "GSM8K test (plain rendering)",
        "n_docs": len(test_docs),
        "n_tokens": n_tokens,
        "model_nll": total_model / n_tokens,
        "unigram_nll": total_uni / n_tokens,
    }


def reproduce_command(args: argparse.Namespace) -> str:
    """The command line that repeats this run (output into the package's weights folder)."""
    parts = ["python -m constraintlab.reference.train --out constraintlab/reference/weights"]
    for k, v in vars(args).items():
        if k in ("out", "data_dir"):
            continue
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            parts.append(flag if v else "--no-" + k.replace("_", "-"))
        else:
            parts.append(f"{flag} {v}")
    return " ".join(parts)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options of the training script."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True, help="output model directory")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                   help="folder with gsm8k_train.jsonl and gsm8k_test.jsonl")
    p.add_argument("--steps", type=int, default=600, help="optimizer steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-tokens", type=int, default=4096,
                   help="padded tokens per batch (rows x longest row)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    p.add_argument("--warmup", type=int, default=40)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--max-len", type=int, default=1024, help="truncate documents to this")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1 is fastest on cores shared with other jobs; "
                        "use 2 on two dedicated cores)")
    p.add_argument("--eval-docs", type=int, default=400,
                   help="GSM8K test documents for the held-out loss (0: all)")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                   help="bf16 autocast for the matmuls (weights and optimizer stay fp32)")
    p.add_argument("--log-every", type=int, default=20)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    """Train the reference model and write it to ``--out``; returns the training summary."""
    import tokenizers
    import transformers

    from constraintlab.reference import REFERENCE_MODEL_NAME, REFERENCE_MODEL_VERSION

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()

    train_path = args.data_dir / "gsm8k_train.jsonl"
    test_path = args.data_dir / "gsm8k_test.jsonl"
    train_rows = read_jsonl(train_path)
    test_rows = read_jsonl(test_path)
    if args.eval_docs:
        test_rows = test_rows[:args.eval_docs]

    tokenizer = build_tokenizer(train_rows, args.vocab_size)
    model = build_model(tokenizer, args.seed)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("tokenizer: %d tokens; model: %d parameters", len(tokenizer), n_params)

    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr, betas=(0.9, 0.95), eps=1e-8)

    data_gen = torch.Generator().manual_seed(args.seed)
    pad_id = tokenizer.pad_token_id
    step = epoch = 0
    tokens_seen = 0
    losses: list[float] = []
    history = []
    t_train = time.perf_counter()
    model.train()
    while step < args.steps:
        docs = render_epoch(train_rows, tokenizer, data_gen, args.max_len)
        logger.info("epoch %d: %d documents, %d tokens", epoch, len(docs),
                    sum(len(d) for d in docs))
        for idx in make_batches(docs, args.batch_tokens, data_gen):
            if step >= args.steps:
                break
            ids, mask, labels = collate(docs, idx, pad_id)
            lr = lr_at(step, args.steps, args.lr, args.warmup)
            for group in opt.param_groups:
                group["lr"] = lr
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(float(loss.detach()))
            tokens_seen += int(mask.sum())
            step += 1
            if step % args.log_every == 0 or step == args.steps:
                elapsed = time.perf_counter() - t_train
                recent = sum(losses[-args.log_every:]) / len(losses[-args.log_every:])
                history.append({"step": step, "loss": round(recent, 4),
                                "tokens": tokens_seen, "seconds": round(elapsed, 1)})
                logger.info("step %d/%d epoch %d loss %.4f lr %.2e tokens %d (%.0f tok/s)",
                            step, args.steps, epoch, recent, lr, tokens_seen,
                            tokens_seen / elapsed)
        epoch += 1
    train_seconds = time.perf_counter() - t_train
    final_loss = sum(losses[-50:]) / len(losses[-50:])

    heldout = heldout_nll(model, tokenizer, train_rows, test_rows)
    logger.info("held-out NLL %.4f nats/token, unigram baseline %.4f",
                heldout["model_nll"], heldout["unigram_nll"])

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    save_tokenizer(tokenizer, out)
    summary = {
        "name": REFERENCE_MODEL_NAME,
        "version": REFERENCE_MODEL_VERSION,
        "architecture": "Qwen3ForCausalLM",
        "n_params": n_params,
        "dtype": "float32",
        "tokenizer": {
            "type": "byte-level BPE (tokenizers), Qwen2 pre-tokenizer regex, NFC",
            "vocab_size": len(tokenizer),
            "special_tokens": list(SPECIAL_TOKENS),
            "eos_token": EOS,
            "pad_token": PAD,
            "chat_template": "ChatML with {% generation %} around assistant contents",
        },
        "data": [
            {**src, "sha256": file_sha256(args.data_dir / src["file"])}
            if src["file"].endswith(".jsonl") else src
            for src in DATA_SOURCES
        ],
        "renderings": ["plain: question + sep + answer + <|endoftext|> (sep '\\n\\n' 80 %, "
                       "'\\n' 10 %, ' ' 10 %)",
                       "chat: ChatML user/assistant (25 % with a system prompt, 15 % two turns)"],
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                     if k not in ("out", "data_dir")},
        "steps": step,
        "epochs_started": epoch,
        "tokens_seen": tokens_seen,
        "train_seconds": round(train_seconds, 1),
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "final_train_loss": round(final_loss, 4),
        "heldout": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in heldout.items()},
        "loss_history": history,
        "command": reproduce_command(args),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {args.threads} torch threads",
    }
    (out / "training.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    logger.info("wrote %s (%.0f s)", out, summary["wall_seconds"])
    return summary


if __name__ == "__main__":
    main()
