"""Settings of the ingestion stage."""

from __future__ import annotations

from dataclasses import dataclass

from constraintlab._config import Interval, Options, Settings, check_fields
from constraintlab.errors import ConfigError
from constraintlab.io.example import SCHEMAS

TRAIN_ON = ("last-assistant", "all-assistant")
ON_INVALID = ("error", "skip")
PREFERENCE = ("chosen", "rejected")

#: Valid values of each :class:`ReadConfig` field (types from the annotations).
CONSTRAINTS: dict[str, Interval | Options] = {
    "format": Options(("auto", *SCHEMAS)), "train_on": Options(TRAIN_ON),
    "on_invalid": Options(ON_INVALID), "max_problems": Interval(1, None),
    "preference": Options(PREFERENCE),
    "limit": Interval(1, None), "sample": Interval(1, None), "sample_seed": Interval(0, None),
}


@dataclass(frozen=True)
class ReadConfig(Settings):
    """How records become examples.

    Parameters
    ----------
    format : str, default "auto"
        ``"auto"`` detects the schema from the first record and requires every other record to
        match it; or one of ``chat``, ``sharegpt``, ``prompt_completion``, ``preference``,
        ``alpaca``, ``qa``, ``text`` to force it (``-`` may be written for ``_``). ``fields`` is
        set by ``target_field``.
    train_on : str, default "last-assistant"
        For chat records: take the loss on the last assistant turn only, or on every assistant
        turn (``"all-assistant"``).
    on_invalid : str, default "skip"
        ``"skip"``: invalid (readable but unusable) records are left out and reported as
        findings in ``ExampleSet.skipped``. ``"error"``: any invalid record stops the read with
        an :class:`InputError` listing the problems.
    max_problems : int, default 20
        How many problems an :class:`InputError` message lists (all are kept on the error).
    preference : str, default "chosen"
        Preference records (``chosen``/``rejected``): which reply is the target; the other is
        not read.
    input_field, target_field : str or None, default None
        Read every record as ``{input_field: prompt, target_field: reply}`` (strings), for data
        whose keys match no schema (schema ``fields``). ``target_field`` alone: the target is
        read without a prompt; ``input_field`` needs ``target_field``.
    split : str or None, default None
        The split to read from a ``datasets.DatasetDict`` (needed when it has several).
    limit : int or None, default None
        Read only the first ``limit`` records (a quick first look; ``--limit``). None: all.
    sample : int or None, default None
        Read ``sample`` records drawn without replacement, seeded by ``sample_seed``, kept in
        file order (``--sample``); all of them when the file has fewer. Not with ``limit``.
    sample_seed : int, default 0
        Seed of the ``sample`` draw (``numpy.random.default_rng(sample_seed)``).
    """

    format: str = "auto"
    train_on: str = "last-assistant"
    on_invalid: str = "skip"
    max_problems: int = 20
    preference: str = "chosen"
    input_field: str | None = None
    target_field: str | None = None
    split: str | None = None
    limit: int | None = None
    sample: int | None = None
    sample_seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.format, str):
            object.__setattr__(self, "format", self.format.replace("-", "_"))
            if self.format != "auto" and self.format not in SCHEMAS:
                raise ConfigError(f"unknown format {self.format!r}; choose auto or one of "
                                  + ", ".join(SCHEMAS))
        check_fields(self, CONSTRAINTS)
        for name in ("input_field", "target_field", "split"):
            value = getattr(self, name)
            if value is not None and not value.strip():
                raise ConfigError(f"{name} must name a field, not be blank")
        if self.input_field is not None and self.target_field is None:
            raise ConfigError("input_field (--input-field) needs target_field (--target-field): "
                              "name the field that holds the reply too")
        if self.target_field is not None:
            if self.format not in ("auto", "fields"):
                raise ConfigError(f"target_field (--target-field) reads the named fields; it "
                                  f"cannot be combined with format {self.format!r}")
            if self.target_field == self.input_field:
                raise ConfigError("input_field and target_field name the same field "
                                  f"{self.target_field!r}")
            object.__setattr__(self, "format", "fields")
        elif self.format == "fields":
            raise ConfigError("format 'fields' needs target_field (--target-field NAME)")
        if self.limit is not None and self.sample is not None:
            raise ConfigError("give limit (the first N records) or sample (N drawn at random), "
                              "not both")
