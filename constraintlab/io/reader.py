"""The public entry of the io stage: :func:`read_examples`.

Findings
--------
A file that cannot be read at all raises :class:`~constraintlab.errors.InputError` (exit 2,
``path:line: what is wrong``). A record that is readable but unusable is a
:class:`~constraintlab.errors.Finding` with ``severity="invalid"``: with the default
``on_invalid="skip"`` it is left out of the analysis and listed in ``ExampleSet.skipped``; with
``on_invalid="error"`` the read stops with an :class:`InputError` listing them all. A record
that is odd but usable is kept and listed in ``ExampleSet.notes`` (``severity="note"``).

Reason codes (``Finding.code``):

=====================  ========================================================================
invalid (left out)
``invalid_json``       the JSONL line is not JSON
``invalid_utf8``       the JSONL line holds bytes that are not UTF-8
``too_large``          the record is over ``records.MAX_RECORD_BYTES`` (16 MiB)
``too_deep``           arrays/objects nested over ``records.MAX_DEPTH`` (128) levels
``number_too_long``    an integer literal over ``records.MAX_INT_DIGITS`` (4300) digits
``surrogate``          a string holds a lone UTF-16 surrogate such as ``"\\ud800"`` (not text)
``not_object``         the record is not a JSON object
``no_schema``          its keys match no schema (when no record matches one, the read stops
                       with one line naming the keys found and the fix)
``bad_csv_row``        a CSV row has more or fewer fields than the header names
``mixed_schema``       it is another schema than the file's first record
``missing_field``      a field the schema needs is absent
``wrong_type``         a field has the wrong type
``blank_target``       the target (output, answer, completion, assistant turn) is blank
``empty_conversation`` ``messages``/``conversations``/``completion`` is an empty list
``bad_turn``           a turn is not an object, or has no role
``unknown_role``       a turn's role/speaker is not one of the known ones
``bad_content``        content is neither a string nor a list of text parts, or is missing
``bad_tool_call``      ``tool_calls`` is malformed, or on a turn that is not the assistant's
``not_assistant_end``  the conversation does not end with an assistant turn
note (used)
``empty_input``        blank instruction/question/prompt, or only blank turns before the target
``content_parts``      content given as a list of text parts (joined)
=====================  ========================================================================
"""

from __future__ import annotations

import logging
import re
import statistics
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from constraintlab._hashing import json_sha256
from constraintlab.errors import Finding, InputError, Problem
from constraintlab.io._json import key_list
from constraintlab.io.config import ReadConfig
from constraintlab.io.example import Example
from constraintlab.io.records import RawFile, read_raw, record_bytes
from constraintlab.io.schemas import (
    Note,
    RecordProblem,
    convert,
    describe_unknown,
    detect_schema,
    suggest_fields,
)

logger = logging.getLogger(__name__)

_RECORD_PREFIX = re.compile(r"^record \d+: ")


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
    skipped : list[Finding]
        Invalid records left out (``severity="invalid"``), in file order; empty with
        ``on_invalid="error"`` (the read raises instead). Each is a :class:`Problem`
        (``str()`` gives ``path:line: message``) with ``code`` and ``index``.
    notes : list[Finding]
        Odd but usable records that were kept (``severity="note"``), in file order.
    content_hash : str
        sha256 of the file's bytes (of the canonical JSON for in-memory data; of the
        decompressed bytes of a ``.gz`` file): the identity of the dataset in every manifest.
        When a setting picks other examples from the same records (``preference="rejected"``,
        ``input_field``/``target_field``), the sha256 of that hash and those settings, so a
        feature store of one reading is never reused for another.
    config : ReadConfig
        The settings it was read with.
    raw : RawFile
        The records as parsed (:func:`~constraintlab.io.records.read_raw`): what
        :meth:`record_bytes` writes back, so nothing reads the data a second time.
    """

    examples: list[Example]
    source: str
    schema: str
    n_records: int
    content_hash: str
    config: ReadConfig
    raw: RawFile = field(repr=False)
    skipped: list[Finding] = field(default_factory=list)
    notes: list[Finding] = field(default_factory=list)

    @property
    def findings(self) -> list[Finding]:
        """Every finding, invalid and note, ordered by record index (invalid first)."""
        return sorted(self.skipped + self.notes,
                      key=lambda f: (f.index if f.index is not None else -1,
                                     f.severity != "invalid"))

    @property
    def invalid_records(self) -> int:
        """How many records were left out as invalid (``len(skipped)``)."""
        return len(self.skipped)

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self) -> Iterator[Example]:
        return iter(self.examples)

    def __getitem__(self, i: int) -> Example:
        return self.examples[i]

    def record_bytes(self, ids: Sequence[int]) -> tuple[list[bytes], str]:
        """The records of the examples ``ids`` (``Example.index``), in that order, as they are
        written back: the original lines of a JSON Lines file, else one JSON object per line
        (:func:`~constraintlab.io.records.record_bytes`). Nothing is read again."""
        return record_bytes(self.raw, ids)

    def reading(self) -> str:
        """How the records were read, in one sentence: the schema and what is the target."""
        return describe_reading(self.schema, self.config)

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
    data : str | os.PathLike | list[dict] | datasets.Dataset | DatasetDict | pandas.DataFrame
        A ``.jsonl`` / ``.json`` / ``.csv`` / ``.parquet`` file (the first three may be
        gzipped: ``.jsonl.gz``), or records in memory (a ``DatasetDict``: its
        ``config.split``, needed when it has several splits).
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
    raw = read_raw(data, config.split)
    all_assistant = config.train_on == "all-assistant"
    schema, first_line = (config.format, 0) if config.format != "auto" else (None, 0)
    examples: list[Example] = []
    problems: list[Finding] = []
    notes: list[Finding] = []

    def finding(code: str, message: str, severity: str = "invalid") -> Finding:
        prefix = f"record {index}: " if raw.indexed else ""
        return Finding(raw.source, rec.line, prefix + message, code=code, index=index,
                       severity=severity)

    chosen, content_hash = _selection(len(raw.records), raw.content_hash, config)
    for index in chosen:
        rec = raw.records[index]
        if rec.problem is not None:
            problems.append(finding(rec.code or "invalid", rec.problem))
            continue
        found = detect_schema(rec.value)
        if schema is None:
            if found is None:
                code = "not_object" if not isinstance(rec.value, dict) else "no_schema"
                problems.append(finding(code, describe_unknown(rec.value)))
                continue
            schema, first_line = found, rec.line
        elif config.format == "auto" and found is not None and found != schema:
            problems.append(finding("mixed_schema", (
                f"mixed schemas: this record is {found} but the file's records are {schema} "
                f"(line {first_line}); use one schema per file, or --format to force one")))
            continue
        # A record matching no schema is read as the file's schema, which names what it lacks.
        odd: list[Note] = []
        try:
            messages, targets, chat = convert(
                rec.value, schema, all_assistant=all_assistant, notes=odd,
                preference=config.preference, fields=(config.input_field, config.target_field)
                if config.target_field is not None else None)
        except RecordProblem as err:
            problems.append(finding(err.code, str(err)))
            continue
        notes.extend(finding(code, message, "note") for code, message in odd)
        examples.append(Example(index=index, line=rec.line, source=raw.source, schema=schema,
                                messages=messages, targets=targets, chat=chat, raw=rec.value))
    if not examples and problems:
        problems = _one_format_problem(problems, raw.records, schema, config) or problems
    if problems and config.on_invalid == "error":
        raise InputError(list(problems), max_shown=config.max_problems)
    if not examples:
        raise InputError(list(problems) or [Problem(raw.source, 1, "no records")],
                         max_shown=config.max_problems)
    if problems:
        logger.warning("%s: skipped %d invalid record(s) of %d (%s)", raw.source,
                       len(problems), len(raw.records), _counts(problems))
    if notes:
        logger.warning("%s: %d record(s) used with notes (%s)", raw.source,
                       len({f.index for f in notes}), _counts(notes))
    assert schema is not None
    return ExampleSet(examples=examples, source=raw.source, schema=schema,
                      n_records=len(chosen), content_hash=_examples_hash(content_hash, config),
                      config=config, raw=raw,
                      skipped=problems, notes=notes)


def _examples_hash(raw_hash: str, config: ReadConfig) -> str:
    """The file's hash, or with the settings that pick other examples from it folded in."""
    picks = {k: getattr(config, k) for k in ("preference", "input_field", "target_field",
                                             "train_on", "format")
             if getattr(config, k) != getattr(ReadConfig, k)}
    if not picks:
        return raw_hash
    return json_sha256({"data": raw_hash, "read": picks})


def _one_format_problem(problems: list[Finding], records: list, schema: str | None,
                        config: ReadConfig) -> list[Finding] | None:
    """When no record could be read and every one fails the same way (no known schema, or the
    same missing field), one problem with the keys found and the fix, instead of a copy per
    record."""
    codes = {p.code for p in problems}
    texts = {_RECORD_PREFIX.sub("", p.message) for p in problems}
    if not codes or not codes <= {"no_schema", "missing_field"} or len(codes) != 1:
        return None
    if codes == {"missing_field"} and len(texts) != 1:
        return None
    keys: dict[str, None] = {}
    for rec in records:
        if isinstance(rec.value, dict):
            keys.update(dict.fromkeys(map(str, rec.value)))
    first = problems[0]
    n = len(problems)
    every = "the record has" if n == 1 else f"all {n} records have"
    fix = suggest_fields(list(keys))
    if codes == {"no_schema"}:
        message = (f"no known schema: {every} keys [{key_list(keys)}]; name the fields with "
                   f"{fix} (known schemas: messages, conversations, prompt+completion, "
                   "chosen+rejected, instruction+output, question+answer, text)")
    else:
        text = texts.pop().split(" (found keys")[0]
        if schema == "fields":
            flag = ("--target-field" if f"'{config.target_field}'" in text else
                    "--input-field")
            message = f"{text} ({flag}): {every} keys [{key_list(keys)}]; use {fix}"
        else:
            message = (f"{text}: {every} keys [{key_list(keys)}] (read as {schema}); name the "
                       f"fields with {fix}, or choose a schema with --format")
    return [Finding(first.source, first.line, message, code=first.code, index=first.index,
                    severity="invalid")]


def describe_reading(schema: str, config: ReadConfig) -> str:
    """One sentence: how records of ``schema`` are read with ``config`` (what the target is)."""
    turns = ("every assistant turn" if config.train_on == "all-assistant"
             else "the last assistant turn")
    if schema == "preference":
        other = "rejected" if config.preference == "chosen" else "chosen"
        return (f"preference pairs (chosen/rejected): the target is the {config.preference} "
                f"reply ({turns}; Human:/Assistant: transcripts split into turns, the prompt "
                f"field put before the reply); the {other} reply is not read "
                f"(--preference {other} reads it instead)")
    if schema == "fields":
        return (f"named fields: the input is field '{config.input_field}', the target field "
                f"'{config.target_field}'" if config.input_field is not None else
                f"named fields: the target is field '{config.target_field}', read without an "
                "input")
    return {
        "chat": f"chat messages: the target is {turns}, the turns before it the input",
        "sharegpt": f"ShareGPT conversations: the target is {turns}, the turns before it the "
                    "input",
        "prompt_completion": "prompt/completion: the target is the completion",
        "alpaca": "instruction/input/output: the target is the output, the input the "
                  "instruction (and the input field, after a blank line)",
        "qa": "question/answer: the target is the answer",
        "text": "plain text: the whole text is the target, with no input",
    }.get(schema, schema)


def _selection(n: int, content_hash: str, config: ReadConfig) -> tuple[range | list[int], str]:
    """The record indices to read (``limit``: the first N; ``sample``: N seeded, in file order)
    and the identity of that selection: the file's hash, extended by the selection when it is
    not the whole file (so a store of a subset is never taken for the whole)."""
    if config.limit is not None and config.limit < n:
        chosen: range | list[int] = range(config.limit)
        what = {"limit": config.limit}
    elif config.sample is not None and config.sample < n:
        rng = np.random.default_rng(config.sample_seed)
        chosen = sorted(int(i) for i in rng.choice(n, size=config.sample, replace=False))
        what = {"sample": config.sample, "sample_seed": config.sample_seed}
    else:
        return range(n), content_hash
    logger.info("reading %d of %d records (%s)", len(chosen), n,
                ", ".join(f"{k} {v}" for k, v in what.items()))
    return chosen, json_sha256({"data": content_hash, **what})


def _counts(findings: list[Finding]) -> str:
    return ", ".join(f"{code}: {n}" for code, n in Counter(f.code for f in findings).items())
