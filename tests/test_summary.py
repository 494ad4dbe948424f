"""The terminal summary leads with what to fix: one line from the report's numbers (null ->
"not measured", never 0), then the advice numbered with its record ids, then the table; the
verdict sentence only with -v."""

from __future__ import annotations

from pathlib import Path

from constraintlab.cli.analyze import fix_line, summary_lines
from constraintlab.report.report import Report


def test_fix_line_counts_what_was_found_and_says_what_was_not_measured() -> None:
    m = {"contradictions": 7, "duplicates": 4, "suspects": 2, "incoherent_families": 0,
         "invalid_records": 0}
    assert fix_line(m) == "To fix: 7 contradiction pairs, 4 duplicate rows, 2 likely wrong targets"
    m = {"contradictions": 1, "duplicates": 0, "suspects": None, "incoherent_families": None,
         "invalid_records": 3}
    assert fix_line(m) == ("To fix: 1 contradiction pair, 3 unusable records (skipped); likely "
                           "wrong targets, incoherent variant families: not measured")
    m = {"contradictions": 0, "duplicates": 0, "suspects": 0, "incoherent_families": 0,
         "invalid_records": 0}
    assert fix_line(m).startswith("Nothing to fix found")


def test_summary_order_and_verbose(gate_report: Path) -> None:
    report = Report.load(gate_report)
    lines = summary_lines(report)
    assert lines[2] == fix_line(report.metrics())
    advice = report.advice()
    # the capability statement, when it fires, right under the line of what to fix
    cap = (report.data.get("suspects") or {}).get("capability") or {}
    c = 1 if cap.get("limited") else 0
    assert lines[3].startswith("model capability: ") == bool(c)
    assert lines[4 + c] == "What to do next:" and lines[5 + c].startswith("  1. ")
    numbered = [ln for ln in lines if ln.lstrip()[:3].rstrip(". ").isdigit()
                and ln.startswith("  ") and ". " in ln[:6]]
    assert len(numbered) == len(advice)
    table = next(i for i, ln in enumerate(lines) if ln.startswith("  effective rank"))
    assert table > 5 + c + len(advice)
    sentence = report.verdict()[:60]
    assert not any(sentence in ln for ln in lines)
    verbose = "\n".join(summary_lines(report, verbose=True)).replace("\n", " ")
    assert sentence in verbose
