"""Gate conditions: parsing, evaluation, config discovery, Markdown."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from constraintlab.errors import ConfigError
from constraintlab.gate import (
    Condition,
    check,
    evaluate,
    load_conditions,
    markdown_summary,
    passed,
    text_summary,
)

METRICS = {"exact_duplicates": 2, "contradictions": 5, "interference_excess": 0.0312,
           "determinacy": "saturating", "model_limited": False, "volatility_p99": 0.55,
           "incoherent_families": 0, "max_volatility": math.nan}


@pytest.mark.parametrize(("text", "passed"), [
    ("exact_duplicates == 0", False), ("exact_duplicates <= 2", True),
    ("contradictions < 5", False), ("contradictions <= 5", True), ("contradictions >= 5.0", True),
    ("interference_excess < 0.02", False), ("interference_excess<3.2e-2", True),
    ('determinacy != "still_growing"', True), ("determinacy == saturating", True),
    ("determinacy != 'saturating'", False), ("model_limited == false", True),
    ("volatility_p99 < 0.6", True), ("volatility_p99 < 0.5", False),
    ("incoherent_families == 0", True), ("incoherent_families > 0", False),
    # a metric the report did not measure (nan) fails every numeric condition
    ("max_volatility < 2", False), ("max_volatility >= 0", False),
])
def test_conditions_evaluate_like_python(text: str, passed: bool) -> None:
    (check,) = evaluate([Condition.parse(text)], METRICS)
    assert check.passed is passed
    assert check.line.startswith("PASS" if passed else "FAIL")


@pytest.mark.parametrize("text", [
    "suspect_share < 0.02", "suspect_share >= 0", "suspect_share != 0.5", "suspects == 0",
    "model_limited == false", "model_limited != true", 'consistency != "inconsistent"',
    'consistency == "consistent"'])
def test_null_metric_fails_every_condition(text: str) -> None:
    """Issue 22: null in report.json (not measured) fails every condition, numeric or not,
    whatever the operator; the line says "not measured"."""
    for missing in (None, math.nan):   # report.json null; Report.metrics() nan
        metrics = dict.fromkeys(("suspect_share", "suspects", "model_limited", "consistency"),
                                missing)
        (check,) = evaluate([Condition.parse(text)], metrics)
        assert check.passed is False
        assert check.line.startswith("FAIL") and "not measured" in check.line


def test_check_line_shows_value() -> None:
    (check,) = evaluate([Condition.parse("contradictions <= 4")], METRICS)
    assert check.line == "FAIL  contradictions <= 4  (value: 5)"


@pytest.mark.parametrize(("text", "message"), [
    ("contradictions", "cannot read gate condition"),
    ("contradictions <=", "cannot read gate condition"),
    ("contradictions =< 3", "cannot read gate condition"),
    ("contradictions <= five percent", "cannot read value"),
    ("nonsense < 1", "unknown gate metric 'nonsense'; known metrics: contradictions"),
    ("determinacy < 3", "types differ or the operator does not apply"),
])
def test_bad_conditions_are_config_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        evaluate([Condition.parse(text)], METRICS)


def test_config_discovery_order(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[tool.constraintlab.gate]\nrequire = ["contradictions <= 5"]\n')
    conds, origin = load_conditions(search_dir=tmp_path)
    assert [c.text for c in conds] == ["contradictions <= 5"]
    assert origin == "pyproject.toml [tool.constraintlab.gate]"
    (tmp_path / "constraintlab.toml").write_text('[gate]\nrequire = ["exact_duplicates == 0"]\n')
    conds, origin = load_conditions(search_dir=tmp_path)
    assert [c.text for c in conds] == ["exact_duplicates == 0"] and origin.startswith("constr")
    conds, origin = load_conditions(fail_on=["verdict != x"], search_dir=tmp_path)
    assert origin == "--fail-on" and conds[0].value == "x"


@pytest.mark.parametrize(("content", "message"), [
    ("[gate\n", "not valid TOML"),
    ("[gate]\nrequire = 3\n", "require must be a non-empty array of strings"),
    ("[gate]\nrequires = []\n", "unknown key"),
    ("[other]\n", "has no gate table"),
])
def test_broken_config_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "constraintlab.toml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_conditions(config=path)


def test_no_conditions_anywhere(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no gate conditions"):
        load_conditions(search_dir=tmp_path)


def test_markdown_summary() -> None:
    checks = evaluate([Condition.parse("exact_duplicates == 0"),
                       Condition.parse("contradictions <= 5")], METRICS)
    md = markdown_summary(checks, title="data.jsonl", origin="--fail-on")
    assert md.splitlines()[0] == "### constraintlab gate: FAILED — data\\.jsonl"
    assert "1 of 2 conditions hold" in md
    assert "| ❌ | `exact_duplicates == 0` | 2 |" in md
    assert "| ✅ | `contradictions <= 5` | 5 |" in md


def test_report_metrics_name_the_new_analyzers() -> None:
    from constraintlab.report.report import METRICS as REPORT_METRICS

    new = {"volatility_p99", "max_volatility", "families", "family_members",
           "incoherent_families"}
    assert new <= set(REPORT_METRICS) and all(REPORT_METRICS[m] for m in new)


class _FakeReport:
    def metrics(self) -> dict:
        return METRICS


def test_check_loads_conditions_and_evaluates_a_report_or_a_mapping(tmp_path: Path) -> None:
    (tmp_path / "constraintlab.toml").write_text('[gate]\nrequire = ["contradictions <= 5"]\n')
    checks, origin = check(_FakeReport(), search_dir=tmp_path)
    assert origin == "constraintlab.toml [gate]" and passed(checks)
    assert [c.line for c in checks] == ["PASS  contradictions <= 5  (value: 5)"]
    checks, origin = check(METRICS, fail_on=["exact_duplicates == 0", "contradictions <= 5"])
    assert origin == "--fail-on" and not passed(checks)
    assert [c.passed for c in checks] == [False, True]
    with pytest.raises(ConfigError, match="unknown gate metric"):
        check(METRICS, fail_on=["nope == 1"])


def test_text_summary_lists_each_check_and_the_total() -> None:
    checks = evaluate([Condition.parse("exact_duplicates == 0"),
                       Condition.parse("contradictions <= 5")], METRICS)
    assert text_summary(checks, "--fail-on").splitlines() == [
        "gate (--fail-on):",
        "  FAIL  exact_duplicates == 0  (value: 2)",
        "  PASS  contradictions <= 5  (value: 5)",
        "gate FAILED: 1 of 2 conditions hold",
    ]
    assert text_summary(checks[1:], "x").splitlines()[-1] == "gate passed: 1 of 1 conditions hold"
