"""Declarative pass/fail conditions on a report's metrics (the CI gate).

A condition is ``METRIC OP VALUE`` with ``OP`` one of ``== != < <= > >=`` and ``VALUE`` a
number (``inf`` and ``-inf`` included), ``true``/``false``, or a string (quoted, or a bare
word): ``exact_duplicates == 0``, ``interference_excess < 1.15``,
``consistency != "inconsistent"``.
Each condition is a requirement: the gate passes when every condition holds. A metric that is
null in report.json (not measured) fails every numeric condition.

Conditions come from ``--fail-on`` on the command line, or from a TOML file::

    # pyproject.toml                      # or constraintlab.toml
    [tool.constraintlab.gate]             [gate]
    require = [                           require = ["contradictions <= 5"]
      "exact_duplicates == 0",
      "interference_excess < 1.15",
    ]

:func:`check` loads the conditions and evaluates them on a report (a :class:`Report`, its
directory, or a metrics mapping); :func:`text_summary` and :func:`markdown_summary` format the
result for a terminal and for a CI job summary.
"""

from __future__ import annotations

import math
import operator
import re
import stat
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from constraintlab._text import markdown_code, markdown_escape, visible
from constraintlab._text import type_name as _type_name
from constraintlab.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<=": operator.le, ">=": operator.ge,
    "<": operator.lt, ">": operator.gt,
}
# Matched against the stripped text (no trailing-whitespace backtracking: linear time).
_CONDITION = re.compile(r"([A-Za-z_][A-Za-z0-9_.]*)\s*(==|!=|<=|>=|<|>)\s*([^<>=!\s].*)",
                        re.ASCII)
#: Largest gate config file read (bytes); pyproject.toml files are far smaller.
MAX_CONFIG_BYTES = 1 << 20
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$", re.ASCII)


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
        if not isinstance(text, str):
            raise ConfigError(f"a gate condition is a string METRIC OP VALUE, not "
                              f"{type(text).__name__} {text!r}")
        match = _CONDITION.fullmatch(text.strip())
        if not match:
            raise ConfigError(f"cannot read gate condition {_clip(text)}: write METRIC OP VALUE, "
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
    if _NUMBER.match(raw) or raw.lower() in ("inf", "+inf", "-inf"):
        return float(raw)
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        return raw[1:-1]
    if re.match(r"^[A-Za-z_][A-Za-z0-9_-]*$", raw):
        return raw
    raise ConfigError(f"cannot read value {_clip(raw)}: use a number, true/false or a quoted "
                      "string")


def _clip(text: str, limit: int = 200) -> str:
    """``repr(text)``, cut to about ``limit`` characters (a hostile condition can be long)."""
    shown = repr(text)
    return shown if len(shown) <= limit else shown[:limit] + f"... ({len(text):,} characters)"


def _show(value: Any) -> str:
    if value is None:
        return "not measured"
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
        if actual is None or (isinstance(actual, float) and math.isnan(actual)):
            # null in report.json (nan in Report.metrics()): not measured, fails every
            # condition, numeric, boolean or string
            checks.append(Check(cond, None, False))
            continue
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
    ``constraintlab.toml`` then ``pyproject.toml`` in ``search_dir``. A config file is read
    only when it is a regular file of at most :data:`MAX_CONFIG_BYTES`; a file that is not
    valid TOML (also: nested deeper than Python's recursion limit, an integer beyond Python's
    digit limit), a gate table or ``require`` of the wrong type, or an unknown key is a
    :class:`ConfigError` naming the file.

    Returns
    -------
    (conditions, origin)
        ``origin`` names the source, e.g. ``pyproject.toml [tool.constraintlab.gate]``.
    """
    if fail_on:
        return [Condition.parse(c) for c in fail_on], "--fail-on"
    if config is not None:
        path = Path(config)
        found = _from_toml(path, must_exist=True)
        if found is None:
            raise ConfigError(f"{path} has no gate table: add [tool.constraintlab.gate] "
                              "(pyproject.toml) or [gate] (constraintlab.toml) with "
                              "require = [...]")
        return found
    for name in ("constraintlab.toml", "pyproject.toml"):
        path = Path(search_dir) / name
        if (found := _from_toml(path, must_exist=False)) is not None:
            return found
    raise ConfigError("no gate conditions: pass --fail-on 'METRIC OP VALUE' (repeatable) or "
                      "add [tool.constraintlab.gate] require = [...] to pyproject.toml")


def _read_toml(path: Path, *, must_exist: bool) -> dict | None:
    """The parsed TOML document at ``path``; None when it does not exist and need not."""
    try:
        info = path.stat()
    except FileNotFoundError:
        if must_exist:
            raise ConfigError(f"gate config {path} does not exist") from None
        return None
    except OSError as err:
        raise ConfigError(f"gate config {path}: cannot read it: {err.strerror or err}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"gate config {path} is not a regular file (a directory, FIFO or "
                          "device): give a TOML file")
    if info.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"gate config {path} has {info.st_size:,} bytes; a gate config may "
                          f"have at most {MAX_CONFIG_BYTES:,}")
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as err:
        raise ConfigError(f"gate config {path}: cannot read it: {err.strerror or err}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"gate config {path} has more than {MAX_CONFIG_BYTES:,} bytes")
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: not UTF-8 text ({err.reason} at byte "
                          f"{err.start})") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML for a gate config: nested too deeply") \
            from None
    except ValueError as err:     # TOMLDecodeError, and ints beyond the digit limit
        raise ConfigError(f"{path}: not valid TOML: {err}") from None


def _lookup(doc: dict, keys: Sequence[str], path: Path) -> Any:
    """``doc[k0][k1]...``; None when a key is absent; ConfigError when a level is no table."""
    node: Any = doc
    for depth, key in enumerate(keys):
        if not isinstance(node, dict):
            where = ".".join(keys[:depth])
            raise ConfigError(f"{path}: {where} must be a table ([{where}]), not "
                              f"{_type_name(node)}")
        if key not in node:
            return None
        node = node[key]
    return node


def _from_toml(path: Path, *, must_exist: bool) -> tuple[list[Condition], str] | None:
    doc = _read_toml(path, must_exist=must_exist)
    if doc is None:
        return None
    tool_keys = ("tool", "constraintlab", "gate")
    if path.name != "pyproject.toml" and "gate" in doc:
        table, where = doc["gate"], "[gate]"
    else:
        table, where = _lookup(doc, tool_keys, path), "[tool.constraintlab.gate]"
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: {where[1:-1]} must be a table ({where} with require = "
                          f"[\"METRIC OP VALUE\", ...]), not {_type_name(table)}")
    unknown = set(table) - {"require"}
    if unknown:
        raise ConfigError(f"{path} {where}: unknown key(s) {', '.join(sorted(map(repr, unknown)))}"
                          "; the table takes require = [\"METRIC OP VALUE\", ...]")
    require = table.get("require", [])
    if not isinstance(require, list) or not all(isinstance(c, str) for c in require) \
            or not require:
        found = (_type_name(require) if not isinstance(require, list) else "an empty array"
                 if not require else "an array holding " + ", ".join(sorted(
                     {_type_name(c) for c in require if not isinstance(c, str)})))
        raise ConfigError(f"{path} {where}: require must be a non-empty array of strings "
                          f"(\"METRIC OP VALUE\"), not {found}")
    try:
        return [Condition.parse(c) for c in require], f"{path.name} {where}"
    except ConfigError as err:
        raise ConfigError(f"{path} {where}: {err}") from None


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
        report = load_report(report)
    metrics = report if isinstance(report, Mapping) else report.metrics()
    return evaluate(conditions, metrics), origin


def load_report(path: str | Path) -> Any:
    """:meth:`Report.load`: a damaged report directory is one :class:`ConstraintlabError`
    ``path: what is wrong`` (CLI exit 2), never a traceback."""
    from constraintlab.report.report import Report

    return Report.load(path)


def passed(checks: Sequence[Check]) -> bool:
    """True when every condition holds."""
    return all(c.passed for c in checks)


def text_summary(checks: Sequence[Check], origin: str) -> str:
    """The terminal summary: where the conditions came from, PASS/FAIL per condition, total."""
    failed = sum(not c.passed for c in checks)
    return "\n".join([f"gate ({visible(origin)}):", *(f"  {visible(c.line)}" for c in checks),
                      f"gate {'passed' if not failed else 'FAILED'}: {len(checks) - failed} of "
                      f"{len(checks)} conditions hold"])


def markdown_summary(checks: Sequence[Check], *, title: str, origin: str) -> str:
    """A Markdown block for a CI job summary or a pull-request comment.

    Every text in it that comes from the data, a path or a config (``title``, ``origin``, the
    conditions, string values) is escaped with :func:`constraintlab._text.markdown_escape`:
    it renders as the same text on one line and cannot open a heading, a link, an image, an
    HTML tag or a table cell.
    """
    failed = sum(not c.passed for c in checks)
    esc = markdown_escape
    head = (f"### constraintlab gate: {'passed' if not failed else 'FAILED'} — {esc(title)}\n\n"
            f"{len(checks) - failed} of {len(checks)} conditions hold (from {esc(origin)})."
            "\n\n| | condition | value |\n|---|---|---|\n")
    rows = "".join(f"| {'✅' if c.passed else '❌'} | {markdown_code(c.condition.text)} | "
                   f"{esc(_show(c.actual))} |\n" for c in checks)
    return head + rows
