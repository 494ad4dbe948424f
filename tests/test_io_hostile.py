"""Hostile inputs: no traceback, only the project's own errors (a file that cannot be read) or
findings (a record that cannot be used), each pointing at ``path:line``; memory stays bounded
while a large file streams.

References are built independently of the reader: every generated line or record carries the
class it was generated as, so the expected examples, findings, codes and lines are known.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from constraintlab.errors import ConstraintlabError, Finding, InputError
from constraintlab.io import read_examples, records

GOOD = '{"question": "q", "answer": "a"}'
FAST = settings(max_examples=30, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])


def write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def refused(data, **settings) -> list[str]:
    with pytest.raises(InputError) as err:
        read_examples(data, **settings)
    return [str(p) for p in err.value.problems]


# --- files that cannot be read: exit-2 errors with path:line ------------------------------

def test_json_document_nested_100000_deep(tmp_path: Path) -> None:
    path = write(tmp_path / "deep.json", "[\n" + GOOD + ",\n" + "[" * 100_000 + "]" * 100_000
                 + "\n]\n")
    assert refused(path) == [f"{path}:3: JSON nested too deeply: more than 128 levels of "
                             "arrays/objects (the document cannot be parsed)"]


def test_object_document_nested_deep_under_data(tmp_path: Path) -> None:
    path = write(tmp_path / "deep.json", '{"data":\n' + "[" * 100_000 + "]" * 100_000 + "}")
    assert refused(path) == [f"{path}:2: JSON nested too deeply: more than 128 levels of "
                             "arrays/objects (the document cannot be parsed)"]


def test_json_document_with_a_5000_digit_integer(tmp_path: Path) -> None:
    path = write(tmp_path / "big.json", "[\n" + GOOD + ',\n{"question": "q", "answer": '
                 + "7" * 5000 + "}\n]")
    assert refused(path) == [f"{path}:3: integer literal of 5,000 digits, over the limit of "
                             "4,300; write it as a string"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "data.jsonl"
    os.mkfifo(fifo)  # nobody writes to it: opening it for reading would block forever
    assert refused(fifo) == [f"{fifo}:1: is a FIFO (named pipe), not a regular file: give a "
                             ".jsonl, .json, .csv or .parquet file on disk"]


def test_symlink_to_dev_zero_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "zero.jsonl"
    link.symlink_to("/dev/zero")
    assert refused(link) == [f"{link}:1: is a character device, not a regular file: give a "
                             ".jsonl, .json, .csv or .parquet file on disk"]


def test_directory_and_missing_and_bad_paths(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").mkdir()
    assert refused(tmp_path / "d.jsonl") == [f"{tmp_path / 'd.jsonl'}:1: is a directory, not "
                                             "a data file"]
    assert refused(tmp_path / "none.jsonl") == [f"{tmp_path / 'none.jsonl'}:1: no such file"]
    long = tmp_path / ("x" * 300 + ".jsonl")
    assert refused(long) == [f"{long}:1: file name too long for the file system"]
    (tmp_path / "loop.jsonl").symlink_to(tmp_path / "loop.jsonl")
    assert refused(tmp_path / "loop.jsonl") == [f"{tmp_path / 'loop.jsonl'}:1: too many levels "
                                                "of symbolic links"]
    notdir = write(tmp_path / "f.jsonl", GOOD) / "inner.jsonl"
    assert refused(notdir) == [f"{notdir}:1: a parent of this path is not a directory"]
    assert refused(str(tmp_path / "a\0b.jsonl")) == [f"{tmp_path / 'a'}\0b.jsonl:1: the path "
                                                     "contains a NUL byte"]


def test_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The suite runs as root, who may read anything: the OS refusal is simulated at os.open.
    path = write(tmp_path / "secret.jsonl", GOOD + "\n")

    def deny(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(records.os, "open", deny)
    assert refused(path) == [f"{path}:1: permission denied: this user may not read the file"]


def test_read_error_midway_is_an_input_error(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "d.jsonl", GOOD + "\n")
    real = records._read_json_file

    def failing(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(records, "_read_json_file", failing)
    assert refused(path) == [f"{path}:1: cannot read it: Input/output error"]
    monkeypatch.setattr(records, "_read_json_file", real)
    assert len(read_examples(path)) == 1


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le"])
def test_utf16_and_utf32_without_byte_order_mark(tmp_path: Path, encoding: str) -> None:
    path = write(tmp_path / "wide.jsonl", (GOOD + "\n" + GOOD + "\n").encode(encoding))
    assert refused(path) == [f"{path}:1: file holds NUL bytes between its characters: it looks "
                             "UTF-16 or UTF-32 encoded (without a byte-order mark); save it as "
                             "UTF-8"]


def test_sparse_file_larger_than_memory(tmp_path: Path) -> None:
    path = tmp_path / "huge.jsonl"
    with path.open("wb") as fh:
        try:
            fh.truncate(2**40)  # 1 TiB of NUL bytes, stored sparse: only the head is read
        except OSError:
            pytest.skip("the file system does not hold sparse files this large")
    assert refused(path) == [f"{path}:1: file holds NUL bytes on its first line: a binary "
                             "file, not JSON text"]


def test_json_document_over_the_size_limit(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records, "MAX_DOCUMENT_BYTES", 1000)
    path = write(tmp_path / "big.json", "[\n" + ",\n".join([GOOD] * 100) + "\n]")
    assert refused(path) == [f"{path}:1: the JSON document is larger than 1,000 bytes, the "
                             "limit for a .json document (it is parsed whole, in memory); "
                             "convert it to JSON Lines (one record per line, read as a stream)"]
    jsonl = write(tmp_path / "big.jsonl", "\n".join([GOOD] * 100))  # JSONL is streamed
    assert len(read_examples(jsonl)) == 100


def test_invalid_utf8_in_a_json_document(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.json", b'[\n' + GOOD.encode() + b',\n{"question": "\xc3(", '
                 b'"answer": "a"}\n]')
    assert refused(path) == [f"{path}:3: not valid UTF-8: byte 0xc3 at column 15"]


# --- records that cannot be used: findings, the rest is read --------------------------------

def test_jsonl_line_nested_100000_deep_is_a_finding(tmp_path: Path) -> None:
    deep = '{"question": "q", "answer": "a", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    path = write(tmp_path / "d.jsonl", "\n".join([GOOD, deep, GOOD]) + "\n")
    data = read_examples(path)
    assert [ex.line for ex in data] == [1, 3]
    assert [(str(f), f.code, f.index) for f in data.skipped] == [
        (f"{path}:2: nested too deeply: more than 128 levels of arrays/objects", "too_deep", 1)]
    assert refused(path, on_invalid="error") == [str(data.skipped[0])]


def test_record_nested_past_the_limit_in_a_document(tmp_path: Path) -> None:
    deep = '{"question": "q", "answer": "a", "x": ' + "[" * 200 + "]" * 200 + "}"
    ok = '{"question": "q", "answer": "a", "x": ' + "[" * 127 + "]" * 127 + "}"  # 128 levels
    path = write(tmp_path / "d.json", "[\n" + ",\n".join([GOOD, deep, ok]) + "\n]")
    data = read_examples(path)
    assert [ex.index for ex in data] == [0, 2]
    assert [(str(f), f.code) for f in data.skipped] == [
        (f"{path}:3: record 1: nested too deeply: more than 128 levels of arrays/objects",
         "too_deep")]


def test_lone_surrogates_are_findings_pairs_are_text(tmp_path: Path) -> None:
    lines = [GOOD, '{"question": "q", "answer": "x\\ud800"}',
             '{"question": "\\udfff", "answer": "a"}',
             '{"question": "q", "answer": "\\ud83d\\ude00"}',
             '{"question": "q", "answer": "a", "meta": {"\\ud800k": 1}}']
    path = write(tmp_path / "s.jsonl", "\n".join(lines))
    data = read_examples(path)
    assert [ex.line for ex in data] == [1, 4] and data[1].target_text == "\U0001f600"
    assert [(f.line, f.code) for f in data.skipped] == [(2, "surrogate"), (3, "surrogate"),
                                                          (5, "surrogate")]
    assert str(data.skipped[0]) == (f"{path}:2: field 'answer' holds a lone UTF-16 surrogate "
                                    "('\\ud800' at character 1): not valid text; fix or drop "
                                    "the escape")
    assert str(data.skipped[2]).startswith(f"{path}:5: field 'meta.\\ud800k' holds")  # escaped
    # every kept example encodes as UTF-8 (what inspect and the tokenizer need)
    for ex in data:
        ex.input_text.encode("utf-8")
        ex.target_text.encode("utf-8")


def test_in_memory_hostile_rows() -> None:
    deep: list = []
    node = deep
    for _ in range(5000):
        node.append([])
        node = node[0]
    loop: dict = {"question": "q", "answer": "a"}
    loop["self"] = loop
    rows = [{"question": "q", "answer": "a"}, {"question": "q", "answer": "a", "x": deep},
            loop, {"question": "q", "answer": "\ud800"}, {"question": "q", "answer": "a", 1: 2,
                                                           "b": 3}]
    data = read_examples(rows)
    assert [ex.index for ex in data] == [0, 4]
    assert [(f.line, f.code) for f in data.skipped] == [(2, "too_deep"), (3, "too_deep"),
                                                          (4, "surrogate")]
    # the content hash is sha256 of json.dumps(rows) whenever the rows can be dumped
    clean = [{"question": "q", "answer": "a"}, {"question": "é", "answer": "b"}]
    blob = json.dumps(clean, sort_keys=True, ensure_ascii=False).encode()
    assert read_examples(clean).content_hash == hashlib.sha256(blob).hexdigest()


def test_odd_but_usable_records_are_used_with_notes(tmp_path: Path) -> None:
    rows = [{"instruction": "", "input": "", "output": "Hi."},
            {"instruction": " ", "input": "Say hi.", "output": "Hi."},
            {"instruction": "Greet.", "input": "", "output": "Hi."}]
    data = read_examples(write(tmp_path / "a.jsonl", "".join(json.dumps(r) + "\n"
                                                              for r in rows)))
    assert [(ex.input_text, ex.target_text) for ex in data] == [("", "Hi."), ("Say hi.", "Hi."),
                                                                ("Greet.", "Hi.")]
    assert [(f.line, f.code, f.severity) for f in data.notes] == [
        (1, "empty_input", "note"), (2, "empty_input", "note")]
    chat = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi "},
                                                      {"type": "text", "text": "there"}]},
                         {"role": "assistant", "content": [{"type": "text", "text": "Yo"}]}]}
    data = read_examples([chat])
    assert (data[0].input_text, data[0].target_text) == ("user: Hi there", "Yo")
    assert [(f.code, f.message) for f in data.notes] == [
        ("content_parts", "messages[0] gives its content as a list of text parts; they are "
                          "joined into one text")]
    assert not data.skipped


def test_large_file_streams_in_bounded_memory(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    limit = 2**20
    monkeypatch.setattr(records, "MAX_RECORD_BYTES", limit)
    huge = '{"question": "q", "answer": "' + "x" * (24 * limit) + '"}'
    lines = [GOOD] * 100 + [huge] + [GOOD] * 100 + [huge[: limit // 2]]  # last: broken
    path = write(tmp_path / "big.jsonl", "\n".join(lines) + "\n")
    tracemalloc.start()
    try:
        data = read_examples(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # one line of at most the limit at a time, plus the parsed records: not the file
    assert peak < 3 * limit < path.stat().st_size / 8
    assert len(data) == 200 and data.n_records == 202
    assert [(f.line, f.code) for f in data.skipped] == [(101, "too_large"),
                                                        (202, "invalid_json")]
    assert str(data.skipped[0]) == (f"{path}:101: record too large: the line has "
                                    f"{len(huge) + 1:,} bytes, over the limit of "
                                    f"{limit:,} bytes per record")
    assert data.content_hash == hashlib.sha256(path.read_bytes()).hexdigest()


# --- property-based: generated hostile files ----------------------------------------------

SMALL_LIMIT = 4096
FINDING_CODES = {"invalid_json", "invalid_utf8", "too_large", "too_deep", "number_too_long",
                 "surrogate", "not_object", "no_schema", "mixed_schema", "missing_field",
                 "wrong_type", "blank_target", "empty_conversation", "bad_turn", "unknown_role",
                 "bad_content", "bad_tool_call", "not_assistant_end"}

plain_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


def _dumps(value, ascii_: bool) -> str:
    return json.dumps(value, ensure_ascii=ascii_)


@st.composite
def hostile_line(draw) -> tuple[str, bytes]:
    """``(kind, line)``: one JSONL line (no newline) of a known class; kind "good" is valid."""
    kind = draw(st.sampled_from(["good", "good", "deep", "bigint", "surrogate", "control",
                                 "bytes", "wrong_type", "huge", "blank"]))
    ascii_ = draw(st.booleans())
    if kind == "good":
        rec = {"question": draw(plain_text), "answer": "a" + draw(plain_text)}
        return kind, _dumps(rec, ascii_).encode()
    if kind == "deep":
        d = draw(st.sampled_from([129, 500, 5000, 20_000]))
        opener = draw(st.sampled_from(["[", '{"k":']))
        closer = "]" if opener == "[" else "}"
        return kind, ('{"question": "q", "answer": "a", "x": ' + opener * d + "1" * (
            opener != "[") + closer * d + "}").encode()
    if kind == "bigint":
        digits = draw(st.integers(4301, 9000))
        field = draw(st.sampled_from(["answer", "extra"]))
        rec = '{"question": "q", "answer": "a", ' if field == "extra" else '{"question": "q", '
        return kind, (rec + f'"{field}": -' + "9" * digits + "}").encode()
    if kind == "surrogate":
        code = draw(st.integers(0xD800, 0xDFFF))
        after = draw(st.sampled_from(["", "x", "\\u0041"]))
        field = draw(st.sampled_from(["question", "answer", "other"]))
        rec = {"question": "q", "answer": "a", field: "@@"}
        return kind, _dumps(rec, ascii_).replace('"@@"', f'"s\\u{code:04x}{after}"').encode()
    if kind == "control":
        ch = chr(draw(st.sampled_from([c for c in range(1, 32) if c != 10])))
        return kind, ('{"question": "q' + ch + '", "answer": "a"}').encode()
    if kind == "bytes":
        return kind, b"#" + draw(st.binary(max_size=40)).replace(b"\n", b"")
    if kind == "wrong_type":
        value = draw(st.sampled_from([5, None, [], {}, True]))
        return kind, _dumps({"question": "q", "answer": value}, ascii_).encode()
    if kind == "huge":
        n = draw(st.integers(SMALL_LIMIT, 3 * SMALL_LIMIT))
        return kind, _dumps({"question": "q", "answer": "x" * n}, ascii_).encode()
    return kind, draw(st.sampled_from([b"", b"   ", b"\t", b"\r"]))


EXPECTED_CODE = {"deep": {"too_deep"}, "bigint": {"number_too_long"}, "surrogate": {"surrogate"},
                 "control": {"invalid_json"}, "bytes": {"invalid_json", "invalid_utf8"},
                 "wrong_type": {"wrong_type"}, "huge": {"too_large"}}


@FAST
@given(lines=st.lists(hostile_line(), min_size=1, max_size=8), bom=st.booleans())
def test_generated_jsonl_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               lines: list[tuple[str, bytes]], bom: bool) -> None:
    monkeypatch.setattr(records, "MAX_RECORD_BYTES", SMALL_LIMIT)
    path = write(tmp_path / "gen.jsonl", (b"\xef\xbb\xbf" if bom else b"")
                 + b"\n".join(line for _, line in lines) + b"\n")
    good = [i + 1 for i, (kind, _) in enumerate(lines) if kind == "good"]
    hostile = {i + 1: kind for i, (kind, line) in enumerate(lines)
               if kind not in ("good", "blank")}
    # a line over the limit (the BOM counts on line 1) is too large, whatever else it is
    too_large = {i + 1 for i, (_, line) in enumerate(lines)
                 if len(line) + 3 * (bom and i == 0) > SMALL_LIMIT}
    first = next((line for kind, line in lines if line.strip()), b"")
    try:
        data = read_examples(path)
    except InputError as err:
        # refused as a whole only when nothing is usable or the first line holds NUL bytes
        assert not good or b"\0" in first
        assert all(p.source == str(path) and p.line >= 1 for p in err.problems)
        return
    assert [ex.line for ex in data] == good
    assert [f.line for f in data.skipped] == sorted(hostile)
    for f in data.skipped:
        assert isinstance(f, Finding) and f.source == str(path) and f.severity == "invalid"
        str(f).encode("utf-8")
        want = {"too_large"} if f.line in too_large else EXPECTED_CODE[hostile[f.line]]
        assert f.code in want, (f.code, hostile[f.line])
        assert str(f).startswith(f"{path}:{f.line}: ")
    assert data.content_hash == hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(InputError) if hostile else _no_error():
        read_examples(path, on_invalid="error")


class _no_error:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> bool:
        return False


@FAST
@given(lines=st.lists(hostile_line(), min_size=1, max_size=6))
def test_generated_json_documents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  lines: list[tuple[str, bytes]]) -> None:
    monkeypatch.setattr(records, "MAX_RECORD_BYTES", SMALL_LIMIT)
    kept = [(k, line) for k, line in lines if k not in ("blank", "bytes", "control")]
    if not kept:
        return
    # one record per line after "[": record i starts on line i + 2
    path = write(tmp_path / "gen.json", b"[\n" + b",\n".join(line for _, line in kept) + b"\n]")
    kinds = [k for k, _ in kept]
    deep_lines = [i + 2 for i, (k, line) in enumerate(kept) if k == "deep"]
    unparsable = [i + 2 for i, (k, line) in enumerate(kept)
                  if k == "bigint" or (k == "deep" and line.count(b"[") + line.count(b"{")
                                       > 1000)]
    too_large = {i for i, (_, line) in enumerate(kept) if len(line.decode()) > SMALL_LIMIT}
    try:
        data = read_examples(path)
    except InputError as err:
        if unparsable:  # the document cannot be parsed: one error, naming the line of the
            # first record past the nesting limit, or of the long integer
            (problem,) = err.problems
            assert problem.line in deep_lines[:1] + unparsable[:1]
        else:  # nothing usable: every record's problem is listed
            assert "good" not in kinds
            assert [p.line for p in err.problems] == [i + 2 for i in range(len(kept))]
        return
    assert not unparsable
    assert [ex.index for ex in data] == [i for i, k in enumerate(kinds) if k == "good"]
    assert [(f.index, f.line) for f in data.skipped] == [
        (i, i + 2) for i, k in enumerate(kinds) if k != "good"]
    for f in data.skipped:
        want = {"too_large"} if f.index in too_large else EXPECTED_CODE[kinds[f.index]]
        assert f.code in want, (f.code, kinds[f.index])
        assert str(f).startswith(f"{path}:{f.line}: record {f.index}: ")


hostile_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    | st.sampled_from(["\ud800", "a\udfffb", "\x1b[2J", "\x00"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["messages", "role", "content", "question", "answer", "prompt",
                         "completion", "instruction", "output", "text", "tool_calls",
                         "function", "name", "arguments", "type"]) | st.text(max_size=3),
        inner, max_size=4),
    max_leaves=15)


@FAST
@given(rows=st.lists(hostile_values, min_size=1, max_size=5),
       suffix=st.sampled_from([".jsonl", ".json", "memory"]))
def test_generated_values_never_escape(tmp_path: Path, rows: list, suffix: str) -> None:
    """Any JSON value (NaN, lone surrogates, escapes, NULs, wrong types): our error or
    examples whose texts are valid UTF-8; every finding names the source and a line."""
    if suffix == "memory":
        data_in: object = rows
        source = "<records>"
    else:
        text = ("".join(json.dumps(r) + "\n" for r in rows) if suffix == ".jsonl"
                else json.dumps(rows, indent=1))
        data_in = write(tmp_path / ("gen" + suffix), text)
        source = str(data_in)
    try:
        data = read_examples(data_in)
    except ConstraintlabError as err:
        problems = getattr(err, "problems", [])
        assert all(p.source == source and p.line >= 1 for p in problems)
        return
    for ex in data:
        (ex.input_text + ex.target_text).encode("utf-8")
        assert ex.target_text.strip()
    for f in data.findings:
        assert f.source == source and f.line >= 1 and f.code
        str(f).encode("utf-8")  # printable: no lone surrogate reaches a message
        assert f.code in FINDING_CODES or f.severity == "note"
