"""The formats users bring: preference pairs (HH transcripts, message lists), .gz, CSV, named
fields, DataFrames, DatasetDict splits, JSON-array record lines, one-line wrong-format errors.
Every value is checked against what the records say, written out by hand or split by plain
string operations."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from constraintlab.errors import ConfigError, InputError
from constraintlab.io import Message, ReadConfig, read_examples
from constraintlab.io.schemas import is_transcript, parse_transcript

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def jsonl(rows: list) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "constraintlab", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def U(text: str) -> Message:
    return Message("user", text)


def A(text: str) -> Message:
    return Message("assistant", text)


# --- preference records ---------------------------------------------------------------------

HH_CHOSEN = ("\n\nHuman: How do I boil an egg?\n\nAssistant: Put it in boiling water.\n\n"
             "Human: For how long?\n\nAssistant: About 9 minutes for a hard yolk.\n\n1. Cool it.")
HH_REJECTED = HH_CHOSEN.rsplit("\n\nAssistant: ", 1)[0] + "\n\nAssistant: Forever."


def test_hh_transcript_is_split_into_turns() -> None:
    assert is_transcript(HH_CHOSEN) and not is_transcript("Human rights are ...")
    assert parse_transcript(HH_CHOSEN) == (
        U("How do I boil an egg?"), A("Put it in boiling water."), U("For how long?"),
        A("About 9 minutes for a hard yolk.\n\n1. Cool it."))
    # no leading blank line, and no space after the colon
    assert parse_transcript("Human:hi\n\nAssistant: yo") == (U("hi"), A("yo"))


def test_preference_strings_chosen_by_default_rejected_on_request(tmp_path: Path) -> None:
    path = write(tmp_path / "hh.jsonl", jsonl([{"chosen": HH_CHOSEN, "rejected": HH_REJECTED}]))
    data = read_examples(path)
    (ex,) = data.examples
    assert data.schema == "preference" and ex.chat
    assert ex.messages[-1] == A("About 9 minutes for a hard yolk.\n\n1. Cool it.")
    assert ex.targets == (3,) and ex.messages[:3] == (
        U("How do I boil an egg?"), A("Put it in boiling water."), U("For how long?"))
    assert "the target is the chosen reply" in data.reading()
    rej = read_examples(path, preference="rejected")
    assert rej[0].messages[-1] == A("Forever.") and rej[0].messages[:3] == ex.messages[:3]
    assert "the target is the rejected reply" in rej.reading()
    # the two readings are different data: a feature store of one is never reused for the other
    assert rej.content_hash != data.content_hash
    assert data.content_hash == hashlib.sha256(path.read_bytes()).hexdigest()
    every = read_examples(path, train_on="all-assistant")
    assert every[0].targets == (1, 3)
    # other targets from the same file: another store (the hash folds in --train-on too)
    assert every.content_hash not in (data.content_hash, rej.content_hash)


def test_preference_with_prompt_field_and_message_lists(tmp_path: Path) -> None:
    rows = [
        # UltraFeedback: the prompt is also the first turn of each reply list
        {"prompt": "What is 2+2?",
         "chosen": [{"role": "user", "content": "What is 2+2?"},
                    {"role": "assistant", "content": "4"}],
         "rejected": [{"role": "user", "content": "What is 2+2?"},
                      {"role": "assistant", "content": "5"}]},
        # TRL conversational: the prompt turns, then the reply turns
        {"prompt": [{"role": "system", "content": "Be short."},
                    {"role": "user", "content": "Capital of France?"}],
         "chosen": [{"role": "assistant", "content": "Paris."}],
         "rejected": [{"role": "assistant", "content": "Lyon."}]},
        # TRL standard: plain strings
        {"prompt": "Name a prime.", "chosen": "7", "rejected": "8"},
        # HH with the prompt split off
        {"prompt": "\n\nHuman: Say hi.\n\nAssistant:", "chosen": " Hi!", "rejected": " No."},
        # HH with a prompt the replies already repeat
        {"prompt": "\n\nHuman: Say hi.", "chosen": "\n\nHuman: Say hi.\n\nAssistant: Hello!",
         "rejected": "\n\nHuman: Say hi.\n\nAssistant: Go away."},
    ]
    path = write(tmp_path / "pref.jsonl", jsonl(rows))
    data = read_examples(path)
    assert [ex.messages for ex in data] == [
        (U("What is 2+2?"), A("4")),
        (Message("system", "Be short."), U("Capital of France?"), A("Paris.")),
        (U("Name a prime."), A("7")),
        (U("Say hi."), A("Hi!")),
        (U("Say hi."), A("Hello!")),
    ]
    assert [ex.target_text for ex in read_examples(path, preference="rejected")] == [
        "5", "Lyon.", "8", "No.", "Go away."]
    assert not data.skipped and not data.notes


def test_preference_problems_are_findings(tmp_path: Path) -> None:
    rows = [{"chosen": "just a reply", "rejected": "another"},              # no prompt: alone
            {"chosen": 3, "rejected": "x"},                                 # wrong type
            {"chosen": "\n\nHuman: hi\n\nAssistant: ", "rejected": "x"},   # blank reply
            {"prompt": 5, "chosen": "a", "rejected": "b"}]                  # bad prompt
    path = write(tmp_path / "p.jsonl", jsonl(rows))
    data = read_examples(path)
    assert [ex.messages for ex in data] == [(A("just a reply"),)]
    assert [(f.line, f.code) for f in data.notes] == [(1, "empty_input")]
    assert [str(f) for f in data.skipped] == [
        f"{path}:2: field 'chosen' must be a string or a list of messages, not a number",
        f"{path}:3: empty target: assistant turn 1 is blank",
        f"{path}:4: field 'prompt' must be a string or a list of messages, not a number"]


def test_shared_hh_file_read_by_path(shared_data: Path) -> None:
    path = shared_data / "hh_harmless_dev.jsonl.gz"
    if not path.exists():
        pytest.skip(f"{path} not found")
    data = read_examples(path)
    raw = [json.loads(line) for line in gzip.open(path, "rt", encoding="utf-8")]
    assert data.schema == "preference" and data.n_records == len(raw) == 1462
    # the reference: the chosen text after its last "\n\nAssistant:" mark, split by hand
    last = [r["chosen"].rsplit("\n\nAssistant:", 1)[1].removeprefix(" ") for r in raw]
    blank = [i for i, t in enumerate(last) if not t.strip()]
    assert [f.index for f in data.skipped] == blank and len(blank) == 4
    assert [f.line for f in data.skipped] == [i + 1 for i in blank]
    assert [ex.index for ex in data] == [i for i in range(len(raw)) if i not in blank]
    assert [ex.target_text for ex in data] == [last[ex.index] for ex in data]
    turns = [r["chosen"].count("\n\nHuman:") + r["chosen"].count("\n\nAssistant:") for r in raw]
    assert [len(ex.messages) for ex in data] == [turns[ex.index] for ex in data]
    assert all(ex.messages[0].role == "user" for ex in data)
    assert data[0].messages[0].content == "what are some pranks with a pen i can do?"
    # the compressed file's identity is the hash of its records, not of the gzip bytes
    plain = gzip.open(path).read()
    assert data.content_hash == hashlib.sha256(plain).hexdigest()


def test_inspect_states_the_target_of_preference_data(tmp_path: Path) -> None:
    path = write(tmp_path / "hh.jsonl", jsonl([{"chosen": HH_CHOSEN, "rejected": HH_REJECTED}]))
    out = cli("inspect", str(path), "--json", "--show", "1")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["schema"] == "preference" and "chosen reply" in info["reading"]
    assert info["examples_shown"][0]["target"] == "About 9 minutes for a hard yolk.\n\n1. Cool it."
    out = cli("inspect", str(path), "--preference", "rejected", "--show", "1")
    assert out.returncode == 0, out.stderr
    assert "the target is the rejected reply" in out.stdout and "target | Forever." in out.stdout


# --- compressed files and CSV ---------------------------------------------------------------

QA = [{"question": "1+1?", "answer": "2"}, {"question": "2+2?", "answer": "4"}]


@pytest.mark.parametrize("name", ["d.jsonl.gz", "d.json.gz", "d.csv.gz"])
def test_gzip_files_read_like_the_plain_ones(tmp_path: Path, name: str) -> None:
    plain = (jsonl(QA) if name.startswith("d.jsonl") else
             json.dumps(QA, indent=1) if name.startswith("d.json") else
             'question,answer\n1+1?,2\n"2+2?","4"\n')
    path = write(tmp_path / name, gzip.compress(plain.encode()))
    data = read_examples(path)
    assert [(ex.input_text, ex.target_text) for ex in data] == [("1+1?", "2"), ("2+2?", "4")]
    assert data.content_hash == hashlib.sha256(plain.encode()).hexdigest()
    assert [ex.line for ex in data] == ([1, 2] if ".jsonl" in name else
                                        [2, 6] if ".json" in name else [2, 3])


def test_broken_gzip_files_are_one_line(tmp_path: Path) -> None:
    good = gzip.compress(jsonl(QA).encode())
    cases = {"trunc.jsonl.gz": (good[:-12], "the gzip file is truncated"),
             "notgz.jsonl.gz": (b"plain text\n", "not a valid gzip file: "),
             "empty.jsonl.gz": (gzip.compress(b""), "file is empty: no records"),
             "d.parquet.gz": (good, "unsupported file type '.parquet.gz'")}
    for name, (blob, want) in cases.items():
        path = write(tmp_path / name, blob)
        with pytest.raises(InputError) as err:
            read_examples(path)
        (problem,) = err.value.problems
        assert str(problem).startswith(f"{path}:1: {want}"), str(problem)


def test_csv_with_a_header_and_exact_record_lines(tmp_path: Path) -> None:
    content = ("question,answer,source\n"
               'Why?,"Because\nof two lines",a\n'      # a quoted field over two lines
               "\n"                                     # a blank line: not a record
               "How many?,3\n"                          # one field short
               "\"Say \"\"hi\"\"\",hi,b\n"              # doubled quotes
               ",,\n")                                  # all blank: not a record
    path = write(tmp_path / "d.csv", content)
    data = read_examples(path)
    assert data.schema == "qa" and data.n_records == 3
    assert [(ex.line, ex.input_text, ex.target_text) for ex in data] == [
        (2, "Why?", "Because\nof two lines"), (6, 'Say "hi"', "hi")]
    assert [str(f) for f in data.skipped] == [
        f"{path}:5: row has 2 fields but the header names 3 (answer, question, source)"]
    assert data.skipped[0].code == "bad_csv_row"


def test_csv_file_level_problems(tmp_path: Path) -> None:
    cases = {"dup.csv": ("q,q\n1,2\n", "1: the header names column 'q' more than once"),
             "blank.csv": ("q,,a\n1,2,3\n", "1: column 2 of the header has no name"),
             "utf.csv": (b"question,answer\nq,a\nq\xff,a\n", "3: not valid UTF-8: byte 0xff "
                                                              "at column 2"),
             "empty.csv": ("", "1: file is empty")}
    for name, (content, want) in cases.items():
        path = write(tmp_path / name, content)
        with pytest.raises(InputError) as err:
            read_examples(path)
        assert str(err.value.problems[0]).startswith(f"{path}:{want}"), str(err.value)


# --- named fields and the one-line wrong-format message --------------------------------------

def test_input_and_target_fields(tmp_path: Path) -> None:
    rows = [{"prompt_text": f"p{i}", "reply": f"r{i}", "id": i} for i in range(3)]
    rows.append({"prompt_text": "p3", "id": 3})          # no reply
    path = write(tmp_path / "f.jsonl", jsonl(rows))
    data = read_examples(path, input_field="prompt_text", target_field="reply")
    assert data.schema == "fields"
    assert [ex.messages for ex in data] == [(U(f"p{i}"), A(f"r{i}")) for i in range(3)]
    assert [str(f) for f in data.skipped] == [f"{path}:4: missing field 'reply'"]
    alone = read_examples(path, target_field="reply")
    assert [ex.messages for ex in alone] == [(A(f"r{i}"),) for i in range(3)]
    assert "field 'prompt_text'" in data.reading()
    with pytest.raises(ConfigError, match="needs target_field"):
        ReadConfig(input_field="prompt_text")
    with pytest.raises(ConfigError, match="cannot be combined with format 'qa'"):
        ReadConfig(format="qa", target_field="reply")
    with pytest.raises(ConfigError, match="same field"):
        ReadConfig(input_field="x", target_field="x")


def test_no_known_schema_is_one_line_with_the_fix(tmp_path: Path) -> None:
    path = write(tmp_path / "u.jsonl", jsonl([{"Prompt": f"p{i}", "response": "r", "n": i}
                                              for i in range(25)]))
    for on_invalid in ("skip", "error"):
        with pytest.raises(InputError) as err:
            read_examples(path, on_invalid=on_invalid)
        assert [str(p) for p in err.value.problems] == [
            f"{path}:1: no known schema: all 25 records have keys [Prompt, n, response]; name "
            "the fields with --input-field Prompt --target-field response (known schemas: "
            "messages, conversations, prompt+completion, chosen+rejected, instruction+output, "
            "question+answer, text)"]
    # the same mistake with a named field that no record has
    with pytest.raises(InputError) as err:
        read_examples(path, input_field="Prompt", target_field="answer")
    assert [str(p) for p in err.value.problems] == [
        f"{path}:1: missing field 'answer' (--target-field): all 25 records have keys "
        "[Prompt, n, response]; use --input-field Prompt --target-field response"]
    # some records readable: the others stay findings, one per record
    mixed = write(tmp_path / "m.jsonl", jsonl([{"foo": 1}, QA[0], {"foo": 2}]))
    data = read_examples(mixed)
    # (a record after the schema is known is read as that schema: it names what it lacks)
    assert [(f.line, f.code) for f in data.skipped] == [(1, "no_schema"), (3, "missing_field")]


def test_cli_fields_and_wrong_format(tmp_path: Path) -> None:
    path = write(tmp_path / "u.jsonl", jsonl([{"q": "2+2?", "a": "4"}] * 3))
    out = cli("inspect", str(path))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.splitlines() == [
        f"constraintlab inspect: error: {path}:1: no known schema: all 3 records have keys "
        "[a, q]; name the fields with --input-field NAME --target-field NAME (known schemas: "
        "messages, conversations, prompt+completion, chosen+rejected, instruction+output, "
        "question+answer, text)"]
    out = cli("inspect", str(path), "--input-field", "q", "--target-field", "a", "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert (info["schema"], info["examples"]) == ("fields", 3)
    assert info["examples_shown"][0]["input"] == "2+2?"
    out = cli("inspect", str(path), "--input-field", "q")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "--target-field" in out.stderr and len(out.stderr.splitlines()) == 1


# --- in memory: DataFrame and DatasetDict ----------------------------------------------------

def test_pandas_dataframe() -> None:
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame([{"instruction": "Add.", "input": "1 and 2", "output": "3"},
                       {"instruction": "Greet.", "output": "Hi"}])  # input: NaN
    data = read_examples(df)
    assert data.source == "<dataframe>" and data.schema == "alpaca"
    assert [(ex.input_text, ex.target_text) for ex in data] == [("Add.\n\n1 and 2", "3"),
                                                                  ("Greet.", "Hi")]
    msgs = pd.DataFrame({"messages": [[{"role": "user", "content": "a"},
                                       {"role": "assistant", "content": "b"}]]})
    assert read_examples(msgs)[0].messages == (U("a"), A("b"))


def test_dataset_dict_split() -> None:
    datasets = pytest.importorskip("datasets")
    dd = datasets.DatasetDict({
        "train": datasets.Dataset.from_list(QA),
        "test": datasets.Dataset.from_list([{"question": "3+3?", "answer": "6"}])})
    with pytest.raises(InputError, match=r"2 splits \(test, train\): choose one with split="):
        read_examples(dd)
    assert [ex.target_text for ex in read_examples(dd, split="train")] == ["2", "4"]
    assert [ex.target_text for ex in read_examples(dd, split="test")] == ["6"]
    with pytest.raises(InputError, match="no split 'dev'"):
        read_examples(dd, split="dev")
    one = datasets.DatasetDict({"train": datasets.Dataset.from_list(QA)})
    assert len(read_examples(one)) == 2


# --- JSON arrays: each record on its own line ----------------------------------------------

def test_json_array_records_name_their_line_and_number(tmp_path: Path) -> None:
    rows = [QA[0], {"question": "q", "answer": ""}, QA[1], {"question": "q"}]
    one_line = write(tmp_path / "one.json", json.dumps(rows))
    data = read_examples(one_line)
    assert [str(f) for f in data.skipped] == [
        f"{one_line}:1: record 1: empty target: field 'answer' is blank",
        f"{one_line}:1: record 3: missing field 'answer'"]
    pretty = write(tmp_path / "pretty.json", json.dumps(rows, indent=2))
    data = read_examples(pretty)
    # where each record's "{" stands, found by hand in the text
    starts = [i + 1 for i, line in enumerate(pretty.read_text().splitlines())
              if line == "  {"]
    assert [ex.line for ex in data] == [starts[0], starts[2]]
    assert [f.line for f in data.skipped] == [starts[1], starts[3]]
    assert [str(f).split(": ", 1)[1] for f in data.skipped] == [
        "record 1: empty target: field 'answer' is blank", "record 3: missing field 'answer'"]


def test_record_lines_of_compressed_and_csv_files(tmp_path: Path) -> None:
    from constraintlab.api import record_lines
    plain = write(tmp_path / "d.jsonl", jsonl(QA))
    assert record_lines(plain, [1, 0]) == (
        [(json.dumps(QA[1]) + "\n").encode(), (json.dumps(QA[0]) + "\n").encode()],
        "original lines")
    gz = write(tmp_path / "d.jsonl.gz", gzip.compress(jsonl(QA).encode()))
    csv_path = write(tmp_path / "d.csv", "question,answer\n1+1?,2\n2+2?,4\n")
    for path in (gz, csv_path):
        chunks, mode = record_lines(path, [1])
        assert mode == "json objects" and [json.loads(c) for c in chunks] == [QA[1]]


def test_examples_write_back_their_own_lines_without_reading_again(tmp_path: Path) -> None:
    """ExampleSet.record_bytes gives each example's line as stored (the file split by hand on
    b"\\n"), from what was read: the file may be gone by then."""
    from constraintlab.api import record_lines
    lines = [b'\xef\xbb\xbf{"question": "1+1?", "answer": "2"}',       # BOM: not part of it
             b'{"question": "Caf\xc3\xa9 \xe2\x82\xac?",  "answer": "3"}\r',   # CRLF, spacing
             b"",                                                         # blank: no record
             b'{"question": "broken", ',                                  # invalid: skipped
             b'{"answer": "4", "question": "2+2?"}']                      # no final newline
    path = write(tmp_path / "d.jsonl", b"\n".join(lines))
    data = read_examples(path, on_invalid="skip")
    assert [ex.index for ex in data] == [0, 1, 3] and len(data.skipped) == 1
    path.unlink()
    chunks, mode = data.record_bytes([3, 0, 1])
    assert mode == "original lines"
    assert chunks == [lines[4] + b"\n", lines[0][3:] + b"\n", lines[1] + b"\n"]
    assert record_lines(data, [1]) == ([lines[1] + b"\n"], "original lines")
    # records in memory (and any other format) come back as one JSON object per line
    rows = [{"question": "\u00fc?", "answer": "1"}, {"question": "b", "answer": "2"}]
    chunks, mode = read_examples(rows).record_bytes([1, 0])
    assert mode == "json objects"
    assert chunks == [(json.dumps(r, ensure_ascii=False) + "\n").encode() for r in rows[::-1]]
