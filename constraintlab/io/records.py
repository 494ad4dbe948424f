"""Files and in-memory collections -> raw records, each with the line it starts on.

Nothing here knows about schemas: this module only turns bytes into JSON values and says
exactly where each one came from, or where the bytes stop making sense.

Size limits
-----------
JSON Lines files are streamed line by line (memory holds one line at a time, plus the parsed
records), so a file of any size can be read. Each limit below is a module constant:

``MAX_RECORD_BYTES`` (16 MiB)
    The longest JSONL line (UTF-8 bytes), or the longest record of a ``.json`` document
    (characters of its JSON text). A longer record is skipped without being held in memory and
    becomes a ``too_large`` finding; the rest of the file is read.
``MAX_DOCUMENT_BYTES`` (1 GiB)
    The largest ``.json`` document (an array, or an object with ``"data"``): it has to be
    parsed whole, in memory. A larger one is refused with a message suggesting JSON Lines.
``MAX_DEPTH`` (128)
    Nesting of arrays/objects within one record (the record itself is level 1). A deeper record
    is a ``too_deep`` finding; a ``.json`` document nested beyond what the parser can hold is
    refused with the line where the nesting passes the limit.
``MAX_INT_DIGITS`` (4300, Python's own limit)
    Digits of an integer literal; a longer one is a ``number_too_long`` finding (a refusal of
    the whole file inside a ``.json`` document).

Files
-----
``.jsonl``, ``.json``, ``.csv`` (a header row names the fields; every value is a string) and
``.parquet``; ``.jsonl.gz``, ``.json.gz`` and ``.csv.gz`` are decompressed to a temporary file
first (at most ``MAX_GZIP_BYTES``). In memory: a list of dicts, a ``datasets.Dataset``, one split
of a ``datasets.DatasetDict`` (``split=``) or a pandas DataFrame (missing cells, NaN or None,
are left out of the record).

Only regular files are opened (a FIFO, a device such as ``/dev/zero`` or a directory is
refused before anything is read; symbolic links are followed). A file whose first line holds
NUL bytes (UTF-16/UTF-32 without a byte-order mark, a binary or sparse file) is refused.
Per-record problems (a broken JSONL line, invalid UTF-8, nesting, long numbers, lone UTF-16
surrogates, size) are returned as records with ``code``/``problem`` set, not raised.
"""

from __future__ import annotations

import csv
import errno
import gzip
import hashlib
import io
import json
import logging
import math
import os
import re
import stat
import tempfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from constraintlab._hashing import file_sha256
from constraintlab._text import type_name
from constraintlab.errors import ConstraintlabError, InputError, Problem
from constraintlab.io._json import key_list

logger = logging.getLogger(__name__)

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
#: Suffixes that may be gzip-compressed (``data.jsonl.gz``).
GZIP_INNER = (".jsonl", ".json", ".csv")
_READS = ".jsonl, .json, .csv and .parquet files (.jsonl, .json and .csv also gzipped: .gz)"

#: Longest JSONL line in bytes / longest record of a .json document in characters.
MAX_RECORD_BYTES = 16 * 2**20
#: Largest .json document in bytes (parsed whole); larger files must be JSON Lines.
MAX_DOCUMENT_BYTES = 2**30
#: Deepest nesting of arrays/objects within a record (the record itself is level 1).
MAX_DEPTH = 128
#: Most digits of an integer literal (Python's default int conversion limit).
MAX_INT_DIGITS = 4300
#: Largest decompressed size of a ``.gz`` file.
MAX_GZIP_BYTES = 2**36

_HEAD_BYTES = 65536
_SKIP_CHUNK = 2**16
_UTF8_BOM = b"\xef\xbb\xbf"
_OTHER_BOMS = {
    b"\x00\x00\xfe\xff": "UTF-32",
    b"\xff\xfe\x00\x00": "UTF-32",
    b"\xfe\xff": "UTF-16",
    b"\xff\xfe": "UTF-16",
}
_WS = " \t\n\r"
_SURROGATE = re.compile("[\ud800-\udfff]")
_DOCUMENT_OPENING = re.compile(rb'\{\s*(?:"data"\s*:.*)?', re.DOTALL)
# Strings (skipped), brackets and numbers, to find where a document passes a limit.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?')


class _NumberTooLong(ValueError):
    def __init__(self, digits: int) -> None:
        super().__init__(digits)
        self.digits = digits


def _parse_int(literal: str) -> int:
    digits = len(literal) - literal.startswith("-")
    if digits > MAX_INT_DIGITS:
        raise _NumberTooLong(digits)
    return int(literal)


_DECODER = json.JSONDecoder(parse_int=_parse_int)


@dataclass(frozen=True)
class RawRecord:
    """One record as parsed, before any schema is applied.

    ``value`` is the parsed JSON value (a dict when the file is well formed), or ``None`` with
    ``problem`` (and its reason ``code``) set when this record could not be parsed or is
    hostile (too large, too deep, ...) but the rest of the file can be read. ``text`` is a
    JSON Lines record's line as stored, ending in a newline (a UTF-8 byte-order mark at the
    start of the file is not part of it); None for other formats and for problem lines.
    """

    line: int
    value: Any = None
    problem: str | None = None
    code: str | None = None
    text: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class RawFile:
    """Everything :func:`read_raw` learned about one source."""

    source: str
    records: list[RawRecord]
    content_hash: str
    #: True when several records can share a line (a JSON document, in-memory data): problems
    #: then also name the record's 0-based index.
    indexed: bool = False
    #: True when each record is one line of the file as stored (uncompressed JSON Lines), so
    #: the line's bytes can be written back unchanged.
    original_lines: bool = False


def read_raw(data: Any, split: str | None = None) -> RawFile:
    """Parse ``data`` into raw records.

    Parameters
    ----------
    data : str | os.PathLike | list[dict] | datasets.Dataset | datasets.DatasetDict | DataFrame
        A ``.jsonl``, ``.json`` (array, or object with the records under ``"data"``), ``.csv``
        (with a header row) or ``.parquet`` file, the first three possibly gzipped (``.gz``);
        or records already in memory.
    split : str, optional
        The split of a ``DatasetDict`` to read (needed when it has more than one).

    Raises
    ------
    InputError
        When the file as a whole cannot be read (missing, not a regular file, unreadable, empty,
        wrong encoding, a JSON document with a syntax error or over the size limits). Problems
        confined to one record are returned as records with ``problem`` set instead, so the
        caller can skip them.
    """
    if isinstance(data, (str, os.PathLike)):
        return _read_path(Path(data))
    if hasattr(data, "features") and hasattr(data, "column_names"):  # datasets.Dataset
        return _from_memory(list(data), "<dataset>")
    if _is_dataset_dict(data):
        return _from_memory(list(data[_pick_split(data, split)]), "<dataset>")
    if hasattr(data, "to_dict") and hasattr(data, "columns") and hasattr(data, "iloc"):
        return _from_memory([_plain_row(r) for r in data.to_dict("records")], "<dataframe>")
    if isinstance(data, (list, tuple)):
        return _from_memory(list(data), "<records>")
    raise ConstraintlabError(
        f"cannot read data of type {type(data).__name__}: pass a path to a .jsonl, .json, "
        ".csv or .parquet file (or .jsonl.gz, .json.gz, .csv.gz), a list of dicts, a pandas "
        "DataFrame, a datasets.Dataset or a datasets.DatasetDict with split="
    )


def _is_dataset_dict(data: Any) -> bool:
    return (isinstance(data, Mapping) and bool(data) and all(
        hasattr(v, "features") and hasattr(v, "column_names") for v in data.values()))


def _pick_split(data: Mapping, split: str | None) -> str:
    """The split of a DatasetDict to read: ``split``, or the only one."""
    names = sorted(map(str, data))
    if split is None:
        if len(names) == 1:
            return names[0]
        raise InputError([Problem("<dataset>", 1, (
            f"the DatasetDict has {len(names)} splits ({', '.join(names)}): choose one with "
            f"split=, e.g. split={names[0]!r}"))])
    if split not in data:
        raise InputError([Problem("<dataset>", 1, f"the DatasetDict has no split {split!r} "
                                  f"(splits: {', '.join(names)})")])
    return split


def _plain_value(value: Any) -> Any:
    """A DataFrame cell as plain Python: NumPy arrays and scalars unwrapped, recursively."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, dict):
        return {k: _plain_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_value(v) for v in value]
    return value


def _plain_row(row: dict) -> dict:
    """One DataFrame row as a record: missing cells (None, NaN, pandas.NA) left out."""
    out = {}
    for key, value in row.items():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if type(value).__name__ in ("NAType", "NaTType"):
            continue
        out[key if isinstance(key, str) else str(key)] = _plain_value(value)
    return out


def check_value(value: Any) -> tuple[str, str] | None:
    """``(code, message)`` when a parsed record is hostile, else None.

    Walks the value without recursion: nesting deeper than :data:`MAX_DEPTH` (``too_deep``;
    also catches self-referencing in-memory data) and strings or keys holding a lone UTF-16
    surrogate (``surrogate``: not text, no encoder or tokenizer accepts it).
    """
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, str):
            if not node.isascii() and (m := _SURROGATE.search(node)) is not None:
                where = f"field '{_short(path)}'" if path else "the record"
                return "surrogate", (f"{where} holds a lone UTF-16 surrogate "
                                     f"({m.group()!a} at character {m.start()}): not "
                                     "valid text; fix or drop the escape")
            continue
        if not isinstance(node, (dict, list, tuple)):
            continue
        if depth > MAX_DEPTH:
            return "too_deep", (f"nested too deeply: more than {MAX_DEPTH} levels of "
                                "arrays/objects")
        if isinstance(node, dict):
            for key, item in node.items():
                key_text = key if isinstance(key, str) else str(key)
                child = f"{path}.{key_text}" if path else key_text
                stack.append((key, depth, child))
                stack.append((item, depth + 1, child))
        else:
            stack.extend((item, depth + 1, f"{path}[{i}]") for i, item in enumerate(node))
    return None


def _short(path: str, width: int = 80) -> str:
    """A field path for a message: at most ``width`` characters, surrogates escaped."""
    path = path if len(path) <= width else path[:width - 3] + "..."
    return path.encode("utf-8", "backslashreplace").decode("utf-8")


def _from_memory(rows: list[Any], source: str) -> RawFile:
    # The hash is sha256 of json.dumps(rows) (sort_keys, ensure_ascii=False), built row by row
    # so that one hostile row (too deep, a lone surrogate, unsortable keys) cannot break it.
    hasher = hashlib.sha256(b"[")
    records = []
    for i, row in enumerate(rows):
        found = check_value(row)
        if found is None:
            records.append(RawRecord(line=i + 1, value=row))
            try:
                piece = json.dumps(row, sort_keys=True, ensure_ascii=False, default=str)
            except (TypeError, ValueError, RecursionError):
                piece = json.dumps(f"<record {i}: {type(row).__name__}>")
        else:
            records.append(RawRecord(line=i + 1, problem=found[1], code=found[0]))
            piece = json.dumps(f"<record {i}: {found[0]}>")
        hasher.update((", " if i else "").encode() + piece.encode("utf-8", "surrogatepass"))
    hasher.update(b"]")
    if not records:
        raise InputError([Problem(source, 1, "no records")])
    return RawFile(source, records, hasher.hexdigest(), indexed=False)


def _os_problem(source: str, err: OSError, doing: str = "cannot open it") -> InputError:
    reasons = {
        errno.ENOENT: "no such file",
        errno.ENAMETOOLONG: "file name too long for the file system",
        errno.ENOTDIR: "a parent of this path is not a directory",
        errno.EACCES: "permission denied: this user may not read the file",
        errno.EPERM: "permission denied: this user may not read the file",
        errno.ELOOP: "too many levels of symbolic links",
    }
    why = reasons.get(err.errno or 0) or f"{doing}: {err.strerror or err}"
    return InputError([Problem(source, 1, why)])


def _not_regular(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory, not a data file"
    kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else
            "a character device" if stat.S_ISCHR(mode) else
            "a block device" if stat.S_ISBLK(mode) else
            "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
    return f"is {kind}, not a regular file: give a .jsonl, .json, .csv or .parquet file on disk"


def _open_regular(path: Path, source: str) -> tuple[IO[bytes], int]:
    """Open ``path`` for reading after checking it is a regular file; ``(file, size)``.

    Checked with ``stat`` first and again on the open descriptor (opened non-blocking, so a FIFO
    swapped in between cannot hang the read).
    """
    try:
        why = _not_regular(os.stat(path).st_mode)
    except OSError as err:
        raise _os_problem(source, err) from None
    except ValueError:  # an embedded NUL byte
        raise InputError([Problem(source, 1, "the path contains a NUL byte")]) from None
    if why is not None:
        raise InputError([Problem(source, 1, why)])
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        raise _os_problem(source, err) from None
    st = os.fstat(fd)
    why = _not_regular(st.st_mode)
    if why is not None:
        os.close(fd)
        raise InputError([Problem(source, 1, why)])
    return os.fdopen(fd, "rb"), st.st_size


def record_bytes(raw: RawFile, indices: Sequence[int]) -> tuple[list[bytes], str]:
    """The bytes to write back for the records ``indices``, in that order, one line each.

    Parameters
    ----------
    raw : what :func:`read_raw` read
    indices : 0-based record indices (``Example.index``) of readable records

    Returns
    -------
    chunks : list of bytes
        Each ending in ``\\n``. For an uncompressed JSON Lines source, the original line
        bytes, unchanged; otherwise (``.json`` document, ``.csv``, ``.parquet``, ``.gz``,
        records in memory) one ``json.dumps(record, ensure_ascii=False)`` object per line.
    mode : str
        ``"original lines"`` or ``"json objects"``.
    """
    if raw.original_lines:
        return [raw.records[i].text for i in indices], "original lines"
    return [(json.dumps(raw.records[i].value, ensure_ascii=False, default=str) + "\n")
            .encode("utf-8") for i in indices], "json objects"


def _read_path(path: Path) -> RawFile:
    source = str(path)
    fh, size = _open_regular(path, source)
    with fh:
        suffix = path.suffix.lower()
        gzipped = suffix == ".gz"
        if gzipped:
            suffix = Path(path.stem).suffix.lower()
            if suffix not in GZIP_INNER:
                raise InputError([Problem(source, 1, f"unsupported file type "
                                          f"'{suffix}.gz': constraintlab reads {_READS}")])
        elif suffix not in SUFFIXES:
            raise InputError([Problem(source, 1, f"unsupported file type "
                                      f"{suffix or '(none)'!r}: constraintlab reads {_READS}")])
        try:
            if suffix == ".parquet":
                digest = file_sha256(fh)
                return RawFile(source, _parquet_records(path), digest)
            if gzipped:
                with _gunzip(fh, source) as plain:
                    size = plain.seek(0, os.SEEK_END)
                    plain.seek(0)
                    if suffix == ".csv":
                        return _read_csv_file(plain, source)
                    raw = _read_json_file(plain, size, source, suffix)
                    return RawFile(raw.source, raw.records, raw.content_hash, raw.indexed)
            if suffix == ".csv":
                return _read_csv_file(fh, source)
            return _read_json_file(fh, size, source, suffix)
        except OSError as err:
            raise _os_problem(source, err, "cannot read it") from None


def _gunzip(fh: IO[bytes], source: str) -> IO[bytes]:
    """The decompressed bytes of a gzip file, in a temporary file (deleted on close)."""
    out = tempfile.TemporaryFile()
    total = 0
    try:
        with gzip.GzipFile(fileobj=fh, mode="rb") as gz:
            while chunk := gz.read(2**20):
                total += len(chunk)
                if total > MAX_GZIP_BYTES:
                    raise InputError([Problem(source, 1, (
                        f"decompresses to more than {MAX_GZIP_BYTES:,} bytes, the limit for a "
                        ".gz file; decompress it and read the file itself"))])
                out.write(chunk)
    except (gzip.BadGzipFile, zlib.error) as err:
        out.close()
        raise InputError([Problem(source, 1, f"not a valid gzip file: {err}")]) from None
    except EOFError:
        out.close()
        raise InputError([Problem(source, 1, "the gzip file is truncated (it ends before its "
                                  "end-of-stream marker)")]) from None
    except BaseException:
        out.close()
        raise
    if total == 0:
        out.close()
        raise InputError([Problem(source, 1, "file is empty: no records (after "
                                  "decompression)")])
    out.seek(0)
    return out


def _read_csv_file(fh: IO[bytes], source: str) -> RawFile:
    """CSV with a header row: one record per row, ``{column: text}``, on the row's first line."""
    head = fh.read(_HEAD_BYTES)
    _check_head(head, source)
    fh.seek(0)
    digest = file_sha256(fh)
    fh.seek(0)
    text: io.TextIOWrapper | None = io.TextIOWrapper(fh, encoding="utf-8-sig", newline="")
    limit = csv.field_size_limit()
    csv.field_size_limit(MAX_RECORD_BYTES)
    reader = csv.reader(text)  # type: ignore[arg-type]
    records: list[RawRecord] = []
    try:
        header = next(reader, None)
        if header is None or not any(h.strip() for h in header):
            raise InputError([Problem(source, 1, "file is empty: a CSV file needs a header row "
                                      "naming its columns, then one row per record")])
        names = [h.strip() for h in header]
        blank = [i + 1 for i, h in enumerate(names) if not h]
        dup = sorted({h for h in names if names.count(h) > 1})
        if blank or dup:
            why = (f"column {blank[0]} of the header has no name" if blank else
                   f"the header names column {dup[0]!r} more than once")
            raise InputError([Problem(source, 1, f"{why}: the first row must name every "
                                      "column once")])
        end = reader.line_num
        for row in reader:
            start, end = end + 1, reader.line_num
            if not row or not any(cell.strip() for cell in row):
                continue
            if len(row) != len(names):
                records.append(RawRecord(start, code="bad_csv_row", problem=(
                    f"row has {len(row)} fields but the header names {len(names)} "
                    f"({key_list(dict.fromkeys(names))})")))
                continue
            value = dict(zip(names, row, strict=True))
            found = check_value(value)
            records.append(RawRecord(start, value=value) if found is None else
                           RawRecord(start, problem=found[1], code=found[0]))
    except csv.Error as err:
        raise InputError([Problem(source, reader.line_num or 1, f"invalid CSV: {err}")]) from None
    except UnicodeDecodeError:
        text.detach()
        text = None
        raise InputError([_first_bad_utf8(fh, source)]) from None
    finally:
        csv.field_size_limit(limit)
        if text is not None:
            text.detach()
    if not records:
        raise InputError([Problem(source, 1, "no records: the CSV file has a header but no "
                                  "rows")])
    return RawFile(source, records, digest)


def _first_bad_utf8(fh: IO[bytes], source: str) -> Problem:
    """Where a file first holds bytes that are not UTF-8 (read line by line)."""
    fh.seek(0)
    for lineno, line in enumerate(fh, 1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as err:
            return Problem(source, lineno, _bad_byte(line, err))
    return Problem(source, 1, "not valid UTF-8")  # pragma: no cover - the decoder said so


def _read_json_file(fh: IO[bytes], size: int, source: str, suffix: str) -> RawFile:
    head = fh.read(_HEAD_BYTES)
    bom = _check_head(head, source)
    body = head[bom:]
    complete = len(head) >= size
    if complete and not body.strip():
        raise InputError([Problem(source, 1, "file is empty: no records")])
    lead = body.lstrip()
    if lead[:1] == b"[":
        is_jsonl = False
    elif _jsonl_from_head(lead, complete):
        is_jsonl = True
    elif size > MAX_DOCUMENT_BYTES:  # too large to probe: JSONL unless it opens a document
        is_jsonl = not _opens_document(lead)
    else:  # undecided from the first line: probe the whole (bounded) file, as one document
        fh.seek(0)
        is_jsonl = _looks_like_jsonl(fh.read(MAX_DOCUMENT_BYTES + 1)[bom:], suffix)
    fh.seek(0)
    hasher = hashlib.sha256()
    if is_jsonl:
        records = list(_jsonl_records(fh, hasher, bom))
        if not records:
            raise InputError([Problem(source, 1, "file is empty: no records")])
        return RawFile(source, records, hasher.hexdigest(), original_lines=True)
    raw = fh.read(MAX_DOCUMENT_BYTES + 1)
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise InputError([Problem(source, 1, (
            f"the JSON document is larger than {MAX_DOCUMENT_BYTES:,} bytes, the limit for a "
            ".json document (it is parsed whole, in memory); convert it to JSON Lines (one "
            "record per line, read as a stream)"))])
    hasher.update(raw)
    return RawFile(source, _json_document_records(raw[bom:], source), hasher.hexdigest(),
                   indexed=True)


def _check_head(head: bytes, source: str) -> int:
    """Refuse encodings that are not UTF-8; the length of a UTF-8 byte-order mark to skip."""
    if head.startswith(_UTF8_BOM):
        logger.warning("%s starts with a UTF-8 byte-order mark; ignoring it", source)
        return len(_UTF8_BOM)
    for bom, name in _OTHER_BOMS.items():
        if head.startswith(bom):
            raise InputError([Problem(source, 1, f"file is {name} encoded (byte-order mark "
                                      "found); save it as UTF-8")])
    first = head.split(b"\n", 1)[0]
    if b"\x00" in first:
        if len(first) > 1 and len(first) <= 5 * first.count(b"\x00") < 4 * len(first) + 1:
            why = ("file holds NUL bytes between its characters: it looks UTF-16 or UTF-32 "
                   "encoded (without a byte-order mark); save it as UTF-8")
        else:
            why = "file holds NUL bytes on its first line: a binary file, not JSON text"
        raise InputError([Problem(source, 1, why)])
    return 0


def _jsonl_from_head(lead: bytes, complete: bool) -> bool:
    """True when the first non-blank line already shows the file is JSON Lines: it holds one
    complete JSON value and more follows it (False: undecided, or one value alone)."""
    first, sep, rest = lead.partition(b"\n")
    if not sep and not complete:
        return False  # a first line longer than the head: undecided
    try:
        _DECODER.decode(first.decode("utf-8"))
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, long numbers
        return False
    return bool(rest.strip())


def _looks_like_jsonl(raw: bytes, suffix: str) -> bool:
    """JSON Lines unless the content is one JSON document (an array, or an object with "data").

    Decided from content, not the suffix (``.json`` files holding JSON Lines are common). A
    document that fails to parse counts as JSON Lines unless it opens like a document (``[``, a
    line holding only ``{``, or ``{"data":``), so a broken line in a JSONL file is reported on
    its own line.
    A lone object is one record in a ``.jsonl`` file and a document in a ``.json`` file.
    """
    head = raw.lstrip()
    if head.startswith(b"["):
        return False
    try:
        value = _DECODER.decode(raw.decode("utf-8"))
    except json.JSONDecodeError as err:
        if err.msg == "Extra data":
            return True
    except (ValueError, RecursionError):  # UnicodeDecodeError, long numbers, deep nesting
        pass
    else:
        if isinstance(value, dict):
            return suffix == ".jsonl" and not isinstance(value.get("data"), list)
        return True
    return not _opens_document(head)


def _opens_document(lead: bytes) -> bool:
    """The first line holds only ``{``, or opens an object with ``"data"``: a document."""
    return _DOCUMENT_OPENING.fullmatch(lead.split(b"\n", 1)[0].strip()) is not None


def _lines(fh: IO[bytes], hasher: Any, bom: int) -> Iterator[tuple[int, bytes | None, int]]:
    """``(lineno, line, n_bytes)`` for each line, ``line`` None when it is longer than
    :data:`MAX_RECORD_BYTES` (it is read through in chunks and never held whole)."""
    limit = MAX_RECORD_BYTES
    lineno = 0
    while chunk := fh.readline(limit + 1):
        hasher.update(chunk)
        lineno += 1
        if chunk.endswith(b"\n") or len(chunk) <= limit:  # complete (the BOM counts)
            yield lineno, chunk[bom:] if lineno == 1 else chunk, len(chunk)
            continue
        total = len(chunk)
        del chunk  # read through the rest in small chunks, holding none of it
        while more := fh.readline(_SKIP_CHUNK):
            hasher.update(more)
            total += len(more)
            if more.endswith(b"\n"):
                break
        yield lineno, None, total


def _jsonl_records(fh: IO[bytes], hasher: Any, bom: int) -> Iterator[RawRecord]:
    for lineno, line, n_bytes in _lines(fh, hasher, bom):
        if line is None:
            yield RawRecord(lineno, code="too_large", problem=(
                f"record too large: the line has {n_bytes:,} bytes, over the limit of "
                f"{MAX_RECORD_BYTES:,} bytes per record"))
            continue
        if not line.strip():
            continue
        yield _parse_line(lineno, line)


def _parse_line(lineno: int, line: bytes) -> RawRecord:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as err:
        return RawRecord(lineno, problem=_bad_byte(line, err), code="invalid_utf8")
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as err:
        return RawRecord(lineno, problem=f"invalid JSON: {err.msg} (column {err.colno})",
                         code="invalid_json")
    except RecursionError:
        return RawRecord(lineno, problem=(f"nested too deeply: more than {MAX_DEPTH} levels of "
                                          "arrays/objects"), code="too_deep")
    except _NumberTooLong as err:
        return RawRecord(lineno, problem=_long_number(err.digits), code="number_too_long")
    found = check_value(value)
    if found is not None:
        return RawRecord(lineno, problem=found[1], code=found[0])
    return RawRecord(lineno, value=value, text=line if line.endswith(b"\n") else line + b"\n")


def _long_number(digits: int) -> str:
    return (f"integer literal of {digits:,} digits, over the limit of {MAX_INT_DIGITS:,}; "
            "write it as a string")


def _bad_byte(chunk: bytes, err: UnicodeDecodeError) -> str:
    column = len(chunk[: err.start].decode("utf-8", errors="replace")) + 1
    return f"not valid UTF-8: byte 0x{chunk[err.start]:02x} at column {column}"


def _locate_limit(text: str, what: str) -> int:
    """1-based line where ``text`` first nests deeper than :data:`MAX_DEPTH` (``what="depth"``)
    or holds an integer literal longer than :data:`MAX_INT_DIGITS` (``"digits"``); 1 if none.

    Only called once a document failed to parse, to say where."""
    depth = 0
    for m in _TOKEN.finditer(text):
        tok = m.group()
        if tok in "[{":
            depth += 1
            if what == "depth" and depth > MAX_DEPTH:
                return text.count("\n", 0, m.start()) + 1
        elif tok in "]}":
            depth -= 1
        elif what == "digits" and tok[0] != '"' and not any(c in tok for c in ".eE") and \
                len(tok) - tok.startswith("-") > MAX_INT_DIGITS:
            return text.count("\n", 0, m.start()) + 1
    return 1


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
        value = _DECODER.decode(text)
    except json.JSONDecodeError as err:
        raise InputError([Problem(source, err.lineno,
                                  f"invalid JSON: {err.msg} (column {err.colno})")]) from None
    except RecursionError:
        raise InputError([Problem(source, _locate_limit(text, "depth"), (
            f"JSON nested too deeply: more than {MAX_DEPTH} levels of arrays/objects (the "
            "document cannot be parsed)"))]) from None
    except _NumberTooLong as err:
        raise InputError([Problem(source, _locate_limit(text, "digits"),
                                  _long_number(err.digits))]) from None
    start = _skip_ws(text, 0)
    if isinstance(value, list):
        spans = _array_element_spans(text, start)
    elif isinstance(value, dict) and isinstance(value.get("data"), list):
        value = value["data"]
        spans = _array_element_spans(text, _data_array_position(text, start))
    elif isinstance(value, dict):
        raise InputError([Problem(source, 1, 'a JSON object at the top level must hold the '
                                  'records as a list under "data" (found keys: '
                                  f'{key_list(value)})')])
    else:
        raise InputError([Problem(source, 1, "the JSON document must be an array of records "
                                  "or an object with \"data\", not "
                                  f"{type_name(value, json=True)}")])
    if not value:
        raise InputError([Problem(source, 1, "no records: the array is empty")])
    lines = _line_numbers(text, [a for a, _ in spans])
    out = []
    for line, (a, b), v in zip(lines, spans, value, strict=True):
        if b - a > MAX_RECORD_BYTES:
            out.append(RawRecord(line, code="too_large", problem=(
                f"record too large: {b - a:,} characters of JSON, over the limit of "
                f"{MAX_RECORD_BYTES:,} per record")))
            continue
        found = check_value(v)
        out.append(RawRecord(line, value=v) if found is None else
                   RawRecord(line, problem=found[1], code=found[0]))
    return out


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WS:
        pos += 1
    return pos


def _array_element_spans(text: str, pos: int) -> list[tuple[int, int]]:
    """``(start, end)`` offsets of the elements of the (validated) JSON array at ``text[pos]``."""
    spans: list[tuple[int, int]] = []
    pos = _skip_ws(text, pos + 1)  # past "["
    if text[pos] == "]":
        return spans
    while True:
        start = pos
        _, pos = _DECODER.raw_decode(text, pos)
        spans.append((start, pos))
        pos = _skip_ws(text, pos)
        if text[pos] == "]":
            return spans
        pos = _skip_ws(text, pos + 1)  # past ","


def _data_array_position(text: str, pos: int) -> int:
    """Offset of the value of the last ``"data"`` key of the (validated) object at ``pos``."""
    decoder = _DECODER
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
    out = []
    for i, row in enumerate(rows):
        found = check_value(row)
        out.append(RawRecord(i + 1, value=row) if found is None else
                   RawRecord(i + 1, problem=found[1], code=found[0]))
    return out
