"""The public entry of the io stage: :func:`read_examples`."""

from __future__ import annotations

import logging
import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from constraintlab.errors import InputError, Problem
from constraintlab.io.config import ReadConfig
from constraintlab.io.example import Example
from constraintlab.io.records import read_raw
from constraintlab.io.schemas import RecordProblem, convert, describe_unknown, detect_schema

logger = logging.getLogger(__name__)


@dataclass
class ExampleSet:
    """The examples read from one source, and what was left out.

    Attributes
    ----------
    examples : list[Example]
        Valid examples in file order.
    source : str
        The path (or ``<records>`` / ``<dataset>``).
    schema : str
        The schema every record was read as.
    n_records : int
        Records found, valid or not (blank JSONL lines are not records).
    skipped : list[Problem]
        Records left out with ``on_invalid="skip"`` (empty otherwise).
    content_hash : str
        sha256 of the file's bytes (of the canonical JSON for in-memory data): the identity of
        the dataset in every manifest.
    config : ReadConfig
        The settings it was read with.
    """

    examples: list[Example]
    source: str
    schema: str
    n_records: int
    content_hash: str
    config: ReadConfig
    skipped: list[Problem] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self) -> Iterator[Example]:
        return iter(self.examples)

    def __getitem__(self, i: int) -> Example:
        return self.examples[i]

    def length_stats(self) -> dict[str, dict[str, float]]:
        """Length statistics in characters: ``{"input"|"target": {min, median, mean, max}}``."""
        out = {}
        for side in ("input", "target"):
            lengths = [len(getattr(ex, f"{side}_text")) for ex in self.examples]
            out[side] = {"min": min(lengths), "median": statistics.median(lengths),
                         "mean": statistics.fmean(lengths), "max": max(lengths)}
        return out


def read_examples(data: Any, config: ReadConfig | None = None, **settings: Any) -> ExampleSet:
    """Read a dataset and turn every record into an :class:`Example`.

    Parameters
    ----------
    data : str | os.PathLike | list[dict] | datasets.Dataset
        A ``.jsonl`` / ``.json`` / ``.parquet`` file, or records in memory.
    config : ReadConfig, optional
        Settings; ``**settings`` builds one instead (``read_examples(p, format="qa")``).

    Returns
    -------
    ExampleSet

    Raises
    ------
    InputError
        Listing every problem as ``path:line: message``, when a record is invalid (and
        ``on_invalid="error"``), or nothing valid remains.
    """
    if config is None:
        config = ReadConfig(**settings)
    elif settings:
        raise TypeError("pass either config or keyword settings, not both")
    raw = read_raw(data)
    all_assistant = config.train_on == "all-assistant"
    schema, first_line = (config.format, 0) if config.format != "auto" else (None, 0)
    examples: list[Example] = []
    problems: list[Problem] = []

    def problem(message: str) -> Problem:
        prefix = f"record {index}: " if raw.indexed else ""
        return Problem(raw.source, rec.line, prefix + message)

    for index, rec in enumerate(raw.records):
        if rec.problem is not None:
            problems.append(problem(rec.problem))
            continue
        found = detect_schema(rec.value)
        if schema is None:
            if found is None:
                problems.append(problem(describe_unknown(rec.value)))
                continue
            schema, first_line = found, rec.line
        elif config.format == "auto" and found is not None and found != schema:
            problems.append(problem(
                f"mixed schemas: this record is {found} but the file's records are {schema} "
                f"(line {first_line}); use one schema per file, or --format to force one"))
            continue
        # A record matching no schema is read as the file's schema, which names what it lacks.
        try:
            messages, targets, chat = convert(rec.value, schema, all_assistant=all_assistant)
        except RecordProblem as err:
            problems.append(problem(str(err)))
            continue
        examples.append(Example(index=index, line=rec.line, source=raw.source, schema=schema,
                                messages=messages, targets=targets, chat=chat, raw=rec.value))
    if problems and config.on_invalid == "error":
        raise InputError(problems, max_shown=config.max_problems)
    if not examples:
        raise InputError(problems or [Problem(raw.source, 1, "no records")],
                         max_shown=config.max_problems)
    if problems:
        logger.warning("%s: skipped %d invalid record(s) of %d", raw.source, len(problems),
                       len(raw.records))
    assert schema is not None
    return ExampleSet(examples=examples, source=raw.source, schema=schema,
                      n_records=len(raw.records), content_hash=raw.content_hash, config=config,
                      skipped=problems if config.on_invalid == "skip" else [])
