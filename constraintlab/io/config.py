"""Settings of the ingestion stage."""

from __future__ import annotations

from constraintlab._config import (
    Interval,
    Options,
    Pattern,
    Settings,
    check_fields,
    setting,
    settings_class,
)
from constraintlab.errors import ConfigError
from constraintlab.io.example import SCHEMAS

TRAIN_ON = ("last-assistant", "all-assistant")
ON_INVALID = ("error", "skip")
PREFERENCE = ("chosen", "rejected")

_NAME = Pattern(r"(?s).*\S.*", "a field name, not blank")


@settings_class
class ReadConfig(Settings):
    """How records become examples (each field declared once: default, check, doc)."""

    format: str = setting("auto", Options(("auto", *SCHEMAS)), "Record schema: auto detects it "
                          "from the first record and requires every other to match ('-' may be "
                          "written for '_'; fields is set by target_field).")
    train_on: str = setting("last-assistant", Options(TRAIN_ON), "Chat records: the loss on "
                            "the last assistant turn only, or on every assistant turn.")
    on_invalid: str = setting("skip", Options(ON_INVALID), "Readable but unusable records: skip "
                              "them and list them as findings, or stop with the list of "
                              "problems (error).")
    max_problems: int = setting(20, Interval(1, None), "Problems an InputError message lists "
                                "(all are kept on the error).")
    preference: str = setting("chosen", Options(PREFERENCE), "Preference records: which reply "
                              "is the target (the other is not read).")
    input_field: str | None = setting(None, _NAME, "Read the prompt from this field of every "
                                      "record (needs target_field).")
    target_field: str | None = setting(None, _NAME, "Read the target (the reply trained on) "
                                       "from this field of every record (schema fields).")
    split: str | None = setting(None, _NAME, "The split to read from a datasets.DatasetDict "
                                "(needed when it has several).")
    limit: int | None = setting(None, Interval(1, None), "Read only the first N records (None: "
                                "all).")
    sample: int | None = setting(None, Interval(1, None), "Read N records drawn at random "
                                 "(seeded by sample_seed), kept in file order; not with a "
                                 "limit.")
    sample_seed: int = setting(0, Interval(0, None), "Seed of the sample draw "
                               "(numpy.random.default_rng).")

    def __post_init__(self) -> None:
        if isinstance(self.format, str):
            object.__setattr__(self, "format", self.format.replace("-", "_"))
            if self.format != "auto" and self.format not in SCHEMAS:
                raise ConfigError(f"unknown format {self.format!r}; choose auto or one of "
                                  + ", ".join(SCHEMAS))
        check_fields(self)
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
