"""Every setting of ``probe``, in one frozen dataclass."""

from __future__ import annotations

from constraintlab._config import (
    Interval,
    Options,
    Settings,
    check_fields,
    setting,
    settings_class,
)
from constraintlab.errors import ConfigError

OPTIMIZERS: tuple[str, ...] = ("adamw", "sgd")

_POSITIVE_FINITE = Interval(0, None, "neither", finite=True)


@settings_class
class ProbeConfig(Settings):
    """Settings of a probe: the update taken on the chosen examples and what is measured.

    The update is ``steps`` full-batch steps of ``optimizer`` on the mean training loss of the
    chosen examples (mean over examples of each example's mean NLL over its target tokens); the
    examples are fed in chunks of the encoder's ``batch_size`` / ``max_batch_tokens`` with
    gradient accumulation, so the chunking never changes the step. Only the LoRA factors move.
    """

    optimizer: str = setting("adamw", Options(OPTIMIZERS), "adamw: torch AdamW with betas, eps "
                             "and weight_decay; sgd: plain SGD (no momentum, no weight decay).")
    steps: int = setting(3, Interval(1, None), "Optimiser steps on the chosen examples.")
    lr: float = setting(1e-4, _POSITIVE_FINITE, "Learning rate (a typical LoRA AdamW rate, small "
                        "enough for a first-order comparison).")
    betas: tuple[float, float] = setting((0.9, 0.999), Interval(0, 1, "left"), "AdamW's moment "
                                         "decay rates (torch's and Hugging Face's defaults).")
    eps: float = setting(1e-8, _POSITIVE_FINITE, "AdamW's denominator term.")
    weight_decay: float = setting(0.0, Interval(0, None, finite=True), "AdamW's decoupled weight "
                                  "decay (0 as in the Hugging Face Trainer); must be 0 with sgd.")
    probe_size: int = setting(64, Interval(1, None), "Most probe examples sampled from the rest "
                              "of the dataset when no probe file is given.")
    seed: int = setting(0, Interval(0, None), "Seed of the probe sample "
                        "(numpy.random.default_rng).")
    top_tokens: int = setting(20, Interval(0, None), "Target tokens whose log-probability moved "
                              "most that are reported.")

    def __post_init__(self) -> None:
        check_fields(self)
        if self.optimizer == "sgd" and self.weight_decay != 0:
            raise ConfigError("weight_decay applies to adamw only; use 0 with sgd")

    def optimizer_settings(self) -> dict:
        """The optimiser's own settings, as passed to torch (JSON-ready)."""
        if self.optimizer == "sgd":
            return {"name": "sgd", "lr": self.lr, "momentum": 0.0, "weight_decay": 0.0,
                    "steps": self.steps}
        return {"name": "adamw", "lr": self.lr, "betas": list(self.betas), "eps": self.eps,
                "weight_decay": self.weight_decay, "steps": self.steps}
