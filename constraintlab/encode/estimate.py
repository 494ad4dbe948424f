"""What an extraction will cost, said before it starts: time and memory from token counts and
the model's size.

How it is computed (stated in the log line too):

- **tokens**: up to :data:`SAMPLE` examples spread over the data are tokenised exactly as the
  encoder will (:class:`~constraintlab.encode.tokenize.Renderer`); their tokens per character
  times the characters of all examples gives the total ``T`` (the target-only pass that scores
  tokens without the input adds its target tokens ``T_y``).
- **work**: a forward pass costs ``2 P_model`` FLOPs per token and the backward pass to the
  activations (frozen weights, no weight gradients) about as much again, so
  ``F = 4 P_model T + 2 P_model T_y``.
- **rate**: this device's matmul rate, timed on a ``(512, d) @ (d, 4d)`` product in the model's
  dtype for about 0.1 s, times :data:`EFFICIENCY` (the share of that rate the per-example
  gradient loop reaches; measured on the reference model, see the module's benchmark note).
- **memory**: the weights (``P_model`` x bytes per value) plus the activations of one batch,
  ``max_batch_tokens x d x layers x`` :data:`ACTIVATION_FACTOR` values kept for the backward
  pass; and on disk the store, ``N x (k + 2 d)`` float32.

It is an estimate to decide whether to wait, take ``--limit``/``--sample`` or a GPU; the
measured time is in the store's manifest (``stats.seconds``) afterwards.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from constraintlab.io import Example

logger = logging.getLogger(__name__)

#: Examples tokenised to learn the tokens per character.
SAMPLE = 64
#: Share of the timed matmul rate the extraction loop reaches (per-example hooks, small
#: batches, projection): measured 0.65 on the reference model, 48 sample rows, 2 CPU cores
#: under load (estimate 60 s at the full timed rate, extraction loop 92 s).
EFFICIENCY = 0.6
#: Activation values kept per token, per layer, in units of the hidden size.
ACTIVATION_FACTOR = 16


@dataclass(frozen=True)
class Estimate:
    """The cost of extracting ``n_examples`` examples (see the module docstring).

    Attributes
    ----------
    n_examples, tokens, target_tokens : int
        Examples to compute and their estimated tokens (all / target only).
    model_params : int
        Parameters of the base model.
    flops : float
        Estimated floating-point operations.
    rate : float
        Timed matmul rate of the device (FLOP/s), before :data:`EFFICIENCY`.
    seconds : float
        ``flops / (rate * EFFICIENCY)``.
    memory_bytes : int
        Weights plus one full batch's activations (an upper bound: batches are often smaller
        than ``max_batch_tokens``).
    store_bytes : int
        Feature store on disk.
    """

    n_examples: int
    tokens: int
    target_tokens: int
    model_params: int
    flops: float
    rate: float
    seconds: float
    memory_bytes: int
    store_bytes: int

    def line(self) -> str:
        """One line for the log: the numbers and how they were computed."""
        return (f"estimate: {self.n_examples} examples, ~{self.tokens:,} tokens; "
                f"~{_duration(self.seconds)} and at most ~{_size(self.memory_bytes)} memory, "
                f"{_size(self.store_bytes)} store "
                f"(4 x {self.model_params / 1e6:.1f}M params x tokens + the target-only pass, "
                f"at {EFFICIENCY:.0%} of this device's timed {self.rate / 1e9:.0f} GFLOP/s; "
                "use --limit N or --sample N for a quicker look)")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


def matmul_rate(device, dtype, d: int, seconds: float = 0.1) -> float:
    """FLOP/s of a ``(512, d) @ (d, 4d)`` product on ``device`` in ``dtype`` (timed)."""
    import torch

    a = torch.randn(512, d, device=device).to(dtype)
    b = torch.randn(d, 4 * d, device=device).to(dtype)
    torch.matmul(a, b)                      # warm-up
    n, start = 0, time.perf_counter()
    while True:
        torch.matmul(a, b)
        n += 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return 2.0 * 512 * d * 4 * d * n / elapsed


def estimate_extraction(examples: Sequence[Example], renderer, model, *, k: int,
                        max_batch_tokens: int) -> Estimate:
    """The :class:`Estimate` of extracting ``examples`` with ``model`` (a torch module) and
    ``renderer`` (the encoder's tokeniser), ``k`` projected dimensions."""
    n = len(examples)
    step = max(1, n // SAMPLE)
    chars = tok = tgt_chars = tgt_tok = 0
    for pos in range(0, n, step)[:SAMPLE]:
        ex = examples[pos]
        enc, _ = renderer.encode(ex, pos)
        if enc is None:
            continue
        chars += len(ex.input_text) + len(ex.target_text)
        tgt_chars += len(ex.target_text)
        tok += enc.n_tokens
        tgt_tok += enc.n_target_tokens
    all_chars = sum(len(ex.input_text) + len(ex.target_text) for ex in examples)
    all_tgt = sum(len(ex.target_text) for ex in examples)
    tokens = int(all_chars * tok / chars) if chars else 0
    target_tokens = int(all_tgt * tgt_tok / tgt_chars) if tgt_chars else 0
    params = list(model.parameters())
    p_model = sum(p.numel() for p in params)
    first = params[0]
    cfg = model.get_base_model().config if hasattr(model, "get_base_model") else model.config
    d = int(getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd", None) or 256)
    layers = int(getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", None) or 1)
    flops = 4.0 * p_model * tokens + 2.0 * p_model * target_tokens
    rate = matmul_rate(first.device, first.dtype, d)
    seconds = flops / (rate * EFFICIENCY)
    per_value = first.element_size()
    memory = p_model * per_value + max_batch_tokens * d * layers * ACTIVATION_FACTOR * per_value
    return Estimate(n_examples=n, tokens=tokens, target_tokens=target_tokens,
                    model_params=p_model, flops=flops, rate=rate, seconds=seconds,
                    memory_bytes=int(memory), store_bytes=int(n * (k + 2 * d) * 4))


def log_estimate(examples: Sequence[Example], renderer, model, *, k: int,
                 max_batch_tokens: int) -> Estimate | None:
    """Log :func:`estimate_extraction`'s line (INFO on this module's logger, which the CLI
    shows unless ``--quiet``); an estimate that cannot be made is skipped, never an error."""
    if not examples:
        return None
    try:
        est = estimate_extraction(examples, renderer, model, k=k,
                                  max_batch_tokens=max_batch_tokens)
    except Exception as err:  # an estimate must never stop the work it estimates
        logger.debug("no estimate: %s: %s", type(err).__name__, err)
        return None
    logger.info("%s", est.line())
    return est
