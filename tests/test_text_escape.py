"""Text from the data made safe for a terminal, JSON on stdout, Markdown and spreadsheets
(constraintlab._text), and the CLI printing through it."""

from __future__ import annotations

import csv
import json
import shutil
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from constraintlab._text import (
    csv_escape_frame,
    csv_unescape_frame,
    json_visible,
    markdown_escape,
    visible,
)
from constraintlab.cli.main import main
from constraintlab.report.report import Report


@pytest.mark.parametrize(("text", "shown"), [
    ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),        # retitle the terminal (OSC)
    ("a\x1b[2Jb", "a\\x1b[2Jb"),                        # clear the screen (CSI)
    ("ok\rFAIL", "ok\\rFAIL"),                           # overwrite the line
    ("\x9b31m", "\\x9b31m"),                             # C1 CSI
    ("abc\u202edcba", "abc\\u202edcba"),                 # right-to-left override
    ("x\u2028y\u2029z\x00\x7f", "x\\u2028y\\u2029z\\x00\\x7f"),
    ("lone \ud800", "lone \\ud800"),                     # cannot even be encoded to UTF-8
    ("a\nb\tc", "a\\nb\\tc"),
    ("plain ünïcödé 漢字 emoji 🙂 and \\x1b", "plain ünïcödé 漢字 emoji 🙂 and \\x1b"),
])
def test_visible_shows_control_characters(text: str, shown: str) -> None:
    assert visible(text) == shown
    assert visible(text, keep_newlines=True) == shown.replace("\\n", "\n").replace("\\t", "\t")
    visible(text).encode("utf-8")                       # printable on any UTF-8 terminal


def test_json_visible_is_the_same_json() -> None:
    value = {"t": "a\x9bb\u2028\u202e\ud800\x1b", "n": [1, -2.5]}
    text = json_visible(json.dumps(value, ensure_ascii=False))
    assert json.loads(text) == value
    assert all(c not in text for c in "\x9b\u2028\u202e\x1b") and "\\u009b" in text


def test_markdown_escape_escapes_every_ascii_punctuation_mark() -> None:
    punct = "".join(chr(c) for c in range(33, 127) if not chr(c).isalnum())
    assert markdown_escape(punct) == "".join("\\" + c for c in punct)
    assert markdown_escape("a b\nc") == "a b\\\\nc"


@pytest.fixture()
def hostile_examples(gate_report) -> pd.DataFrame:
    frame = Report.load(gate_report).examples.head(8).copy()
    cells = ["=HYPERLINK(\"http://x\",\"y\")", "+1+2", "-2+3", "@SUM(A1:A2)", "\tlead tab",
             "\rlead cr", "'quoted", "''=double"]
    frame["input"] = cells
    frame["target"] = ["plain", "- a list item", "a = b", "x", "=1", "'", "", "ok"]
    frame.loc[frame.index[6], "target"] = np.nan          # a missing text stays missing
    frame["loss"] = -np.arange(1, 9) / 3                   # negative numbers: never escaped
    return frame


def test_report_csv_escapes_formula_cells_and_load_undoes_it(hostile_examples, tmp_path,
                                                             monkeypatch, gate_report) -> None:
    report = Report.load(gate_report)
    report.examples = hostile_examples
    monkeypatch.setattr(Report, "to_html", lambda self: "")   # the CSV is what is tested here
    report.save(tmp_path)
    with (tmp_path / "examples.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    triggers = ("=", "+", "-", "@", "\t", "\r")
    for row, original in zip(rows, hostile_examples.itertuples(), strict=True):
        for name in ("input", "target"):
            value = getattr(original, name)
            if not isinstance(value, str):
                assert row[name] == ""
            elif value.startswith((*triggers, "'")):
                assert row[name] == "'" + value
            else:
                assert row[name] == value
        assert float(row["loss"]) == original.loss and row["loss"].startswith("-")
    for row in rows:              # no cell a spreadsheet would run, other than plain numbers
        assert not [v for v in row.values() if v.startswith(triggers) and not _number(v)], row
    back = Report.load(tmp_path).examples
    pd.testing.assert_frame_equal(back, hostile_examples, check_dtype=False)


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_unescape_touches_only_text_cells() -> None:
    frame = pd.DataFrame({"t": ["'=a", "b", None], "n": [-1.5, 2.0, np.nan]})
    escaped = csv_escape_frame(pd.DataFrame({"t": ["=a", "b", None], "n": [-1.5, 2.0, np.nan]}))
    assert escaped["t"].tolist()[:2] == ["'=a", "b"] and escaped["n"].tolist()[:2] == [-1.5, 2.0]
    assert csv_unescape_frame(frame)["t"].tolist()[:2] == ["=a", "b"]


def test_inspect_prints_control_characters_visibly(tmp_path, capsys) -> None:
    data = tmp_path / "evil.jsonl"
    rows = [{"question": "title \x1b]0;pwned\x07 clear \x1b[2J", "answer": "4\r\x9b2J\u202e"},
            {"question": "q", "answer": ""}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert main(["inspect", str(data), "--show", "1"]) == 0
    out = capsys.readouterr().out
    assert not any(c in out for c in "\x1b\x07\r\x9b\u202e")
    assert "  input  | title \\x1b]0;pwned\\x07 clear \\x1b[2J" in out
    assert "  target | 4\\r\\x9b2J\\u202e" in out
    assert main(["inspect", str(data), "--show", "1", "--json"]) == 0
    out = capsys.readouterr().out
    assert not any(c in out for c in "\x1b\x07\r\x9b\u202e")
    shown = json.loads(out)["examples_shown"][0]
    assert (shown["input"], shown["target"]) == (rows[0]["question"], rows[0]["answer"])


def test_error_messages_show_control_characters(tmp_path, capsys) -> None:
    name = tmp_path / "no\x1b[2Jsuch\n.jsonl"
    assert main(["inspect", str(name)]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "no\\x1b[2Jsuch" in err


def test_gate_summary_lines_show_control_characters(tmp_path, capsys, gate_report) -> None:
    shutil.copytree(gate_report, tmp_path / "r")
    assert main(["gate", str(tmp_path / "r"), "--fail-on", "determinacy != '\x1b[31m'"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "PASS  determinacy != '\\x1b[31m'" in out


def test_log_lines_show_control_characters(tmp_path, capsys) -> None:
    import logging

    from constraintlab.cli.main import _configure

    _configure(SimpleNamespace(verbose=0, quiet=False))
    try:
        logging.getLogger("constraintlab.test").warning("path %s", "a\x1b]0;x\x07b")
        err = capsys.readouterr().err
    finally:
        logging.basicConfig(force=True, handlers=[logging.NullHandler()])
    assert err == "WARNING constraintlab.test: path a\\x1b]0;x\\x07b\n"
