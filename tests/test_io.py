"""Ingestion: every schema from real files, exact inputs/targets, exact problem locations."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from constraintlab.errors import ConfigError, ConstraintlabError, InputError
from constraintlab.io import Message, ReadConfig, read_examples


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def jsonl(rows: list) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


# --- every schema, from real files ---------------------------------------------------------

def test_gsm8k_rows_read_as_question_answer(shared_data: Path, tmp_path: Path) -> None:
    lines = (shared_data / "gsm8k_train.jsonl").read_text(encoding="utf-8").splitlines()[:50]
    path = write(tmp_path, "gsm8k.jsonl", "\n".join(lines) + "\n")
    data = read_examples(path)
    assert data.schema == "qa" and len(data) == 50 and data.n_records == 50
    for i, (ex, line) in enumerate(zip(data, lines, strict=True)):
        row = json.loads(line)
        assert (ex.index, ex.line) == (i, i + 1)
        assert ex.input_text == row["question"]
        assert ex.target_text == row["answer"]
        assert ex.messages == (Message("user", row["question"]),
                               Message("assistant", row["answer"]))
        assert ex.targets == (1,) and not ex.chat and ex.raw == row


def test_full_gsm8k_train_reads_every_row(shared_data: Path) -> None:
    data = read_examples(shared_data / "gsm8k_train.jsonl")
    n_lines = sum(1 for line in (shared_data / "gsm8k_train.jsonl").open() if line.strip())
    assert len(data) == n_lines == 7473
    assert data.examples[-1].line == n_lines


def test_alpaca_json_array_with_line_numbers(shared_data: Path, tmp_path: Path) -> None:
    rows = json.loads((shared_data / "alpaca_5000.json").read_text(encoding="utf-8"))[:40]
    # Pretty-printed so that records start on known lines: "[" then one record per line.
    path = write(tmp_path, "alpaca.json",
                 "[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n")
    data = read_examples(path)
    assert data.schema == "alpaca" and len(data) == 40
    for i, (ex, row) in enumerate(zip(data, rows, strict=True)):
        assert ex.line == i + 2
        expected = row["instruction"] + (f"\n\n{row['input']}" if row["input"].strip() else "")
        assert ex.input_text == expected
        assert ex.target_text == row["output"]


def test_real_alpaca_file_reports_its_two_empty_outputs(shared_data: Path) -> None:
    rows = json.loads((shared_data / "alpaca_5000.json").read_text(encoding="utf-8"))
    blank = [i for i, r in enumerate(rows) if not r["output"].strip()]  # brute-force reference
    src = str(shared_data / "alpaca_5000.json")
    expected = [f"{src}:1: record {i}: empty target: field 'output' is blank" for i in blank]
    with pytest.raises(InputError) as err:  # the strict mode refuses the file
        read_examples(shared_data / "alpaca_5000.json", on_invalid="error")
    assert [str(p) for p in err.value.problems] == expected
    data = read_examples(shared_data / "alpaca_5000.json")  # the default: findings
    assert len(data) == len(rows) - len(blank) and len(data.skipped) == len(blank)
    assert [str(f) for f in data.skipped] == expected and data.invalid_records == len(blank)
    assert [(f.code, f.index, f.severity) for f in data.skipped] == [
        ("blank_target", i, "invalid") for i in blank]
    assert [ex.index for ex in data][blank[0]] == blank[0] + 1  # indices keep file order


def test_json_object_with_data_key(tmp_path: Path) -> None:
    text = ('{\n  "version": 1,\n  "meta": {"data": "not this"},\n  "data": [\n'
            '    {"question": "q1", "answer": "a1"},\n\n    {"question": "q2", "answer": "a2"}\n'
            '  ]\n}\n')
    data = read_examples(write(tmp_path, "d.json", text))
    assert [(ex.line, ex.input_text, ex.target_text) for ex in data] == [
        (5, "q1", "a1"), (7, "q2", "a2")]


CHAT = [
    {"messages": [{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "2+2?"},
                  {"role": "assistant", "content": "4"},
                  {"role": "user", "content": "and 3+3?"},
                  {"role": "assistant", "content": "6"}]},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi "},
                                               {"type": "text", "text": "there"}]},
                  {"role": "assistant", "content": "Hello."}]},
]


def test_chat_last_and_all_assistant(tmp_path: Path) -> None:
    path = write(tmp_path, "chat.jsonl", jsonl(CHAT))
    last = read_examples(path)
    assert last.schema == "chat" and all(ex.chat for ex in last)
    assert last[0].targets == (4,) and last[0].target_text == "6"
    assert last[0].input_text == ("system: Be brief.\n\nuser: 2+2?\n\nassistant: 4\n\n"
                                  "user: and 3+3?")
    assert last[1].messages[0] == Message("user", "Hi there")
    both = read_examples(path, train_on="all-assistant")
    assert both[0].targets == (2, 4) and both[0].target_text == "4\n\n6"
    assert both[0].input_text == "system: Be brief.\n\nuser: 2+2?\n\nuser: and 3+3?"


def test_sharegpt(tmp_path: Path) -> None:
    rows = [{"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "Q"},
                               {"from": "gpt", "value": "A"}]}]
    data = read_examples(write(tmp_path, "sg.json", json.dumps(rows)))
    assert data.schema == "sharegpt"
    assert data[0].messages == (Message("system", "S"), Message("user", "Q"),
                                Message("assistant", "A"))
    assert data[0].targets == (2,) and data[0].target_text == "A"


def test_prompt_completion_strings_and_messages(tmp_path: Path) -> None:
    rows = [{"prompt": "The sky is", "completion": " blue."}]
    data = read_examples(write(tmp_path, "pc.jsonl", jsonl(rows)))
    assert data.schema == "prompt_completion" and not data[0].chat
    assert (data[0].input_text, data[0].target_text) == ("The sky is", " blue.")
    conv = [{"prompt": [{"role": "user", "content": "Color of sky?"}],
             "completion": [{"role": "assistant", "content": "Blue."}]}]
    data = read_examples(write(tmp_path, "pcc.jsonl", jsonl(conv)))
    assert data[0].chat and data[0].targets == (1,)
    assert (data[0].input_text, data[0].target_text) == ("user: Color of sky?", "Blue.")


def test_plain_text_has_no_input(tmp_path: Path) -> None:
    data = read_examples(write(tmp_path, "t.jsonl", jsonl([{"text": "All of it."}])))
    assert data.schema == "text"
    assert (data[0].input_text, data[0].target_text, data[0].targets) == ("", "All of it.", (0,))


def test_parquet(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = [{"question": f"q{i}", "answer": f"a{i}"} for i in range(5)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    data = read_examples(tmp_path / "d.parquet")
    assert [(ex.line, ex.input_text, ex.target_text) for ex in data] == [
        (i + 1, f"q{i}", f"a{i}") for i in range(5)]


def test_in_memory_records_and_dataset() -> None:
    rows = [{"question": "q", "answer": "a"}, {"question": "q2", "answer": "a2"}]
    data = read_examples(rows)
    assert data.source == "<records>" and [ex.target_text for ex in data] == ["a", "a2"]
    datasets = pytest.importorskip("datasets")
    ds = read_examples(datasets.Dataset.from_list(rows))
    assert ds.source == "<dataset>" and [ex.input_text for ex in ds] == ["q", "q2"]


def test_forced_format_and_json_lines_in_a_json_file(tmp_path: Path) -> None:
    # A .json file holding JSON Lines is read by content, not by suffix.
    rows = [{"text": f"x{i}", "question": "q", "answer": "a"} for i in range(2)]
    path = write(tmp_path, "lines.json", jsonl(rows))
    assert read_examples(path).schema == "qa"
    assert [ex.target_text for ex in read_examples(path, format="text")] == ["x0", "x1"]


def test_utf8_bom_is_ignored_with_a_warning(tmp_path: Path, caplog) -> None:
    path = write(tmp_path, "bom.jsonl", b"\xef\xbb\xbf" + jsonl([{"text": "x"}]).encode())
    with caplog.at_level(logging.WARNING):
        assert read_examples(path)[0].target_text == "x"
    assert "byte-order mark" in caplog.text


def test_content_hash_is_sha256_of_bytes(tmp_path: Path) -> None:
    import hashlib
    path = write(tmp_path, "t.jsonl", jsonl([{"text": "x"}]))
    assert read_examples(path).content_hash == hashlib.sha256(path.read_bytes()).hexdigest()


# --- broken files: exact path:line: message -------------------------------------------------

GOOD = '{"question": "q", "answer": "a"}'
BROKEN = {
    "wrong_type.jsonl": (GOOD + '\n{"question": 5, "answer": "a"}\n',
                         [(2, "field 'question' must be a string, not a number")]),
    "missing_field.jsonl": (GOOD + '\n{"question": "q"}\n', [(2, "missing field 'answer'")]),
    "empty_target.jsonl": (GOOD + '\n{"question": "q", "answer": " \\n\\t "}\n',
                           [(2, "empty target: field 'answer' is blank")]),
    "unknown_role.jsonl": (
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "yo"}]}\n',
        [(1, "messages[1] has unknown role 'bot' (expected one of system, developer, user, "
             "assistant, tool)")]),
    "no_assistant_end.jsonl": (
        '{"messages": [{"role": "user", "content": "hi"}]}\n',
        [(1, "conversation does not end with an assistant turn (last role: user)")]),
    "syntax_middle.jsonl": (GOOD + "\n" + GOOD + '\n\n{"question": "q" "answer": "a"}\n' + GOOD,
                            [(4, "invalid JSON: Expecting ',' delimiter (column 18)")]),
    "non_utf8.jsonl": (GOOD.encode() + b'\n{"question": "caf\xe9", "answer": "a"}\n',
                       [(2, "not valid UTF-8: byte 0xe9 at column 18")]),
    "empty.jsonl": ("\n  \n", [(1, "file is empty: no records")]),
    "utf16.jsonl": ((GOOD + "\n").encode("utf-16"),
                    [(1, "file is UTF-16 encoded (byte-order mark found); save it as UTF-8")]),
    "mixed.jsonl": (GOOD + '\n{"instruction": "i", "output": "o"}\n',
                    [(2, "mixed schemas: this record is alpaca but the file's records are qa "
                         "(line 1); use one schema per file, or --format to force one")]),
    "not_object.jsonl": (GOOD + "\n[1, 2]\n", [(2, "record must be a JSON object, not an array")]),
    "no_schema.jsonl": ('{"foo": 1}\n', [(1, "no known schema: the record has keys [foo]; name "
                                            "the fields with --input-field NAME "
                                            "--target-field NAME (known schemas: messages, "
                                            "conversations, prompt+completion, chosen+rejected,"
                                            " instruction+output, question+answer, text)")]),
    "mismatched_pc.jsonl": ('{"prompt": "p", "completion": [{"role": "assistant", '
                            '"content": "c"}]}\n',
                            [(1, "fields 'prompt' and 'completion' must both be strings or both "
                                 "be lists of messages (got a string and an array)")]),
    "array_syntax.json": ("[\n" + GOOD + ",\n" + GOOD + ",\n" + GOOD + "\n" + GOOD + "\n]\n",
                          [(5, "invalid JSON: Expecting ',' delimiter (column 1)")]),
    "array_non_utf8.json": (b"[\n" + GOOD.encode() + b',\n{"question": "\xff", "answer": "a"}]',
                            [(3, "not valid UTF-8: byte 0xff at column 15")]),
    "object_no_data.json": ('{"rows": []}', [(1, 'a JSON object at the top level must hold the '
                                                 'records as a list under "data" (found keys: '
                                                 'rows)')]),
    "several.jsonl": ('{"question": "", "answer": "a"}\n' + GOOD + '\n{"question": "q", '
                      '"answer": null}\n{oops\n',
                      [(3, "field 'answer' must be a string, not null"),
                       (4, "invalid JSON: Expecting property name enclosed in double quotes "
                           "(column 2)")]),
    "data.txt": ("question,answer\n", [(1, "unsupported file type '.txt': constraintlab reads "
                                           ".jsonl, .json, .csv and .parquet files (.jsonl, "
                                           ".json and .csv also gzipped: .gz)")]),
    "data.csv": ("question,answer\n", [(1, "no records: the CSV file has a header but no "
                                           "rows")]),
}


#: Reason code of each record-level problem above (file-level ones have none).
CODES = {
    "wrong_type.jsonl": ["wrong_type"], "missing_field.jsonl": ["missing_field"],
    "empty_target.jsonl": ["blank_target"], "unknown_role.jsonl": ["unknown_role"],
    "no_assistant_end.jsonl": ["not_assistant_end"], "syntax_middle.jsonl": ["invalid_json"],
    "non_utf8.jsonl": ["invalid_utf8"], "mixed.jsonl": ["mixed_schema"],
    "not_object.jsonl": ["not_object"], "no_schema.jsonl": ["no_schema"],
    "mismatched_pc.jsonl": ["wrong_type"], "several.jsonl": ["wrong_type", "invalid_json"],
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_file_reports_exact_location(tmp_path: Path, name: str) -> None:
    content, expected = BROKEN[name]
    path = write(tmp_path, name, content)
    want = [f"{path}:{line}: {msg}" for line, msg in expected]
    with pytest.raises(InputError) as err:
        read_examples(path, on_invalid="error")
    assert [str(p) for p in err.value.problems] == want
    # The default keeps the same problems as findings, or refuses when nothing valid is left.
    try:
        data = read_examples(path)
    except InputError as refused:
        assert [str(p) for p in refused.problems] == want
        found = refused.problems
    else:
        assert [str(f) for f in data.skipped] == want
        found = data.skipped
    if name in CODES:
        assert [(f.code, f.severity) for f in found] == [(c, "invalid") for c in CODES[name]]


def test_skip_mode_keeps_going_and_counts(tmp_path: Path) -> None:
    content, _ = BROKEN["several.jsonl"]
    path = write(tmp_path, "s.jsonl", content)
    data = read_examples(path, on_invalid="skip")
    assert [ex.index for ex in data] == [0, 1] and data.n_records == 4
    assert [(p.line, p.index) for p in data.skipped] == [(3, 2), (4, 3)]
    # line 1 has a blank question: used (the answer alone), and said so
    assert data[0].messages == (Message("assistant", "a"),) and data[0].input_text == ""
    assert [(str(f), f.code, f.index, f.severity) for f in data.notes] == [
        (f"{path}:1: empty input: field 'question' is blank; the answer is read without a "
         "prompt", "empty_input", 0, "note")]
    assert [f.index for f in data.findings] == [0, 2, 3]
    assert data.skipped[0].to_dict() == {
        "source": str(path), "line": 3, "index": 2, "code": "wrong_type",
        "severity": "invalid", "message": "field 'answer' must be a string, not null"}


def test_error_message_lists_at_most_twenty(tmp_path: Path) -> None:
    path = write(tmp_path, "many.jsonl", GOOD + "\n" + '{"question": 1, "answer": "a"}\n' * 30)
    with pytest.raises(InputError) as err:
        read_examples(path, on_invalid="error")
    lines = str(err.value).splitlines()
    assert len(err.value.problems) == 30 and len(lines) == 21
    assert lines[0].startswith(f"{path}:2: ") and lines[-1] == "... and 10 more problems"


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown format 'csv'"):
        ReadConfig(format="csv")
    with pytest.raises(ConfigError, match="train_on"):
        ReadConfig(train_on="everything")


# --- fuzzing: only examples or our own error, never anything else ---------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["messages", "role", "content", "question", "answer", "prompt",
                         "completion", "instruction", "input", "output", "text", "from", "value",
                         "conversations", "data", "chosen", "rejected"]) | st.text(max_size=5),
        inner, max_size=5),
    max_leaves=20)

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def _read_or_input_error(data) -> None:
    try:
        out = read_examples(data, on_invalid="skip")
    except ConstraintlabError:
        return
    assert len(out) >= 1
    assert all(ex.target_text.strip() for ex in out)


@FUZZ
@given(raw=st.binary(max_size=300), suffix=st.sampled_from([".jsonl", ".json", ".csv"]))
def test_random_bytes(tmp_path: Path, raw: bytes, suffix: str) -> None:
    _read_or_input_error(write(tmp_path, "fuzz" + suffix, raw))


@FUZZ
@given(raw=st.binary(max_size=300), suffix=st.sampled_from([".jsonl.gz", ".csv.gz"]),
       compress=st.booleans())
def test_random_gzip_bytes(tmp_path: Path, raw: bytes, suffix: str, compress: bool) -> None:
    import gzip
    _read_or_input_error(write(tmp_path, "fuzz" + suffix, gzip.compress(raw) if compress
                               else raw))


@FUZZ
@given(rows=st.lists(st.lists(st.text(max_size=6), min_size=1, max_size=4), max_size=5))
def test_random_csv_tables(tmp_path: Path, rows: list) -> None:
    import csv
    import io
    buf = io.StringIO()
    csv.writer(buf).writerows([["question", "answer"], *rows])
    _read_or_input_error(write(tmp_path, "fuzz.csv", buf.getvalue()))


@FUZZ
@given(values=st.lists(json_values, max_size=5), suffix=st.sampled_from([".jsonl", ".json"]))
def test_random_json_values(tmp_path: Path, values: list, suffix: str) -> None:
    text = jsonl(values) if suffix == ".jsonl" else json.dumps(values)
    _read_or_input_error(write(tmp_path, "fuzz" + suffix, text))
    _read_or_input_error(values)
