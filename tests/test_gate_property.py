"""Property-based tests of the gate parser (hypothesis): conditions ``METRIC OP VALUE`` and
TOML config files, generated hostile (any text, any TOML shape, any bytes). Asserted: no
exception other than ConfigError, the CLI's exit code is 0, 1 or 2 with no traceback, and what
does parse means what it says (compared with a reference written here, not with the parser)."""

from __future__ import annotations

import json
import math
import shutil
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from constraintlab.cli.main import main
from constraintlab.errors import ConfigError
from constraintlab.gate import Condition, evaluate, load_conditions

FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
REFERENCE_OPS = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b,
                 "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
                 ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}
IDENT = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True)
OP = st.sampled_from(sorted(REFERENCE_OPS))
SPACE = st.sampled_from(["", " ", "  ", "\t"])
# near-misses of the grammar: operators, quotes, numbers, whitespace, controls, non-ASCII
GRAMMAR_TEXT = st.text(alphabet=st.sampled_from(list("<>=!'\" \t\n\r.+-eE0123456789_ab\x1b"
                                                     "\u00a0\u2028٣é")), max_size=40)


@FAST
@given(st.one_of(st.text(max_size=200), GRAMMAR_TEXT,
                 st.builds(lambda m, s, o, v: f"{m}{s}{o}{s}{v}", IDENT, SPACE, OP,
                           GRAMMAR_TEXT)))
def test_any_text_parses_or_is_a_config_error(text: str) -> None:
    try:
        cond = Condition.parse(text)
    except ConfigError as err:
        assert str(err)
        return
    # what parses is METRIC OP VALUE, and its canonical text parses to the same condition
    assert cond.op in REFERENCE_OPS and cond.metric.replace(".", "_").isidentifier()
    again = Condition.parse(cond.text)
    assert (again.metric, again.op, again.value) == (cond.metric, cond.op, cond.value) or (
        isinstance(cond.value, float) and math.isnan(cond.value))


@FAST
@given(IDENT, SPACE, OP, st.floats(allow_nan=False, width=64), st.floats(allow_nan=False))
def test_numeric_condition_means_what_it_says(metric, space, op, value, actual) -> None:
    cond = Condition.parse(f"{metric}{space}{op}{space}{value!r}")
    assert (cond.metric, cond.op, cond.value) == (metric, op, float(repr(value)))
    (check,) = evaluate([cond], {metric: actual})
    assert check.passed is REFERENCE_OPS[op](actual, value)


@FAST
@given(IDENT, st.sampled_from(["==", "!="]),
       st.text(alphabet=string.ascii_letters + string.digits + " _-<>=!|`#\x1b", max_size=20),
       st.sampled_from(["'", '"']), st.text(max_size=10))
def test_quoted_string_condition_compares_strings(metric, op, value, quote, actual) -> None:
    if quote in value:
        return
    cond = Condition.parse(f"{metric} {op} {quote}{value}{quote}")
    assert cond.value == value
    (check,) = evaluate([cond], {metric: actual})
    assert check.passed is REFERENCE_OPS[op](actual, value)


@FAST
@given(IDENT, OP, st.one_of(st.booleans(), st.text(max_size=5), st.none(), st.lists(st.none())),
       st.floats())
def test_type_mismatches_are_config_errors_or_fail(metric, op, actual, value) -> None:
    cond = Condition.parse(f"{metric} {op} {value!r}") if not math.isnan(value) else None
    if cond is None:
        return
    try:
        (check,) = evaluate([cond], {metric: actual})
    except ConfigError as err:
        assert "types differ or the operator does not apply" in str(err)
        return
    assert actual is None and check.passed is False     # null: not measured, fails


# -- TOML config files ---------------------------------------------------------------------------
SCALAR = st.one_of(st.integers(-10**30, 10**30), st.booleans(), st.floats(allow_nan=False),
                   st.text(st.characters(blacklist_categories=("Cs",)), max_size=15),
                   st.sampled_from(["examples > 0", "determinacy != 'x'", "rank >= 1",
                                    "nonsense == 1", "examples >"]))
TOML_VALUE = st.recursive(SCALAR, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.sampled_from(["require", "gate", "tool", "constraintlab", "x"]),
                    inner, max_size=3)), max_leaves=12)


def toml_value(value) -> str:
    """A TOML inline value (strings as TOML basic strings: JSON escapes are TOML escapes)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "inf" if value == math.inf else "-inf" if value == -math.inf else repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(map(toml_value, value)) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


DOC = st.dictionaries(st.sampled_from(["gate", "tool", "project"]), TOML_VALUE, max_size=2)


def conditions_or_error(path: Path) -> list[Condition] | None:
    try:
        return load_conditions(config=path)[0]
    except ConfigError as err:
        assert str(err)
        return None


@FAST
@given(DOC, st.sampled_from(["constraintlab.toml", "pyproject.toml"]))
def test_any_toml_shape_loads_or_is_a_config_error(tmp_path, doc, name) -> None:
    path = tmp_path / name
    path.write_text("".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in doc.items()),
                    encoding="utf-8")
    conds = conditions_or_error(path)
    # reference: where the conditions must be, and what makes them acceptable
    table = doc.get("gate") if name != "pyproject.toml" and "gate" in doc else (
        (doc.get("tool") or {}).get("constraintlab", {}) if isinstance(doc.get("tool"), dict)
        and isinstance(doc["tool"].get("constraintlab"), dict) else {}).get("gate")
    ok = (isinstance(table, dict) and set(table) == {"require"}
          and isinstance(table["require"], list) and table["require"]
          and all(isinstance(c, str) for c in table["require"]))
    if ok:
        try:
            expected = [Condition.parse(c) for c in table["require"]]
        except ConfigError:
            ok = False
    if ok:
        assert conds == expected
    else:
        assert conds is None


@FAST
@given(st.binary(max_size=300))
def test_any_bytes_as_a_config_file(tmp_path, raw) -> None:
    path = tmp_path / "constraintlab.toml"
    path.write_bytes(raw)
    conditions_or_error(path)


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory, gate_report) -> Path:
    out = tmp_path_factory.mktemp("gate_prop") / "report"
    shutil.copytree(gate_report, out)
    return out


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.one_of(DOC.map(lambda d: "".join(f"{json.dumps(k)} = {toml_value(v)}\n"
                                           for k, v in d.items())),
                 st.text(max_size=100)),
       st.lists(st.one_of(GRAMMAR_TEXT, st.sampled_from(["examples > 0", "rank < 0"])),
                max_size=2))
def test_cli_exit_codes_are_documented(tmp_path, capsys, report_dir, text, fail_on) -> None:
    config = tmp_path / "constraintlab.toml"
    config.write_text(text, encoding="utf-8", errors="surrogatepass")
    args = ["gate", str(report_dir), "--config", str(config), "--quiet"]
    for cond in fail_on:
        if not cond.startswith("-"):
            args += ["--fail-on", cond]
    code = main(args)
    out = capsys.readouterr()
    assert code in (0, 1, 2) and "Traceback" not in out.err
    assert (code == 2) == bool(out.err.startswith("constraintlab gate: error: "))
    assert "\x1b" not in out.out + out.err
