"""Every setting of ``probe``, in one frozen dataclass."""

from __future__ import annotations

from dataclasses import dataclass

from constraintlab._config import Interval, Options, Settings, check_fields
from constraintlab.errors import ConfigError

OPTIMIZERS: tuple[str, ...] = ("adamw", "sgd")

#: Valid values of each :class:`ProbeConfig` field (types from the annotations; ``betas``:
#: each element).
CONSTRAINTS: dict[str, Interval | Options] = {
    "optimizer": Options(OPTIMIZERS), "steps": Interval(1, None),
    "lr": Interval(0, None, "neither", finite=True), "betas": Interval(0, 1, "left"),
    "eps": Interval(0, None, "neither", finite=True),
    "weight_decay": Interval(0, None, finite=True), "probe_size": Interval(1, None),
    "seed": Interval(0, None), "top_tokens": Interval(0, None),
}


@dataclass(frozen=True)
class ProbeConfig(Settings):
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
        check_fields(self, CONSTRAINTS)
        if self.optimizer == "sgd" and self.weight_decay != 0:
            raise ConfigError("weight_decay applies to adamw only; use 0 with sgd")

    def optimizer_settings(self) -> dict:
        """The optimiser's own settings, as passed to torch (JSON-ready)."""
        if self.optimizer == "sgd":
            return {"name": "sgd", "lr": self.lr, "momentum": 0.0, "weight_decay": 0.0,
                    "steps": self.steps}
        return {"name": "adamw", "lr": self.lr, "betas": list(self.betas), "eps": self.eps,
                "weight_decay": self.weight_decay, "steps": self.steps}
