"""Per-example LoRA gradient extraction: constraintlab vs a per-example loop vs torch.func.

One run, one tiny Qwen3-architecture model (random weights, built from a config), the same
GSM8K examples (prompt = question, target = answer), LoRA r=8 on q_proj/v_proj (peft's
default), float32, every thread of this machine:

  (a) loop   one forward + ``loss.backward()`` per example (what LESS does), raw gradients
  (b) vmap   ``torch.func.vmap(grad(loss))`` over padded length buckets, raw gradients
  (c) ours   ``constraintlab.encode.extraction`` end to end (tokenise, batched hooks, projection
             to k=1024, shards, assembled store)

plus the FLOP bound: the flops a perfect implementation needs for these lengths (forward over
the real tokens, logits only at target positions, backward input-gradients only since the base
is frozen: 2 x linear + 3 x attention + 2 x lm_head flops) divided by this machine's measured
float32 matmul rate. Prints examples/s, target tokens/s, c/a and c/bound.

    python benchmarks/bench_extract.py [--n 512] [--hidden 256] [--layers 4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from tiny_models import build_model, gsm8k_records  # noqa: E402

from constraintlab.encode import EncodeConfig, Encoder, extract  # noqa: E402
from constraintlab.io import read_examples  # noqa: E402
from constraintlab.progress import set_progress  # noqa: E402


def matmul_rate(seconds: float = 2.0) -> float:
    """Sustained float32 GEMM rate (flop/s), best of repeated 1024^3 products."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        for _ in range(4):
            torch.mm(a, b)
        best = max(best, 4 * 2 * 1024 ** 3 / (time.perf_counter() - t))
    return best


def flops_needed(model, encoded) -> float:
    """Minimum flops for forward + input-backward on the real tokens (see module doc)."""
    cfg = model.get_base_model().config
    d, layers, vocab = cfg.hidden_size, cfg.num_hidden_layers, cfg.vocab_size
    lin = 0
    for name, mod in model.get_base_model().named_modules():
        if isinstance(mod, torch.nn.Linear) and "lm_head" not in name and "lora_" not in name:
            lin += mod.in_features * mod.out_features
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", d // heads)
    total = 0.0
    for e in encoded:
        t = e.n_tokens
        f_lin = 2 * lin * t
        f_att = layers * 2 * 2 * heads * head_dim * t * (t + 1) / 2
        f_head = 2 * d * vocab * e.n_target_tokens
        total += 2 * f_lin + 3 * f_att + 2 * f_head
    return total


def run_loop(model, encoded) -> float:
    params = [p for n, p in model.named_parameters() if "lora_" in n]
    for p in params:
        p.requires_grad_(True)
    t = time.perf_counter()
    for e in encoded:
        ids = torch.as_tensor(e.input_ids)[None]
        labels = ids.clone()
        labels[0, ~torch.as_tensor(e.target_mask)] = -100
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        np.concatenate([p.grad.numpy().ravel() for p in params])
        for p in params:
            p.grad = None
    elapsed = time.perf_counter() - t
    for p in params:
        p.requires_grad_(False)
    return elapsed


def run_vmap(model, encoded, batches) -> tuple[float, str]:
    from torch.func import functional_call, grad, vmap

    names = [n for n, _ in model.named_parameters() if "lora_" in n]
    params = {n: p.detach() for n, p in model.named_parameters() if n in names}

    def loss_fn(prm, ids, labels):
        # right padding + causal attention: real tokens never see padding, no mask needed
        logits = functional_call(model, prm, args=(), kwargs={"input_ids": ids[None]}).logits[0]
        logp = torch.log_softmax(logits[:-1], dim=-1)
        lab = labels[1:]
        mask = (lab >= 0).to(logp.dtype)
        nll = -torch.gather(logp, 1, lab.clamp(min=0)[:, None])[:, 0]
        return (nll * mask).sum() / mask.sum()

    per_example = vmap(grad(loss_fn), in_dims=(None, 0, 0))
    # vmap materialises full (rows, length, vocab) logits: at most `group` rows per call
    vocab = model.get_base_model().config.vocab_size
    t = time.perf_counter()
    try:
        for bucket in batches:
            length = max(encoded[i].n_tokens for i in bucket)
            group = max(1, int(2e8 // (length * vocab)))
            for s in range(0, len(bucket), group):
                _vmap_group(per_example, params, names, encoded, bucket[s:s + group])
    except Exception as err:  # report, do not hide: vmap support depends on the model code
        return float("nan"), f"failed: {type(err).__name__}: {str(err)[:120]}"
    return time.perf_counter() - t, "ok"


def _vmap_group(per_example, params, names, encoded, b) -> None:
    """Raw per-example gradients of the examples ``b`` (right-padded) with vmap(grad)."""
    length = max(encoded[i].n_tokens for i in b)
    ids = torch.zeros(len(b), length, dtype=torch.long)
    labels = torch.full((len(b), length), -100, dtype=torch.long)
    for row, i in enumerate(b):
        e = encoded[i]
        ids[row, :e.n_tokens] = torch.as_tensor(e.input_ids)
        lab = torch.as_tensor(e.input_ids).clone()
        lab[~torch.as_tensor(e.target_mask)] = -100
        labels[row, :e.n_tokens] = lab
    g = per_example(params, ids, labels)
    torch.cat([g[n].reshape(len(b), -1) for n in names], 1).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=151936,
                    help="embedding rows (default: Qwen3's vocabulary; the tokenizer itself is "
                         "a 2000-token BPE trained on GSM8K)")
    ap.add_argument("--skip-vmap", action="store_true")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads for every method and the matmul rate (0: default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    set_progress(False)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = build_model("qwen3", Path(tmp) / "model", hidden=args.hidden, layers=args.layers,
                           intermediate=3 * args.hidden, heads=4, kv_heads=2,
                           vocab_size=2000, model_vocab=args.vocab, tie_embeddings=True,
                           seed=0)
        data = read_examples(gsm8k_records(args.n))
        cfg = EncodeConfig(model=str(path))     # defaults: k=1024, batches of 16 / 8192 tokens
        enc = Encoder(cfg)
        encoded = enc.encode(data.examples)
        batches = enc.plan(encoded)
        n = len(encoded)
        n_tgt = sum(e.n_target_tokens for e in encoded)
        n_tok = sum(e.n_tokens for e in encoded)
        padded = sum(len(b) * max(encoded[i].n_tokens for i in b) for b in batches)
        model = enc.loaded.model
        print(f"model: Qwen3 arch, hidden {args.hidden}, {args.layers} layers, vocab "
              f"{args.vocab}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params, "
              f"LoRA P = {enc.loaded.n_params}; threads {torch.get_num_threads()}")
        print(f"data: {n} GSM8K examples, {n_tok} tokens ({n_tgt} target), "
              f"{len(batches)} batches, padding overhead {padded / n_tok - 1:.1%}")
        rate0 = matmul_rate()
        with torch.no_grad():  # warm-up
            model(input_ids=torch.as_tensor(encoded[0].input_ids)[None])
        t_c0 = time.perf_counter()
        extract(data, cfg, Path(tmp) / "store", encoder=enc)
        t_c = time.perf_counter() - t_c0
        t_a = run_loop(model, encoded)
        if args.skip_vmap:
            t_b, note_b = float("nan"), "skipped"
        else:
            t_b, note_b = run_vmap(model, encoded, batches)
        rate1 = matmul_rate()
        rate = max(rate0, rate1)
        flops = flops_needed(model, encoded)
        t_bound = flops / rate
    print(f"machine: float32 matmul {rate / 1e9:.1f} GFLOP/s (before {rate0 / 1e9:.1f}, after "
          f"{rate1 / 1e9:.1f}); needed {flops / 1e9:.1f} GFLOP -> bound {t_bound:.2f} s")
    print(f"{'method':<34}{'s':>8}{'ex/s':>9}{'tgt tok/s':>11}")
    rows = [("(a) per-example backward loop", t_a), (f"(b) torch.func vmap(grad) [{note_b}]", t_b),
            ("(c) constraintlab extract", t_c), ("FLOP bound", t_bound)]
    for name, t in rows:
        print(f"{name:<34}{t:8.2f}{n / t:9.1f}{n_tgt / t:11.0f}")
    print(f"c/a = {t_a / t_c:.2f}x (target >= 2.0)   c/b = {t_b / t_c:.2f}x   "
          f"c/bound = {t_bound / t_c:.1%} of the FLOP bound (target >= 50%)")


if __name__ == "__main__":
    main()
