"""The terminal summary of a report: plain lines, every text from the data through ``visible``.

This module is the summary's frame (the header, the "To fix" line, where the report is); each
section's lines are declared beside the section, in :mod:`constraintlab.report.sections`.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from constraintlab._text import visible
from constraintlab.report.sections import View, render, sections

if TYPE_CHECKING:
    from constraintlab.report.report import Report

__all__ = ["fix_line", "summary_lines"]


def fix_line(metrics: Mapping[str, Any]) -> str:
    """One plain line of what to fix, from the report's numbers: ``To fix: 7 contradiction
    pairs, 4 duplicate rows, 2 likely wrong targets`` (each section's :class:`Fix` counts; 0
    left out, a null count "not measured"; unusable records skipped on reading come last)."""
    fixes = sorted((f for s in sections() for f in s.fixes), key=lambda f: f.order)
    found, unmeasured = [], []
    for fix in fixes:
        value = metrics.get(fix.metric)
        if value is None:
            unmeasured.append(fix.many)
        elif value:
            found.append(f"{value} {fix.one if value == 1 else fix.many}")
    bad = metrics.get("invalid_records") or 0
    if bad:
        found.append(f"{bad} unusable record{'' if bad == 1 else 's'} (skipped)")
    text = ("To fix: " + ", ".join(found)) if found else (
        "Nothing to fix found: no contradiction pairs, duplicate rows or likely wrong targets")
    if unmeasured:
        text += f"; {', '.join(unmeasured)}: not measured"
    return text


def summary_lines(report: Report, out: str | Path | None = None, *,
                  verbose: bool = False) -> list[str]:
    """The terminal summary: what to fix (one line), what to do next (the advice, with record
    ids), the numbers, where the report is (``out``, default ``report.path``); the verdict
    sentence with ``verbose`` (``-v``)."""
    m, d = report.metrics(), report.data
    view = View(data=d, examples=report.examples, metrics=m)
    model = d["model"]
    name = model["name"] + (f" v{model['version']}" if model.get("version") else "")
    read_cfg = d["dataset"].get("read_config") or {}
    subset = (f", the first {read_cfg['limit']} records" if read_cfg.get("limit") else
              f", {read_cfg['sample']} records drawn (seed {read_cfg.get('sample_seed', 0)})"
              if read_cfg.get("sample") else "")
    lines = [f"constraintlab analyze {visible(d['dataset']['source'])}  (model {visible(name)}, "
             f"k = {d['projection']['k']}, {m['examples']} examples{subset}"
             + (f", {m['invalid_records']} invalid records skipped"
                if m["invalid_records"] else "") + ")",
             "", fix_line(m), *render("head", view), "", *render("actions", view), "",
             *render("numbers", view), "", *render("tail", view)]
    if verbose:
        lines += [*textwrap.wrap(visible(report.verdict()), width=100), ""]
    if model.get("note"):
        lines.append(f"note: {visible(model['note'])}")
    out = Path(out if out is not None else report.path)
    lines.append(f"report: {visible(out / 'report.html')}  (also report.json, examples.csv)")
    return lines
