"""Every setting of ``probe``, in one frozen dataclass."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from constraintlab.errors import ConfigError

OPTIMIZERS: tuple[str, ...] = ("adamw", "sgd")


@dataclass(frozen=True)
class ProbeConfig:
    """Settings of a probe: the update taken on the chosen examples and what is measured.

    The update is ``steps`` full-batch steps of ``optimizer`` on the mean training loss of the
    chosen examples (mean over examples of each example's mean NLL over its target tokens); the
    examples are fed in chunks of the encoder's ``batch_size`` / ``max_batch_tokens`` with
    gradient accumulation, so the chunking never changes the step. Only the LoRA factors move.

    Attributes
    ----------
    optimizer : {"adamw", "sgd"}, default ``"adamw"``
        ``adamw``: ``torch.optim.AdamW`` with ``betas``, ``eps`` and ``weight_decay`` below (the
        usual LoRA fine-tuning optimiser). ``sgd``: plain ``torch.optim.SGD`` (no momentum, no
        weight decay), the optimiser of the design notes' response map.
    steps : int, default 3
        Optimiser steps on the chosen examples.
    lr : float, default 1e-4
        Learning rate (a typical LoRA AdamW rate; small enough for a first-order comparison).
    betas : tuple of float, default (0.9, 0.999)
        AdamW's moment decay rates (torch's and Hugging Face's defaults).
    eps : float, default 1e-8
        AdamW's denominator term.
    weight_decay : float, default 0.0
        AdamW's decoupled weight decay (0 as in the Hugging Face Trainer; torch's own default
        is 0.01). Must be 0 with ``sgd``.
    probe_size : int, default 64
        Most probe examples sampled from the rest of the dataset when no probe file is given.
    seed : int, default 0
        Seeds the probe sample (``numpy.random.default_rng``).
    top_tokens : int, default 20
        How many target tokens whose log-probability moved most are reported.
    """

    optimizer: str = "adamw"
    steps: int = 3
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    probe_size: int = 64
    seed: int = 0
    top_tokens: int = 20

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        for name in ("steps", "probe_size"):
            _check_int(name, getattr(self, name), minimum=1)
        for name in ("seed", "top_tokens"):
            _check_int(name, getattr(self, name), minimum=0)
        if not _finite(self.lr) or self.lr <= 0:
            raise ConfigError(f"lr must be a positive number, got {self.lr!r}")
        try:
            betas = tuple(float(b) for b in self.betas)
        except (TypeError, ValueError):
            raise ConfigError(f"betas must be two numbers in [0, 1), got {self.betas!r}") from None
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ConfigError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        object.__setattr__(self, "betas", betas)
        if not _finite(self.eps) or self.eps <= 0:
            raise ConfigError(f"eps must be a positive number, got {self.eps!r}")
        if not _finite(self.weight_decay) or self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.optimizer == "sgd" and self.weight_decay != 0:
            raise ConfigError("weight_decay applies to adamw only; use 0 with sgd")

    def optimizer_settings(self) -> dict:
        """The optimiser's own settings, as passed to torch (JSON-ready)."""
        if self.optimizer == "sgd":
            return {"name": "sgd", "lr": self.lr, "momentum": 0.0, "weight_decay": 0.0,
                    "steps": self.steps}
        return {"name": "adamw", "lr": self.lr, "betas": list(self.betas), "eps": self.eps,
                "weight_decay": self.weight_decay, "steps": self.steps}

    def to_dict(self) -> dict:
        """JSON-ready dict of every field (tuples as lists)."""
        return {**asdict(self), "betas": list(self.betas)}


def _finite(value) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def _check_int(name: str, value, *, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
