"""Settings of the ingestion stage."""

from __future__ import annotations

from dataclasses import dataclass

from constraintlab.errors import ConfigError
from constraintlab.io.example import SCHEMAS

TRAIN_ON = ("last-assistant", "all-assistant")
ON_INVALID = ("error", "skip")


@dataclass(frozen=True)
class ReadConfig:
    """How records become examples.

    Parameters
    ----------
    format : str, default "auto"
        ``"auto"`` detects the schema from the first record and requires every other record to
        match it; or one of ``chat``, ``sharegpt``, ``prompt_completion``, ``alpaca``, ``qa``,
        ``text`` to force it (``-`` may be written for ``_``).
    train_on : str, default "last-assistant"
        For chat records: take the loss on the last assistant turn only, or on every assistant
        turn (``"all-assistant"``).
    on_invalid : str, default "skip"
        ``"skip"``: invalid (readable but unusable) records are left out and reported as
        findings in ``ExampleSet.skipped``. ``"error"``: any invalid record stops the read with
        an :class:`InputError` listing the problems.
    max_problems : int, default 20
        How many problems an :class:`InputError` message lists (all are kept on the error).
    """

    format: str = "auto"
    train_on: str = "last-assistant"
    on_invalid: str = "skip"
    max_problems: int = 20

    def __post_init__(self) -> None:
        fmt = self.format.replace("-", "_")
        object.__setattr__(self, "format", fmt)
        if fmt != "auto" and fmt not in SCHEMAS:
            raise ConfigError(f"unknown format {self.format!r}; choose auto or one of "
                              + ", ".join(SCHEMAS))
        if self.train_on not in TRAIN_ON:
            raise ConfigError(f"train_on must be one of {', '.join(TRAIN_ON)}, "
                              f"not {self.train_on!r}")
        if self.on_invalid not in ON_INVALID:
            raise ConfigError(f"on_invalid must be one of {', '.join(ON_INVALID)}, "
                              f"not {self.on_invalid!r}")
        if self.max_problems < 1:
            raise ConfigError("max_problems must be at least 1")
