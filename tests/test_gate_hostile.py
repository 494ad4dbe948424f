"""The gate on hostile inputs: damaged report directories, config files of the wrong shape,
``--summary-md`` paths that cannot be written, and text from the data that tries to inject
Markdown or terminal escapes. Every case: exit 2 with ``path: what is wrong`` on stderr (no
traceback), or the documented result; nothing written before is lost.

The report is a real one (conftest's ``gate_report``: ``constraintlab analyze`` of 12 GSM8K
records and one record of formula and escape text, on a tiny model, k = 32), copied per test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from constraintlab.cli.main import main
from constraintlab.gate import MAX_CONFIG_BYTES

ERR = "constraintlab gate: error: "


@pytest.fixture()
def report(tmp_path: Path, gate_report: Path) -> Path:
    out = tmp_path / "report"
    shutil.copytree(gate_report, out)
    return out


def gate(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["gate", *map(str, args), "--quiet"])
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return code, out.out, out.err


def test_the_fixture_report_passes_and_fails_as_its_numbers_say(report, capsys) -> None:
    data = json.loads((report / "report.json").read_text(encoding="utf-8"))
    n = data["system"]["n_equations"]
    code, out, err = gate(capsys, report, "--fail-on", f"examples == {n}")
    assert (code, err) == (0, "") and f"PASS  examples == {n}  (value: {n})" in out
    code, out, _ = gate(capsys, report, "--fail-on", f"examples < {n}")
    assert code == 1 and "gate FAILED: 0 of 1 conditions hold" in out


def _json(report: Path) -> dict:
    return json.loads((report / "report.json").read_text(encoding="utf-8"))


def _put(report: Path, data) -> None:
    (report / "report.json").write_text(json.dumps(data), encoding="utf-8")


def _del_system_rank(d: dict) -> dict:
    del d["system"]["rank"]
    return d


def _drop(*names: str):
    return lambda d: {k: v for k, v in d.items() if k not in names}


@pytest.mark.parametrize(("damage", "message"), [
    (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
     "report.json: not valid JSON ("),
    (lambda p: p.write_text("", encoding="utf-8"), "report.json: not valid JSON ("),
    (lambda p: p.write_text("[1, 2]", encoding="utf-8"),
     "report.json: expected a JSON object (a constraintlab report), got an array"),
    (lambda p: p.write_text('"report"', encoding="utf-8"),
     "report.json: expected a JSON object (a constraintlab report), got a string"),
    (lambda p: p.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8"),
     "report.json: not a constraintlab report: JSON nested too deeply"),
    (lambda p: p.write_text('{"schema_version": ' + "7" * 5000 + "}", encoding="utf-8"),
     "report.json: not valid JSON: Exceeds the limit"),
    (lambda p: p.write_bytes(b'{"schema_version": 1, "x": "\xff"}'),
     "report.json: not UTF-8 text (invalid start byte at byte 28)"),   # 28: where \xff is
    (lambda p: p.write_text('{"schema_version": 1}', encoding="utf-8"),
     "report.json: report schema version 1; this constraintlab reads version 2"),
])
def test_damaged_report_json(report, capsys, damage, message) -> None:
    damage(report / "report.json")
    code, out, err = gate(capsys, report, "--fail-on", "examples > 0")
    assert code == 2 and out == ""
    assert err.startswith(f"{ERR}{report / message}"), err


@pytest.mark.parametrize(("edit", "message"), [
    (_drop("system"), "lacks the section(s) system: not a complete constraintlab report"),
    (_drop("zones", "contradictions"), "lacks the section(s) contradictions, zones:"),
    (lambda d: {**d, "zones": [], "system": None},
     "sections must be objects: system is null, zones is an array"),
    (_del_system_rank, "malformed report (missing key 'rank'); rerun constraintlab analyze"),
    (lambda d: {**d, "system": {**d["system"], "sentence": 3}},
     'malformed report (TypeError: can only concatenate str (not "int") to str)'),
])
def test_report_json_lacking_sections(report, capsys, edit, message) -> None:
    _put(report, edit(_json(report)))
    code, out, err = gate(capsys, report, "--fail-on", "examples > 0")
    assert code == 2 and out == ""
    assert err.startswith(f"{ERR}{report / 'report.json'}: {message}"), err


@pytest.mark.parametrize(("name", "damage", "message"), [
    ("examples.csv", Path.unlink, "examples.csv: missing (the report directory is incomplete"),
    ("constraint_graph.graphml", Path.unlink,
     "constraint_graph.graphml: missing (the report directory is incomplete"),
    ("examples.csv", lambda p: p.write_text(""), "examples.csv: cannot read the examples table"),
    ("examples.csv", lambda p: p.write_text("a,b\n1,2\n"),
     "examples.csv: cannot read the examples table"),
    ("constraint_graph.graphml", lambda p: p.write_bytes(p.read_bytes()[:300]),
     "constraint_graph.graphml: cannot read the constraint graph: ParseError"),
    ("tokens.npz", lambda p: p.write_bytes(b"PK\x03\x04 not a zip"),
     "tokens.npz: cannot read the token profiles: BadZipFile"),
    ("tokens.npz", lambda p: np.savez(p, nll=np.zeros(3)),
     "tokens.npz: cannot read the token profiles: TypeError"),
])
def test_report_directory_files_missing_or_damaged(report, capsys, name, damage,
                                                    message) -> None:
    if name == "tokens.npz":       # the fixture has no token profiles: give it some
        (report / "tokens.jsonl").write_text('["a"]\n', encoding="utf-8")
        (report / name).touch()
    damage(report / name)
    code, out, err = gate(capsys, report, "--fail-on", "examples > 0")
    assert code == 2 and out == ""
    assert err.startswith(f"{ERR}{report / message}"), err


def test_report_json_that_is_a_directory_or_absent(report, capsys, tmp_path) -> None:
    (report / "report.json").unlink()
    (report / "report.json").mkdir()
    code, _, err = gate(capsys, report, "--fail-on", "examples > 0")
    assert (code, err) == (2, f"{ERR}{report / 'report.json'}: not a regular file\n")
    code, _, err = gate(capsys, tmp_path / "nothing" / "report.json", "--fail-on", "x > 0")
    assert code == 2 and "unknown gate metric 'x'" in err      # conditions are checked first
    code, _, err = gate(capsys, tmp_path / "nothing" / "report.json", "--fail-on",
                        "examples > 0")
    assert (code, err) == (2, f"{ERR}{tmp_path / 'nothing' / 'report.json'}: no such file; "
                              "run constraintlab analyze first\n")


def test_null_metric_fails_its_condition(report, capsys) -> None:
    """``null`` in report.json is "not measured" (non-finite numbers are written as null): a
    numeric condition on it fails (exit 1), as on nan."""
    data = _json(report)
    data["redundancy"]["redundancy_ratio"] = None
    _put(report, data)
    code, out, _ = gate(capsys, report, "--fail-on", "redundancy_ratio < 1")
    assert code == 1 and "FAIL  redundancy_ratio < 1  (value: not measured)" in out


# -- config files ------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "content", "message"), [
    ("pyproject.toml", "tool = 3\n", "tool must be a table ([tool]), not an integer"),
    ("pyproject.toml", '[tool]\nconstraintlab = "x"\n',
     "tool.constraintlab must be a table ([tool.constraintlab]), not a string"),
    ("pyproject.toml", "[tool.constraintlab]\ngate = 5\n",
     "tool.constraintlab.gate must be a table ([tool.constraintlab.gate] with require"),
    ("constraintlab.toml", "gate = [1]\n", "gate must be a table ([gate] with require = "),
    ("constraintlab.toml", "[gate]\nrequire = [1, 'examples > 0']\n",
     '[gate]: require must be a non-empty array of strings ("METRIC OP VALUE"), not an array '
     "holding an integer"),
    ("constraintlab.toml", "[gate]\nrequire = {a = 1}\n",
     "require must be a non-empty array of strings (\"METRIC OP VALUE\"), not a table"),
    ("constraintlab.toml", "[gate]\nrequire = []\n", "not an empty array"),
    ("constraintlab.toml", "[gate]\n3 = 4\n", "[gate]: unknown key(s) '3'"),
    ("constraintlab.toml", "a = " + "[" * 50_000 + "]" * 50_000 + "\n",
     "not valid TOML for a gate config: nested too deeply"),
    ("constraintlab.toml", "a = " + "{b = " * 5_000 + "1" + "}" * 5_000 + "\n",
     "not valid TOML for a gate config: nested too deeply"),
    ("constraintlab.toml", "a = " + "1" * 5000 + "\n", "not valid TOML: Exceeds the limit"),
    ("constraintlab.toml", "[gate]\nrequire = ['examples > 0'", "not valid TOML: "),
    ("constraintlab.toml", "[gate]\nrequire = ['examples >= ']\n",
     "[gate]: cannot read gate condition 'examples >= '"),
])
def test_config_files_of_the_wrong_shape(report, capsys, tmp_path, name, content,
                                         message) -> None:
    config = tmp_path / name
    config.write_text(content, encoding="utf-8")
    code, out, err = gate(capsys, report, "--config", config)
    assert code == 2 and out == ""
    assert err.startswith(f"{ERR}{config}") and message in err, err


def test_config_file_not_utf8_too_large_or_not_a_file(report, capsys, tmp_path) -> None:
    config = tmp_path / "constraintlab.toml"
    config.write_bytes(b"[gate]\nrequire = ['\xff']\n")
    code, _, err = gate(capsys, report, "--config", config)
    assert code == 2 and f"{config}: not valid TOML: not UTF-8 text (invalid start byte" in err
    config.write_text("# " + "x" * MAX_CONFIG_BYTES + "\n")
    code, _, err = gate(capsys, report, "--config", config)
    assert (code, err) == (2, f"{ERR}gate config {config} has {MAX_CONFIG_BYTES + 3:,} bytes; "
                              f"a gate config may have at most {MAX_CONFIG_BYTES:,}\n")
    code, _, err = gate(capsys, report, "--config", tmp_path)
    assert code == 2 and f"gate config {tmp_path} is not a regular file" in err
    code, _, err = gate(capsys, report, "--config", tmp_path / ("x" * 300))
    assert code == 2 and "cannot read it: File name too long" in err


def test_broken_pyproject_found_by_discovery_is_an_error(report, capsys, tmp_path,
                                                         monkeypatch) -> None:
    (tmp_path / "pyproject.toml").write_text("tool = 'x'\n")
    monkeypatch.chdir(tmp_path)
    code, _, err = gate(capsys, report)
    assert (code, err) == (2, f"{ERR}pyproject.toml: tool must be a table ([tool]), not a "
                              "string\n")


# -- --summary-md ------------------------------------------------------------------------------
def test_summary_md_directory_or_missing_folder_fails_before_any_work(report, capsys,
                                                                      tmp_path) -> None:
    (report / "report.json").write_text("[]")   # would fail later: the path is checked first
    code, _, err = gate(capsys, report, "--fail-on", "examples > 0", "--summary-md", tmp_path)
    assert (code, err) == (2, f"{ERR}--summary-md {tmp_path}: is a directory; give a file "
                              '(e.g. "$GITHUB_STEP_SUMMARY")\n')
    target = tmp_path / "no" / "such" / "summary.md"
    code, _, err = gate(capsys, report, "--fail-on", "examples > 0", "--summary-md", target)
    assert (code, err) == (2, f"{ERR}--summary-md {target}: the folder {target.parent} does "
                              "not exist\n")
    assert not (tmp_path / "no").exists()


def test_summary_md_appends_to_what_was_there(report, capsys, tmp_path) -> None:
    _put(report, {**_json(report), "dataset": {**_json(report)["dataset"],
                                               "source": "data.jsonl"}})
    md = tmp_path / "summary.md"
    md.write_text("# earlier step\n", encoding="utf-8")
    code, _, _ = gate(capsys, report, "--fail-on", "examples > 0", "--summary-md", md)
    code2, _, _ = gate(capsys, report, "--fail-on", "examples < 0", "--summary-md", md)
    text = md.read_text(encoding="utf-8")
    assert (code, code2) == (0, 1)
    assert text.startswith("# earlier step\n### constraintlab gate: passed — data\\.jsonl\n")
    assert text.count("### constraintlab gate: ") == 2 and "FAILED — data\\.jsonl" in text


# -- injection -----------------------------------------------------------------------------------
HOSTILE_SOURCE = ("data.jsonl\n### All checks passed <img src=x onerror=alert(1)> "
                  "[docs](javascript:alert(2)) | x | `y` \x1b]0;pwned\x07")


def _rendered_html(markdown: str) -> str | None:
    """The Markdown as HTML (markdown-it-py, CommonMark + GFM tables), when the package is
    there (it comes with the notebook test extras); else None."""
    try:
        import markdown_it
    except ImportError:
        return None
    return markdown_it.MarkdownIt("commonmark").enable("table").render(markdown)


def test_summary_md_escapes_paths_names_and_values(report, capsys, tmp_path) -> None:
    data = _json(report)
    data["dataset"]["source"] = HOSTILE_SOURCE
    data["system"]["determinacy"] = "<b>x</b>\n# y"
    _put(report, data)
    md = tmp_path / "summary.md"
    code, _, _ = gate(capsys, report, "--fail-on", "determinacy != 'a|b`c'", "--summary-md",
                      md)
    assert code == 0
    text = md.read_text(encoding="utf-8")
    lines = text.splitlines()
    # one heading, on the first line; the newline in the path is shown as \n, not a new line
    assert [ln for ln in lines if ln.startswith("#")] == [lines[0]]
    assert lines[0].startswith("### constraintlab gate: passed — data\\.jsonl\\\\n\\#\\#\\#")
    assert not re.search(r"(?<!\\)[<>\[\]]", text) and "\x1b" not in text   # all escaped
    assert "\\<img src\\=x onerror\\=alert\\(1\\)\\>" in text
    # the table keeps 3 columns: the condition's pipe is escaped inside a code span
    assert lines[-1] == ("| ✅ | ``determinacy != 'a\\|b`c'`` | "
                         "\\\"\\<b\\>x\\<\\/b\\>\\\\n\\# y\\\" |")
    html = _rendered_html(text)
    if html is None:
        return
    assert "<img" not in html and "<a " not in html and "<b>" not in html
    assert html.count("<h3>") == 1 and html.count("<th>") == html.count("<td>") == 3
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "\\x1b]0;pwned\\x07" in html


def test_terminal_output_shows_control_characters(report, capsys) -> None:
    data = _json(report)
    data["system"]["determinacy"] = "over\x1b[2J\rdetermined\u202e"
    _put(report, data)
    code, out, _ = gate(capsys, report, "--fail-on", "determinacy != 'x\x1b]0;t\x07'")
    assert code == 0 and "\x1b" not in out and "\r" not in out and "\u202e" not in out
    assert ("  PASS  determinacy != 'x\\x1b]0;t\\x07'  (value: \"over\\x1b[2J\\rdetermined"
            "\\u202e\")") in out


def test_fifo_and_device_are_refused_without_reading(report, capsys, tmp_path) -> None:
    """A FIFO would block a reader forever and /dev/zero never ends: neither is opened."""
    fifo = tmp_path / "constraintlab.toml"
    os.mkfifo(fifo)
    code, _, err = gate(capsys, report, "--config", fifo)
    assert (code, err) == (2, f"{ERR}gate config {fifo} is not a regular file (a directory, "
                              "FIFO or device): give a TOML file\n")
    zero = tmp_path / "zero.toml"
    zero.symlink_to("/dev/zero")
    code, _, err = gate(capsys, report, "--config", zero)
    assert code == 2 and "is not a regular file" in err
    (report / "report.json").unlink()
    (report / "report.json").symlink_to("/dev/zero")
    code, _, err = gate(capsys, report, "--fail-on", "examples > 0")
    assert (code, err) == (2, f"{ERR}{report / 'report.json'}: not a regular file\n")


def test_report_load_itself_names_the_damage(report) -> None:
    """The API (and ``probe --report``) read reports through the same checks as the gate."""
    from constraintlab.errors import ConstraintlabError
    from constraintlab.report.report import Report

    (report / "report.json").write_text('{"schema_version": 2', encoding="utf-8")
    with pytest.raises(ConstraintlabError, match=re.escape(f"{report / 'report.json'}: not "
                                                           "valid JSON (")):
        Report.load(report)
    (report / "report.json").write_text("[]", encoding="utf-8")
    with pytest.raises(ConstraintlabError, match="expected a JSON object"):
        Report.load(report / "report.json")
