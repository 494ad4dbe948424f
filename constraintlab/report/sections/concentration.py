"""``concentration``: do a few examples carry the update?"""

from __future__ import annotations

import pandas as pd

from constraintlab.report._format import _e, _num, _text, number_line
from constraintlab.report.sections import Part, Section, View


def concentration(report) -> pd.DataFrame:
    """Every example by its share of the total squared gradient norm, largest first (index =
    example index): ``energy_share``, ``carries_half_energy`` (among the fewest examples that
    hold half of it), ``grad_norm``, ``input``, ``target``."""
    report._section("concentration")
    cols = ["energy_share", "carries_half_energy", "grad_norm", "input", "target"]
    t = report.examples
    return t.sort_values("energy_share", ascending=False, kind="stable")[
        [c for c in cols if c in t.columns]]


def _html(v: View) -> list[str]:
    c = v.data.get("concentration")
    out = ["<h2>Concentration: do a few examples carry the update?</h2>"]
    if not c:
        return [*out, "<p>Not measured: the feature store has no gradient norms.</p>"]
    out += [f"<p><b>{c['half_energy_examples']}</b> of {c['n']} examples "
            f"({c['half_energy_share']:.1%}) hold half the total squared gradient norm "
            f"(0.5 would be an even pull); effective examples "
            f"{c['effective_examples']:.1f} ({c['effective_share']:.1%} of N).</p>",
            f"<p class='muted'>{_e(c['formula'])}. Every example: columns energy_share and "
            "carries_half_energy of examples.csv, report.concentration().</p>",
            "<table><tr><th>record</th><th>share</th><th>gradient norm</th><th>input</th>"
            "</tr>"]
    for row in c["largest"]:
        out.append(f"<tr><td class=num>{row['id']}</td><td class=num>{row['share']:.1%}</td>"
                   f"<td class=num>{_num(row['grad_norm'])}</td>"
                   f"<td>{_e(_text(v.examples, row['id'], 'input', 160))}</td></tr>")
    out.append("</table>")
    return out


def _line(v: View) -> list[str]:
    c = v.data.get("concentration")
    if not c:
        return []
    return [number_line("concentration", f"{c['half_energy_share']:.1%}",
                        f"of the examples hold half the squared gradient norm (effective "
                        f"examples {c['effective_examples']:.0f} of {c['n']})")]


#: The contract of ``report.json["concentration"]`` (JSON Schema), assembled into the report's
#: by :func:`constraintlab.report.schema.report_schema`.
SCHEMA: dict = {
    "type": ["object", "null"],
    "description": (
        "Do a few examples carry the update? How the examples' squared gradient norms (energy e_i "
        "= grad_norm_i^2) share the total; null when the store has no gradient norms or every "
        "gradient is zero."
    ),
    "required": [
        "n",
        "total_energy",
        "half_energy_examples",
        "half_energy_share",
        "effective_examples",
        "effective_share",
        "largest",
        "formula",
    ],
    "properties": {
        "n": {"type": "integer", "minimum": 1},
        "total_energy": {"type": "number", "exclusiveMinimum": 0},
        "half_energy_examples": {"type": "integer", "minimum": 1},
        "half_energy_share": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "effective_examples": {"type": "number", "minimum": 1},
        "effective_share": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "largest": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "grad_norm", "share"],
                "properties": {
                    "id": {"type": "integer", "minimum": 0},
                    "grad_norm": {"type": "number", "minimum": 0},
                    "share": {"type": "number", "minimum": 0, "maximum": 1},
                },
            },
        },
        "formula": {"type": "string"},
    },
}


SECTION = Section(
    "concentration", schema=SCHEMA,
    parts=(Part("body", 125, _html), Part("numbers", 95, _line)),
    methods={"concentration": concentration})
