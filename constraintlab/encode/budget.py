"""Batch sizes for the device: a token budget from the free memory, unless given.

``EncodeConfig.batch_size`` / ``max_batch_tokens`` of None mean "choose for the device":

- CPU (and any non-CUDA device): 16 examples and 8,192 padded tokens a batch
  (:data:`CPU_BATCH_SIZE`, :data:`CPU_BATCH_TOKENS`).
- CUDA: no row limit; the token budget is :func:`token_budget` of the free device memory
  (``torch.cuda.mem_get_info`` after the model is loaded), the weights' bytes and the
  activation bytes per token measured on one probe batch (:func:`measure_bytes_per_token`).
  The budget keeps peak memory within ``weights + 25 % + 6 GiB`` (so an 8B model in bfloat16
  runs on a 40 GB card) and within 85 % of what is free.

An explicit value always wins; a budget is never below ``max_length`` (one longest example must
fit). A batch that runs out of memory anyway is split (:meth:`GradientEngine.run`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

logger = logging.getLogger(__name__)

CPU_BATCH_SIZE = 16
CPU_BATCH_TOKENS = 8192
GIB = 1 << 30
#: peak memory allowed at defaults: weights * (1 + EXTRA_FRACTION) + EXTRA_BYTES
EXTRA_FRACTION = 0.25
EXTRA_BYTES = 6 * GIB
FREE_FRACTION = 0.85      # never plan for more than this share of the free memory
MAX_AUTO_TOKENS = 1 << 18  # 262,144 padded tokens: beyond this nothing is gained
PROBE_TOKENS = 2048       # padded tokens of the probe batch


@dataclass(frozen=True)
class Batching:
    """Resolved batch limits.

    Attributes
    ----------
    batch_size : int or None
        Most examples a batch (None: no limit besides tokens).
    max_batch_tokens : int
        Most padded tokens a batch.
    checkpointing : bool
        Activation checkpointing is needed to fit (``activation_checkpointing="auto"``).
    source : str
        ``"config"``, ``"cpu-default"`` or ``"cuda-free-memory"``.
    """

    batch_size: int | None
    max_batch_tokens: int
    checkpointing: bool = False
    source: str = "config"


def token_budget(free_bytes: float, weight_bytes: float, bytes_per_token: float,
                 fixed_bytes: float, max_length: int) -> tuple[int, bool]:
    """Padded tokens a batch may hold, and whether that needs activation checkpointing.

    Parameters
    ----------
    free_bytes : free device memory with the model loaded
    weight_bytes : bytes of the model's parameters
    bytes_per_token : activation bytes per padded token (forward + backward peak)
    fixed_bytes : per-batch bytes that do not grow with tokens (the head's scratch)
    max_length : longest example

    Returns
    -------
    tokens : int, in ``[max_length, MAX_AUTO_TOKENS]`` (at least ``max_length`` even when that
        does not fit: the out-of-memory path then decides)
    too_small : bool, True when not even ``max_length`` tokens fit in the allowance
    """
    allowance = min(FREE_FRACTION * free_bytes,
                    EXTRA_FRACTION * weight_bytes + EXTRA_BYTES) - fixed_bytes
    tokens = 0
    if allowance > 0 and np.isfinite(bytes_per_token):
        tokens = int(allowance // max(bytes_per_token, 1.0))
    too_small = tokens < max_length
    return int(np.clip(tokens, max_length, max(MAX_AUTO_TOKENS, max_length))), too_small


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of every parameter and buffer of ``model``."""
    return int(sum(p.numel() * p.element_size() for p in model.parameters())
               + sum(b.numel() * b.element_size() for b in model.buffers()))


def measure_bytes_per_token(engine, vocab_limit: int, tokens: int = PROBE_TOKENS,
                            length: int = 512) -> float:
    """Peak activation bytes per padded token of one probe batch on CUDA.

    Runs ``engine`` on ``tokens // length`` synthetic rows of ``length`` random token ids
    (second half of each row the target, as in instruction data) and divides the peak
    allocated bytes above the resident ones, less the head's scratch, by the tokens.
    """
    from constraintlab.encode.gradients import is_out_of_memory

    while True:
        try:
            return _probe(engine, vocab_limit, tokens, length)
        except RuntimeError as err:
            if not is_out_of_memory(err):
                raise
        engine._release()
        if tokens <= 256:
            return float("inf")            # not even a short probe fits: too small
        tokens, length = tokens // 2, min(length, tokens // 2)


def _probe(engine, vocab_limit: int, tokens: int, length: int) -> float:
    from constraintlab.encode.tokenize import Encoded

    rng = np.random.default_rng(0)
    rows = max(1, tokens // length)
    batch = []
    for _ in range(rows):
        ids = rng.integers(0, vocab_limit, size=length).astype(np.int64)
        mask = np.zeros(length, dtype=bool)
        mask[length // 2:] = True
        batch.append(Encoded(position=0, input_ids=ids, target_mask=mask, n_truncated=0,
                             template="plain"))
    dev = engine.device
    torch.cuda.synchronize(dev)
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    engine._run(batch)
    torch.cuda.synchronize(dev)
    peak = torch.cuda.max_memory_allocated(dev) - base
    engine._release()
    return max(float(peak - engine.head_scratch_bytes()), 0.0) / (rows * length) * 1.1


def resolve_batching(config, engine, vocab_limit: int) -> Batching:
    """The batch limits ``config`` asks for on ``engine``'s device (see the module doc)."""
    explicit_tokens = config.max_batch_tokens
    if engine.device.type != "cuda":
        return Batching(config.batch_size or CPU_BATCH_SIZE,
                        explicit_tokens or max(CPU_BATCH_TOKENS, config.max_length),
                        config.activation_checkpointing == "on",
                        "config" if explicit_tokens else "cpu-default")
    ckpt = config.activation_checkpointing == "on"
    if explicit_tokens is not None:
        return Batching(config.batch_size, explicit_tokens, ckpt, "config")
    free, _total = torch.cuda.mem_get_info(engine.device)
    wbytes = weight_bytes(engine.loaded.model)
    engine.set_checkpointing(ckpt)
    per_token = measure_bytes_per_token(engine, vocab_limit)
    tokens, too_small = token_budget(free, wbytes, per_token, engine.head_scratch_bytes(),
                                     config.max_length)
    if too_small and config.activation_checkpointing == "auto":
        engine.set_checkpointing(True)
        ckpt = True
        per_token = measure_bytes_per_token(engine, vocab_limit)
        tokens, _ = token_budget(free, wbytes, per_token, engine.head_scratch_bytes(),
                                 config.max_length)
    logger.info("batch budget %d padded tokens (free %.1f GiB, weights %.1f GiB, %.0f KiB a "
                "token measured, checkpointing %s)", tokens, free / GIB, wbytes / GIB,
                per_token / 1024, "on" if ckpt else "off")
    return Batching(config.batch_size, tokens, ckpt, "cuda-free-memory")
