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

The bound counts the no-input pass too (forward only over each example's no-input sequence,
logits at its scored targets: 1 x linear + 1 x attention + 1 x lm_head flops).

Real-size shapes on a GPU (random bf16 weights built from the real models' configs on the
device, saved with the project's tokenizer and loaded by path as users do; no download; GSM8K
rows from ``data/gsm8k_sample.jsonl``; ``extract`` at default settings after a warm-up):

    python benchmarks/bench_extract.py --device cuda --shape qwen3-0.6b|qwen3-4b|qwen3-8b|pythia-1b
    bash benchmarks/gpu_extract.sh          # all four, guarded, a table at the end

prints tok/s (all tokens of the examples per second, as Bergson counts), % of the FLOP bound at
a bf16 GEMM rate measured in the same run (8192^3 products), peak device memory against
``weights + 25 % + 6 GiB``, the per-example loop on the same device (forward +
``loss.backward()`` per example, raw gradients kept on the device) and Bergson's published
figure beside it. ``--device cpu --shape tiny`` runs the same code on a small model.
"""

from __future__ import annotations

import argparse
import json
import shutil
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


def flops_needed(model, encoded, *, noinput: bool = True) -> float:
    """Minimum flops for forward + input-backward on the real tokens, plus the forward of the
    no-input pass (see module doc)."""
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
        if noinput and e.noinput_ids is not None and not e.noinput_same:
            t0 = len(e.noinput_ids)
            scored = int((e.noinput_positions >= 1).sum())
            total += (2 * lin * t0 + layers * 2 * 2 * heads * head_dim * t0 * (t0 + 1) / 2
                      + 2 * d * vocab * scored)
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


# ---- real-size shapes on a device ---------------------------------------------------------------

#: the real models' hyperparameters (random weights; the project's 4k-token tokenizer)
SHAPES: dict[str, dict] = {
    "qwen3-0.6b": dict(arch="qwen3", hidden_size=1024, num_hidden_layers=28,
                       num_attention_heads=16, num_key_value_heads=8, head_dim=128,
                       intermediate_size=3072, vocab_size=151936, tie_word_embeddings=True),
    "qwen3-4b": dict(arch="qwen3", hidden_size=2560, num_hidden_layers=36,
                     num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                     intermediate_size=9728, vocab_size=151936, tie_word_embeddings=True),
    "qwen3-8b": dict(arch="qwen3", hidden_size=4096, num_hidden_layers=36,
                     num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                     intermediate_size=12288, vocab_size=151936, tie_word_embeddings=False),
    "pythia-1b": dict(arch="gpt_neox", hidden_size=2048, num_hidden_layers=16,
                      num_attention_heads=8, intermediate_size=8192, vocab_size=50304,
                      rotary_pct=0.25, use_parallel_residual=True, tie_word_embeddings=False),
    "tiny": dict(arch="qwen3", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, intermediate_size=192, vocab_size=151936,
                 tie_word_embeddings=True),
    "tiny-neox": dict(arch="gpt_neox", hidden_size=64, num_hidden_layers=2,
                      num_attention_heads=4, intermediate_size=256, vocab_size=50304,
                      rotary_pct=0.25, use_parallel_residual=True, tie_word_embeddings=False),
}
#: EleutherAI Bergson, full-model projected gradients on one GH200 (docs plots, by eye)
BERGSON = {"pythia-1b": ("pythia-1b", 28_000), "qwen3-8b": ("pythia-6.9b", 13_000)}
#: the issue's goals: share of the FLOP bound, and tok/s
GOALS = {"qwen3-0.6b": (0.25, None), "pythia-1b": (0.25, 56_000), "qwen3-4b": (0.50, None),
         "qwen3-8b": (0.50, 13_000)}
SAMPLE = ROOT / "data" / "gsm8k_sample.jsonl"
TOKENIZER = ROOT / "constraintlab" / "reference" / "weights"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gemm_rate(device: torch.device, dtype: torch.dtype, seconds: float = 1.5) -> float:
    """Best sustained GEMM rate (flop/s): 8192^3 products on CUDA, 1024^3 on CPU."""
    if device.type != "cuda":
        return matmul_rate(seconds)
    size = 8192
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    torch.mm(a, b)
    _sync(device)
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        for _ in range(5):
            torch.mm(a, b)
        _sync(device)
        best = max(best, 5 * 2 * size ** 3 / (time.perf_counter() - t))
    del a, b
    return best


def build_shape(shape: str, path: Path, device: torch.device, dtype: torch.dtype) -> int:
    """Build ``shape`` with random weights on ``device``, save it with the project's tokenizer
    to ``path``; returns the weights' bytes."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPTNeoXConfig, Qwen3Config

    spec = dict(SHAPES[shape])
    arch = spec.pop("arch")
    tok = AutoTokenizer.from_pretrained(TOKENIZER)
    ids = dict(pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
               bos_token_id=tok.bos_token_id)
    if arch == "qwen3":
        cfg = Qwen3Config(**spec, **ids, max_position_embeddings=40960, rope_theta=1e6,
                          rms_norm_eps=1e-6)
    else:
        cfg = GPTNeoXConfig(**spec, **ids, max_position_embeddings=2048)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    nbytes = sum(p.numel() * p.element_size() for p in model.parameters())
    model.save_pretrained(path)
    tok.save_pretrained(path)
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return int(nbytes)


def model_dir(nbytes_hint: int) -> Path:
    """A scratch directory, in RAM (/dev/shm) when it has room."""
    shm = Path("/dev/shm")
    if shm.is_dir():
        try:
            if shutil.disk_usage(shm).free > 2.5 * nbytes_hint:
                return Path(tempfile.mkdtemp(dir=shm))
        except OSError:
            pass
    return Path(tempfile.mkdtemp())


def shape_bytes(shape: str) -> int:
    """bf16 bytes of ``shape``'s parameters (for choosing where to save it)."""
    s = SHAPES[shape]
    d, layers, vocab, inter = (s["hidden_size"], s["num_hidden_layers"], s["vocab_size"],
                               s["intermediate_size"])
    per_layer = 4 * d * d + 3 * d * inter
    emb = vocab * d * (1 if s["tie_word_embeddings"] else 2)
    return 2 * (layers * per_layer + emb)


def device_loop(model, encoded, device: torch.device) -> float:
    """Seconds of the per-example loop (forward + ``loss.backward()``, raw LoRA gradients kept
    on the device)."""
    params = [p for n, p in model.named_parameters() if "lora_" in n]
    for p in params:
        p.requires_grad_(True)
    try:
        def one(e):
            ids = torch.as_tensor(e.input_ids, device=device)[None]
            labels = ids.clone()
            labels[0, ~torch.as_tensor(e.target_mask, device=device)] = -100
            model(input_ids=ids, labels=labels, use_cache=False).loss.backward()
            flat = torch.cat([p.grad.reshape(-1) for p in params])
            for p in params:
                p.grad = None
            return flat

        for e in encoded[:2]:          # warm-up
            one(e)
        _sync(device)
        t = time.perf_counter()
        kept = [one(e) for e in encoded]
        _sync(device)
        elapsed = time.perf_counter() - t
        del kept
    finally:
        for p in params:
            p.requires_grad_(False)
    return elapsed


def run_shape(args) -> dict:
    """One shape end to end; returns (and writes to ``--json``) its figures."""
    from constraintlab.io import read_examples

    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype or ("bfloat16" if device.type == "cuda" else "float32"))
    res: dict = {"shape": args.shape, "device": str(device), "dtype": str(dtype).split(".")[-1]}

    def save() -> None:
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=1))

    t_start = time.perf_counter()
    where = model_dir(shape_bytes(args.shape))
    try:
        if device.type == "cuda":
            res["gpu"] = torch.cuda.get_device_name(device)
        rate = gemm_rate(device, dtype)
        res["gemm_tflops"] = rate / 1e12
        t = time.perf_counter()
        res["weights_bytes"] = build_shape(args.shape, where / "model", device, dtype)
        res["build_save_s"] = time.perf_counter() - t
        save()
        data = read_examples(str(SAMPLE))
        examples = data.examples[:args.n]
        cfg = EncodeConfig(model=str(where / "model"), dtype=res["dtype"], device=str(device),
                           max_batch_tokens=args.max_batch_tokens)
        t = time.perf_counter()
        enc = Encoder(cfg)
        res["load_s"] = time.perf_counter() - t
        res["max_batch_tokens"] = enc.max_batch_tokens
        res["batch_source"] = enc.batching.source
        res["checkpointing"] = enc.engine.checkpointing
        encoded = enc.encode(examples)
        batches = enc.plan(encoded)
        res["n"] = len(encoded)
        res["tokens"] = int(sum(e.n_tokens for e in encoded))
        res["target_tokens"] = int(sum(e.n_target_tokens for e in encoded))
        res["batches"] = len(batches)
        res["max_rows"] = max(len(b) for b in batches)
        model = enc.loaded.model
        flops = flops_needed(model, encoded)
        res["bound_s"] = flops / rate
        extract(examples[:16], cfg, where / "warm", encoder=enc)          # warm-up
        _sync(device)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        t = time.perf_counter()
        extract(examples, cfg, where / "store", encoder=enc)
        _sync(device)
        res["extract_s"] = time.perf_counter() - t
        res["tok_s"] = res["tokens"] / res["extract_s"]
        res["bound_share"] = res["bound_s"] / res["extract_s"]
        res["splits"] = enc.engine.n_splits
        if device.type == "cuda":
            res["peak_bytes"] = torch.cuda.max_memory_allocated(device)
            res["peak_reserved_bytes"] = torch.cuda.max_memory_reserved(device)
        res["peak_limit_bytes"] = res["weights_bytes"] * 1.25 + 6 * 2 ** 30
        save()
        if args.extra_tokens:                 # the same, with a given token budget
            from constraintlab.encode.budget import Batching

            auto = enc.batching
            enc.batching = Batching(None, max(args.extra_tokens, cfg.max_length), False,
                                    "config")
            try:
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(device)
                t = time.perf_counter()
                extract(examples, cfg, where / "store2", encoder=enc)
                _sync(device)
                extra = {"max_batch_tokens": enc.max_batch_tokens,
                         "extract_s": time.perf_counter() - t, "splits": enc.engine.n_splits}
                extra["tok_s"] = res["tokens"] / extra["extract_s"]
                extra["bound_share"] = res["bound_s"] / extra["extract_s"]
                if device.type == "cuda":
                    extra["peak_bytes"] = torch.cuda.max_memory_allocated(device)
                res["extra"] = extra
            except Exception as err:   # report, go on with the loop
                res["extra"] = {"error": f"{type(err).__name__}: {str(err)[:200]}"}
            finally:
                enc.batching = auto
            save()
        left = args.deadline - (time.perf_counter() - t_start)
        n_loop = min(args.loop_n, len(encoded))
        if left > 15:
            t_loop = device_loop(model, encoded[:n_loop], device)
            res["loop_tok_s"] = sum(e.n_tokens for e in encoded[:n_loop]) / t_loop
            res["loop_n"] = n_loop
        else:
            res["loop_note"] = f"skipped: {left:.0f} s left of the deadline"
    except Exception as err:   # report, do not hide
        res["error"] = f"{type(err).__name__}: {str(err)[:300]}"
        raise
    finally:
        res["total_s"] = time.perf_counter() - t_start
        save()
        shutil.rmtree(where, ignore_errors=True)
    return res


def _fmt(x, spec: str, none: str = "not measured") -> str:
    return none if x is None else format(x, spec)


def table(rows: list[dict]) -> str:
    """The shapes' figures as a Markdown table."""
    head = ("| shape | rows / tokens | batch tokens | tok/s | % of bound | peak GB (limit) | "
            "loop tok/s | x loop | Bergson tok/s | x Bergson | goal |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        tok = r.get("tok_s")
        share = r.get("bound_share")
        peak = r.get("peak_bytes")
        limit = r.get("peak_limit_bytes")
        loop = r.get("loop_tok_s")
        berg = BERGSON.get(r["shape"])
        goal_share, goal_tok = GOALS.get(r["shape"], (None, None))
        goal = []
        if goal_share is not None:
            goal.append(f">= {goal_share:.0%} bound: "
                        f"{'yes' if share is not None and share >= goal_share else 'no'}")
        if goal_tok is not None:
            goal.append(f">= {goal_tok:,} tok/s: "
                        f"{'yes' if tok is not None and tok >= goal_tok else 'no'}")
        if peak is not None and limit is not None:
            goal.append(f"memory: {'yes' if peak <= limit else 'no'}")
        err = f" ERROR {r['error'][:80]}" if r.get("error") else ""
        ex = r.get("extra")
        lines.append(
            f"| {r['shape']}{err} | {r.get('n', '?')} / {r.get('tokens', '?')} | "
            f"{r.get('max_batch_tokens', '?')} ({r.get('batch_source', '?')}) | "
            f"{_fmt(tok, ',.0f')} | {_fmt(share and 100 * share, '.1f')} | "
            f"{_fmt(peak and peak / 1e9, '.1f')} ({_fmt(limit and limit / 1e9, '.1f', '?')}) | "
            f"{_fmt(loop, ',.0f')} | {_fmt(loop and tok and tok / loop, '.2f')} | "
            f"{f'{berg[1]:,} ({berg[0]})' if berg else '-'} | "
            f"{_fmt(berg and tok and tok / berg[1], '.2f', '-')} | {'; '.join(goal) or '-'} |")
        if ex:
            e_err = f" ERROR {ex['error'][:80]}" if ex.get("error") else ""
            e_tok, e_peak = ex.get("tok_s"), ex.get("peak_bytes")
            lines.append(
                f"| {r['shape']} at a given budget{e_err} | same | "
                f"{ex.get('max_batch_tokens', '?')} (--max-batch-tokens) | {_fmt(e_tok, ',.0f')} | "
                f"{_fmt(ex.get('bound_share') and 100 * ex['bound_share'], '.1f')} | "
                f"{_fmt(e_peak and e_peak / 1e9, '.1f')} | | "
                f"{_fmt(loop and e_tok and e_tok / loop, '.2f')} | | "
                f"{_fmt(berg and e_tok and e_tok / berg[1], '.2f', '-')} | "
                f"splits {ex.get('splits', '?')} |")
    return "\n".join(lines)


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
    ap.add_argument("--device", default=None, help="with --shape: cuda or cpu")
    ap.add_argument("--shape", choices=sorted(SHAPES), default=None,
                    help="a real model's shape on --device (see module doc)")
    ap.add_argument("--dtype", default=None, help="with --shape (default bfloat16 on cuda)")
    ap.add_argument("--max-batch-tokens", type=int, default=None,
                    help="with --shape: override the automatic budget")
    ap.add_argument("--loop-n", type=int, default=24, help="with --shape: examples in the loop")
    ap.add_argument("--deadline", type=float, default=1e9,
                    help="with --shape: seconds after which the loop is skipped")
    ap.add_argument("--json", default=None, help="with --shape: write the figures here")
    ap.add_argument("--extra-tokens", type=int, default=0,
                    help="with --shape: also extract with this --max-batch-tokens")
    ap.add_argument("--table", default=None, metavar="DIR",
                    help="print the table of every *.json in DIR and exit")
    args = ap.parse_args()
    if args.table:
        rows = []
        for p in sorted(Path(args.table).glob("*.json")):
            try:
                row = json.loads(p.read_text())
            except (OSError, ValueError) as err:
                row = {"error": f"unreadable: {err}"}
            if isinstance(row, dict) and ("shape" in row or p.stem in SHAPES):
                rows.append({"shape": p.stem, **row})
        print(table(rows))
        return
    if args.shape:
        set_progress(False)
        if args.threads:
            torch.set_num_threads(args.threads)
        args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        res = run_shape(args)
        print(json.dumps(res))
        print(table([res]))
        return
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
        flops_noinput = flops - flops_needed(model, encoded, noinput=False)
        t_bound = flops / rate
    print(f"machine: float32 matmul {rate / 1e9:.1f} GFLOP/s (before {rate0 / 1e9:.1f}, after "
          f"{rate1 / 1e9:.1f}); needed {flops / 1e9:.1f} GFLOP (no-input pass "
          f"{flops_noinput / 1e9:.1f} of it) -> bound {t_bound:.2f} s")
    print(f"{'method':<34}{'s':>8}{'ex/s':>9}{'tgt tok/s':>11}")
    rows = [("(a) per-example backward loop", t_a), (f"(b) torch.func vmap(grad) [{note_b}]", t_b),
            ("(c) constraintlab extract", t_c), ("FLOP bound", t_bound)]
    for name, t in rows:
        print(f"{name:<34}{t:8.2f}{n / t:9.1f}{n_tgt / t:11.0f}")
    print(f"c/a = {t_a / t_c:.2f}x (target >= 2.0)   c/b = {t_b / t_c:.2f}x   "
          f"c/bound = {t_bound / t_c:.1%} of the FLOP bound (target >= 50%)")


if __name__ == "__main__":
    main()
