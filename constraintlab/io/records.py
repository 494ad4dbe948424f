"""Files and in-memory collections -> raw records, each with the line it starts on.

Nothing here knows about schemas: this module only turns bytes into JSON values and says
exactly where each one came from, or where the bytes stop making sense.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from constraintlab.errors import ConstraintlabError, InputError, Problem
from constraintlab.io._json import key_list, type_name

logger = logging.getLogger(__name__)

SUFFIXES = (".jsonl", ".json", ".parquet")
_UTF8_BOM = b"\xef\xbb\xbf"
_OTHER_BOMS = {
    b"\x00\x00\xfe\xff": "UTF-32",
    b"\xff\xfe\x00\x00": "UTF-32",
    b"\xfe\xff": "UTF-16",
    b"\xff\xfe": "UTF-16",
}
_WS = " \t\n\r"


@dataclass(frozen=True)
class RawRecord:
    """One record as parsed, before any schema is applied.

    ``value`` is the parsed JSON value (a dict when the file is well formed), or ``None`` with
    ``problem`` set when this record could not be parsed but the rest of the file can.
    """

    line: int
    value: Any = None
    problem: str | None = None


@dataclass(frozen=True)
class RawFile:
    """Everything :func:`read_raw` learned about one source."""

    source: str
    records: list[RawRecord]
    content_hash: str
    #: True when several records can share a line (a JSON document, in-memory data): problems
    #: then also name the record's 0-based index.
    indexed: bool = False


def read_raw(data: Any) -> RawFile:
    """Parse ``data`` into raw records.

    Parameters
    ----------
    data : str | os.PathLike | list[dict] | datasets.Dataset
        A ``.jsonl``, ``.json`` (array, or object with the records under ``"data"``) or
        ``.parquet`` file; or records already in memory.

    Raises
    ------
    InputError
        When the file as a whole cannot be read (missing, empty, wrong encoding, a JSON document
        with a syntax error). Problems confined to one JSONL line are returned as records with
        ``problem`` set instead, so the caller can skip them.
    """
    if isinstance(data, (str, Path)):
        return _read_path(Path(data))
    if hasattr(data, "features") and hasattr(data, "column_names"):  # datasets.Dataset
        return _from_memory(list(data), "<dataset>")
    if isinstance(data, (list, tuple)):
        return _from_memory(list(data), "<records>")
    raise ConstraintlabError(
        f"cannot read data of type {type(data).__name__}: pass a path to a .jsonl, .json or "
        ".parquet file, a list of dicts, or a datasets.Dataset"
    )


def _from_memory(rows: list[Any], source: str) -> RawFile:
    blob = json.dumps(rows, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")
    records = [RawRecord(line=i + 1, value=row) for i, row in enumerate(rows)]
    if not records:
        raise InputError([Problem(source, 1, "no records")])
    return RawFile(source, records, hashlib.sha256(blob).hexdigest(), indexed=False)


def _read_path(path: Path) -> RawFile:
    source = str(path)
    if not path.exists():
        raise InputError([Problem(source, 1, "no such file")])
    if path.is_dir():
        raise InputError([Problem(source, 1, "is a directory, not a data file")])
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError([Problem(source, 1, f"unsupported file type {suffix or '(none)'!r}: "
                                  "constraintlab reads .jsonl, .json and .parquet")])
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if suffix == ".parquet":
        return RawFile(source, _parquet_records(path), digest)
    raw = _strip_bom(raw, source)
    if not raw.strip():
        raise InputError([Problem(source, 1, "file is empty: no records")])
    if _looks_like_jsonl(raw, suffix):
        return RawFile(source, list(_jsonl_records(raw)), digest)
    return RawFile(source, _json_document_records(raw, source), digest, indexed=True)


def _strip_bom(raw: bytes, source: str) -> bytes:
    if raw.startswith(_UTF8_BOM):
        logger.warning("%s starts with a UTF-8 byte-order mark; ignoring it", source)
        return raw[len(_UTF8_BOM):]
    for bom, name in _OTHER_BOMS.items():
        if raw.startswith(bom):
            raise InputError([Problem(source, 1, f"file is {name} encoded (byte-order mark "
                                      "found); save it as UTF-8")])
    return raw


def _looks_like_jsonl(raw: bytes, suffix: str) -> bool:
    """JSON Lines unless the content is one JSON document (an array, or an object with "data").

    Decided from content, not the suffix (``.json`` files holding JSON Lines are common). A
    document that fails to parse counts as JSON Lines unless it opens like a document (``[`` or
    a line holding only ``{``), so a broken line in a JSONL file is reported on its own line.
    A lone object is one record in a ``.jsonl`` file and a document in a ``.json`` file.
    """
    head = raw.lstrip()
    if head.startswith(b"["):
        return False
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as err:
        if err.msg == "Extra data":
            return True
    except (UnicodeDecodeError, ValueError):
        pass
    else:
        if isinstance(value, dict):
            return suffix == ".jsonl" and not isinstance(value.get("data"), list)
        return True
    return head.split(b"\n", 1)[0].strip() != b"{"


def _jsonl_records(raw: bytes) -> Iterator[RawRecord]:
    for lineno, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as err:
            yield RawRecord(lineno, problem=_bad_byte(line, err))
            continue
        try:
            yield RawRecord(lineno, value=json.loads(text))
        except json.JSONDecodeError as err:
            yield RawRecord(lineno, problem=f"invalid JSON: {err.msg} (column {err.colno})")


def _bad_byte(chunk: bytes, err: UnicodeDecodeError) -> str:
    column = len(chunk[: err.start].decode("utf-8", errors="replace")) + 1
    return f"not valid UTF-8: byte 0x{chunk[err.start]:02x} at column {column}"


def _json_document_records(raw: bytes, source: str) -> list[RawRecord]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line_start = raw.rfind(b"\n", 0, err.start) + 1
        lineno = raw.count(b"\n", 0, err.start) + 1
        fixed = UnicodeDecodeError(err.encoding, err.object, err.start - line_start,
                                   err.end - line_start, err.reason)
        raise InputError([Problem(source, lineno, _bad_byte(raw[line_start:], fixed))]) from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError([Problem(source, err.lineno,
                                  f"invalid JSON: {err.msg} (column {err.colno})")]) from None
    start = _skip_ws(text, 0)
    if isinstance(value, list):
        positions = _array_element_positions(text, start)
    elif isinstance(value, dict) and isinstance(value.get("data"), list):
        value = value["data"]
        positions = _array_element_positions(text, _data_array_position(text, start))
    elif isinstance(value, dict):
        raise InputError([Problem(source, 1, 'a JSON object at the top level must hold the '
                                  'records as a list under "data" (found keys: '
                                  f'{key_list(value)})')])
    else:
        raise InputError([Problem(source, 1, "the JSON document must be an array of records "
                                  f"or an object with \"data\", not {type_name(value)}")])
    if not value:
        raise InputError([Problem(source, 1, "no records: the array is empty")])
    lines = _line_numbers(text, positions)
    return [RawRecord(line, value=v) for line, v in zip(lines, value, strict=True)]


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WS:
        pos += 1
    return pos


def _array_element_positions(text: str, pos: int) -> list[int]:
    """Start offsets of the elements of the (already validated) JSON array at ``text[pos]``."""
    decoder = json.JSONDecoder()
    positions: list[int] = []
    pos = _skip_ws(text, pos + 1)  # past "["
    if text[pos] == "]":
        return positions
    while True:
        positions.append(pos)
        _, pos = decoder.raw_decode(text, pos)
        pos = _skip_ws(text, pos)
        if text[pos] == "]":
            return positions
        pos = _skip_ws(text, pos + 1)  # past ","


def _data_array_position(text: str, pos: int) -> int:
    """Offset of the value of the last ``"data"`` key of the (validated) object at ``pos``."""
    decoder = json.JSONDecoder()
    found = -1
    pos = _skip_ws(text, pos + 1)  # past "{"
    while text[pos] != "}":
        key, pos = decoder.raw_decode(text, pos)
        pos = _skip_ws(text, _skip_ws(text, pos) + 1)  # past ":"
        if key == "data":
            found = pos
        _, pos = decoder.raw_decode(text, pos)
        pos = _skip_ws(text, pos)
        if text[pos] == ",":
            pos = _skip_ws(text, pos + 1)
    return found


def _line_numbers(text: str, positions: list[int]) -> list[int]:
    lines, line, last = [], 1, 0
    for pos in positions:
        line += text.count("\n", last, pos)
        last = pos
        lines.append(line)
    return lines


def _parquet_records(path: Path) -> list[RawRecord]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ConstraintlabError(
            f"{path}: reading .parquet needs pyarrow: pip install 'constraintlab[parquet]'"
        ) from None
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as err:  # pyarrow raises many types for corrupt files
        raise InputError([Problem(str(path), 1, f"cannot read Parquet file: {err}")]) from None
    if not rows:
        raise InputError([Problem(str(path), 1, "no records: the table is empty")])
    return [RawRecord(i + 1, value=row) for i, row in enumerate(rows)]
