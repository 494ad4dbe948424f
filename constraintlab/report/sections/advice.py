"""``advice``: what to do next (one sentence each), and the records it names."""

from __future__ import annotations

import textwrap

import pandas as pd

from constraintlab._text import visible
from constraintlab.report._format import _clip, _e, _num, _text, record_links
from constraintlab.report.sections import Part, Section, View


def advice(report) -> list[str]:
    """What to do next, from the numbers (one sentence each, most pressing first;
    :mod:`constraintlab.analysis.advice`)."""
    return list((report.data.get("advice") or {}).get("items", []))


def _items(v: View) -> list[str]:
    return list((v.data.get("advice") or {}).get("items", []))


def _box(v: View) -> list[str]:
    """The advice box right under the verdict, record ids linked to "Records named above"."""
    items = [record_links(a)[0] for a in _items(v)]
    return ["<div class='next'><h2>What to do next</h2><ol>"
            + "".join(f"<li>{text}</li>" for text in items) + "</ol></div>"]


def _records(v: View) -> list[str]:
    """"Records named above": one row per record the advice names, the target of its links
    (``#record-<id>``), with its line, texts and flags."""
    examples: pd.DataFrame = v.examples
    named = list(dict.fromkeys(i for a in _items(v) for i in record_links(a)[1]))
    ids = [i for i in named if i in examples.index]
    if not ids:
        return []
    flags = (("is_contradiction", "contradiction"), ("is_exact_duplicate", "exact duplicate"),
             ("is_near_duplicate", "near duplicate"), ("is_duplicate_keeper", "keeper"),
             ("is_suspect", "suspect"), ("is_pressure_zone", "pressure zone"))
    out = ["<h2>Records named above</h2>",
           "<p class='muted'>Every record the advice names (record = 0-based index in the "
           "file; line = its line). The full table: examples.csv.</p>",
           "<table><tr><th>record</th><th>line</th><th>zone</th><th>flags</th><th>input</th>"
           "<th>target</th></tr>"]
    for i in ids:
        row = examples.loc[i]
        marks = [word for col, word in flags if col in examples.columns and bool(row[col])]
        line = row["line"] if "line" in examples.columns else ""
        zone = row["zone"] if "zone" in examples.columns else ""
        out.append(f"<tr id='record-{i}'><td class=num>{i}</td><td class=num>{_num(line)}</td>"
                   f"<td class=num>{_num(zone)}</td><td>{_e(', '.join(marks))}</td>"
                   f"<td class=text>{_clip(_text(examples, i, 'input'), 200)}</td>"
                   f"<td class=text>{_clip(_text(examples, i, 'target'), 200)}</td></tr>")
    out.append("</table>")
    return out


def _action_lines(v: View) -> list[str]:
    """``What to do next:`` and the advice, numbered, wrapped."""
    items = _items(v)
    if not items:
        return []
    lines = ["What to do next:"]
    for i, item in enumerate(items, 1):
        lines += textwrap.wrap(visible(item), width=v.width, initial_indent=f"  {i}. ",
                               subsequent_indent="     ")
    return lines


#: The contract of ``report.json["advice"]`` (JSON Schema), assembled into the report's
#: by :func:`constraintlab.report.schema.report_schema`.
SCHEMA: dict = {
    "type": "object",
    "required": ["items"],
    "properties": {"items": {"type": "array", "items": {"type": "string"}}},
    "description": "what to do next, most pressing first (constraintlab.analysis.advice)",
}


SECTION = Section(
    "advice", schema=SCHEMA,
    parts=(Part("top", 10, _box), Part("end", 10, _records), Part("actions", 10, _action_lines)),
    methods={"advice": advice})
