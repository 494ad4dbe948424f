"""Declarative pass/fail conditions on a report's metrics (the CI gate).

A condition is ``METRIC OP VALUE`` with ``OP`` one of ``== != < <= > >=`` and ``VALUE`` a
number, ``true``/``false``, or a string (quoted, or a bare word): ``exact_duplicates == 0``,
``conflict_density < 0.02``, ``verdict != "underdetermined"``. Each condition is a requirement:
the gate passes when every condition holds.

Conditions come from ``--fail-on`` on the command line, or from a TOML file::

    # pyproject.toml                      # or constraintlab.toml
    [tool.constraintlab.gate]             [gate]
    require = [                           require = ["contradictions <= 5"]
      "exact_duplicates == 0",
      "conflict_density < 0.02",
    ]

:func:`check` loads the conditions and evaluates them on a report (a :class:`Report`, its
directory, or a metrics mapping); :func:`text_summary` and :func:`markdown_summary` format the
result for a terminal and for a CI job summary.
"""

from __future__ import annotations

import math
import operator
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from constraintlab.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<=": operator.le, ">=": operator.ge,
    "<": operator.lt, ">": operator.gt,
}
_CONDITION = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(==|!=|<=|>=|<|>)\s*([^<>=!\s].*?)\s*$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class Condition:
    """One parsed requirement."""

    metric: str
    op: str
    value: float | bool | str
    text: str

    @classmethod
    def parse(cls, text: str) -> Condition:
        """Parse ``METRIC OP VALUE``; raises :class:`ConfigError` with the reason."""
        match = _CONDITION.match(text)
        if not match:
            raise ConfigError(f"cannot read gate condition {text!r}: write METRIC OP VALUE, "
                              "e.g. 'contradictions <= 5' (OP is one of == != < <= > >=)")
        metric, op, raw = match.groups()
        return cls(metric, op, _value(raw), f"{metric} {op} {raw}")


@dataclass(frozen=True)
class Check:
    """A condition evaluated on one report."""

    condition: Condition
    actual: Any
    passed: bool

    @property
    def line(self) -> str:
        """``PASS  contradictions <= 5  (value: 3)``."""
        return (f"{'PASS' if self.passed else 'FAIL'}  {self.condition.text}  "
                f"(value: {_show(self.actual)})")


def _value(raw: str) -> float | bool | str:
    if _NUMBER.match(raw):
        return float(raw)
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        return raw[1:-1]
    if re.match(r"^[A-Za-z_][A-Za-z0-9_-]*$", raw):
        return raw
    raise ConfigError(f"cannot read value {raw!r}: use a number, true/false or a quoted string")


def _show(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value).lower() if isinstance(value, bool) else str(value)


def check_names(conditions: Sequence[Condition], known: Sequence[str]) -> None:
    """Raise :class:`ConfigError` if a condition names a metric not in ``known``."""
    for cond in conditions:
        if cond.metric not in known:
            raise ConfigError(f"unknown gate metric {cond.metric!r}; known metrics: "
                              + ", ".join(sorted(known)))


def evaluate(conditions: Sequence[Condition], metrics: Mapping[str, Any]) -> list[Check]:
    """Evaluate every condition against ``metrics`` (a flat name -> value mapping).

    Raises
    ------
    ConfigError
        For an unknown metric (the message lists the known ones) or a comparison that makes no
        sense (``verdict < 3``).
    """
    check_names(conditions, list(metrics))
    checks = []
    for cond in conditions:
        actual = metrics[cond.metric]
        numeric = isinstance(actual, (int, float)) and not isinstance(actual, bool)
        if numeric and isinstance(cond.value, float):
            passed = (not math.isnan(actual)) and OPERATORS[cond.op](float(actual), cond.value)
        elif type(actual) is type(cond.value) and (cond.op in ("==", "!=") or numeric):
            passed = OPERATORS[cond.op](actual, cond.value)
        else:
            raise ConfigError(f"gate condition {cond.text!r} compares {cond.metric} "
                              f"(value {_show(actual)}) with {_show(cond.value)}: types differ "
                              "or the operator does not apply")
        checks.append(Check(cond, actual, bool(passed)))
    return checks


def load_conditions(*, fail_on: Sequence[str] = (), config: str | Path | None = None,
                    search_dir: str | Path = ".") -> tuple[list[Condition], str]:
    """Collect conditions and say where they came from.

    ``fail_on`` (command line) wins when given; else ``config`` (a TOML file); else
    ``constraintlab.toml`` then ``pyproject.toml`` in ``search_dir``.

    Returns
    -------
    (conditions, origin)
        ``origin`` names the source, e.g. ``pyproject.toml [tool.constraintlab.gate]``.
    """
    if fail_on:
        return [Condition.parse(c) for c in fail_on], "--fail-on"
    if config is not None:
        path = Path(config)
        if not path.is_file():
            raise ConfigError(f"gate config {path} does not exist")
        found = _from_toml(path)
        if found is None:
            raise ConfigError(f"{path} has no gate table: add [tool.constraintlab.gate] "
                              "(pyproject.toml) or [gate] (constraintlab.toml) with "
                              "require = [...]")
        return found
    for name in ("constraintlab.toml", "pyproject.toml"):
        path = Path(search_dir) / name
        if path.is_file() and (found := _from_toml(path)) is not None:
            return found
    raise ConfigError("no gate conditions: pass --fail-on 'METRIC OP VALUE' (repeatable) or "
                      "add [tool.constraintlab.gate] require = [...] to pyproject.toml")


def _from_toml(path: Path) -> tuple[list[Condition], str] | None:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    if path.name == "pyproject.toml":
        table, where = doc.get("tool", {}).get("constraintlab", {}).get("gate"), \
            "[tool.constraintlab.gate]"
    else:
        table, where = doc.get("gate", doc.get("tool", {}).get("constraintlab", {}).get("gate")), \
            "[gate]"
    if table is None:
        return None
    unknown = set(table) - {"require"}
    if unknown:
        raise ConfigError(f"{path} {where}: unknown key(s) {', '.join(sorted(unknown))}; "
                          "the table takes require = [\"METRIC OP VALUE\", ...]")
    require = table.get("require", [])
    if not isinstance(require, list) or not all(isinstance(c, str) for c in require) \
            or not require:
        raise ConfigError(f"{path} {where}: require must be a non-empty list of strings")
    return [Condition.parse(c) for c in require], f"{path.name} {where}"


def check(report: Any, *, fail_on: Sequence[str] = (), config: str | Path | None = None,
          search_dir: str | Path = ".") -> tuple[list[Check], str]:
    """Load the declared conditions (:func:`load_conditions`) and evaluate them on ``report``.

    Parameters
    ----------
    report : Report, path or mapping
        A :class:`constraintlab.report.report.Report` (its :meth:`~Report.metrics`), a report
        directory or its ``report.json`` (loaded), or a flat ``{metric: value}`` mapping.
    fail_on, config, search_dir
        Where the conditions come from (see :func:`load_conditions`).

    Returns
    -------
    (checks, origin)
        One :class:`Check` per condition, in order, and where the conditions came from.
    """
    conditions, origin = load_conditions(fail_on=fail_on, config=config, search_dir=search_dir)
    if isinstance(report, str | Path):
        from constraintlab.report.report import Report

        report = Report.load(report)
    metrics = report if isinstance(report, Mapping) else report.metrics()
    return evaluate(conditions, metrics), origin


def passed(checks: Sequence[Check]) -> bool:
    """True when every condition holds."""
    return all(c.passed for c in checks)


def text_summary(checks: Sequence[Check], origin: str) -> str:
    """The terminal summary: where the conditions came from, PASS/FAIL per condition, total."""
    failed = sum(not c.passed for c in checks)
    return "\n".join([f"gate ({origin}):", *(f"  {c.line}" for c in checks),
                      f"gate {'passed' if not failed else 'FAILED'}: {len(checks) - failed} of "
                      f"{len(checks)} conditions hold"])


def markdown_summary(checks: Sequence[Check], *, title: str, origin: str) -> str:
    """A Markdown block for a CI job summary or a pull-request comment."""
    failed = sum(not c.passed for c in checks)
    head = (f"### constraintlab gate: {'passed' if not failed else 'FAILED'} — {title}\n\n"
            f"{len(checks) - failed} of {len(checks)} conditions hold (from {origin}).\n\n"
            "| | condition | value |\n|---|---|---|\n")
    rows = "".join(f"| {'✅' if c.passed else '❌'} | `{c.condition.text}` | {_show(c.actual)} |\n"
                   for c in checks)
    return head + rows
