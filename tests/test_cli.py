"""The CLI as a user runs it: a subprocess, exit codes 0/2, no traceback on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from constraintlab import __version__

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "gsm8k_sample.jsonl"


def cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "constraintlab", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_version() -> None:
    out = cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"constraintlab {__version__}"


def test_no_command_prints_help_and_exits_2() -> None:
    out = cli()
    assert out.returncode == 2 and "COMMAND" in out.stderr


def test_inspect_sample_json_matches_the_file() -> None:
    out = cli("inspect", str(SAMPLE), "--json", "--show", "2")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    assert (info["schema"], info["examples"], info["records"]) == ("qa", len(rows), len(rows))
    targets = [len(r["answer"]) for r in rows]
    assert info["length_chars"]["target"]["max"] == max(targets)
    assert info["length_chars"]["target"]["mean"] == pytest.approx(sum(targets) / len(targets),
                                                                   rel=1e-12)
    assert [e["input"] for e in info["examples_shown"]] == [r["question"] for r in rows[:2]]


def test_inspect_human_output() -> None:
    out = cli("inspect", str(SAMPLE), "--show", "1")
    assert out.returncode == 0
    assert out.stdout.startswith(f"{SAMPLE}: 306 examples, schema qa")
    assert "--- record 0 (line 1)" in out.stdout


def test_bad_input_exit_2_with_locations_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "a"}\n{"question": "q", "answer": ""}\n{x\n')
    out = cli("inspect", str(bad), "--on-invalid", "error")
    assert out.returncode == 2 and out.stdout == ""
    assert "Traceback" not in out.stderr
    assert out.stderr.splitlines() == [
        f"constraintlab inspect: error: {bad}:2: empty target: field 'answer' is blank",
        f"{bad}:3: invalid JSON: Expecting property name enclosed in double quotes (column 2)",
    ]


def test_skip_mode_counts_skipped_records(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "a"}\n{"question": "q", "answer": ""}\n')
    out = cli("inspect", str(bad), "--on-invalid", "skip", "--json")
    assert out.returncode == 0
    info = json.loads(out.stdout)
    assert info["examples"] == 1 and info["skipped"] == [
        f"{bad}:2: empty target: field 'answer' is blank"]


def test_missing_file_and_bad_option_exit_2(tmp_path: Path) -> None:
    out = cli("inspect", str(tmp_path / "nope.jsonl"))
    assert out.returncode == 2 and "no such file" in out.stderr and "Traceback" not in out.stderr
    out = cli("inspect", str(SAMPLE), "--format", "csv")
    assert out.returncode == 2 and "invalid choice" in out.stderr


def test_default_lists_unusable_records_as_findings(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "a"}\n{"question": "q", "answer": ""}\n{x\n')
    out = cli("inspect", str(bad), "--json")
    assert out.returncode == 0 and "Traceback" not in out.stderr
    info = json.loads(out.stdout)
    assert info["examples"] == 1
    assert [s.split(":")[1] for s in info["skipped"]] == ["2", "3"]
