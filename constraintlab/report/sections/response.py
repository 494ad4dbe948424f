"""``response``: what training on one example does to the others (first order)."""

from __future__ import annotations

from constraintlab.report._format import _e, _num, _text
from constraintlab.report.sections import Part, Section, View


def _html(v: View, limit: int = 5) -> list[str]:
    resp, examples = v.data["response"], v.examples
    out = ["<h2>What training on one example does to the others</h2>",
           f"<p class='muted'>First order: {_e(resp['sign_convention'])}; "
           f"{_e(resp['units'])}.</p>",
           f"<p>{resp['harmful_examples']} examples raise the others' summed loss when trained "
           f"on; {resp['helpful_examples']} lower it.</p>",
           "<table><tr><th></th><th>record</th><th>net effect on the others</th>"
           "<th>input</th></tr>"]
    for title, rows in (("most harmful", resp["most_harmful"]),
                        ("most helpful", resp["most_helpful"])):
        for row in rows[:limit]:
            out.append(f"<tr><td>{title}</td><td class=num>{row['index']}</td>"
                       f"<td class=num>{_num(row['net_effect'])}</td>"
                       f"<td>{_e(_text(examples, row['index'], 'input', 160))}</td></tr>")
    out.append("</table>")
    ids, matrix = resp["zone_ids"][:8], resp["zone_matrix"]
    if len(ids) > 1:
        out.append("<p>Zone by zone (row: the zone trained on; column: the zone whose loss "
                   "changes; first eight zones):</p><table><tr><th></th>"
                   + "".join(f"<th>zone {z}</th>" for z in ids) + "</tr>")
        for i, z in enumerate(ids):
            out.append(f"<tr><th>zone {z}</th>" + "".join(
                f"<td class=num>{_num(matrix[i][j], 3)}</td>" for j in range(len(ids)))
                + "</tr>")
        out.append("</table>")
    return out


#: The contract of ``report.json["response"]`` (JSON Schema), assembled into the report's
#: by :func:`constraintlab.report.schema.report_schema`.
SCHEMA: dict = {
    "type": "object",
    "description": "First-order response map: loss changes per unit SGD step (negative = helps).",
    "required": [
        "sign_convention",
        "units",
        "total_effect",
        "helpful_examples",
        "harmful_examples",
        "most_helpful",
        "most_harmful",
        "zone_ids",
        "zone_matrix",
    ],
    "properties": {
        "sign_convention": {"type": "string"},
        "units": {"type": "string"},
        "total_effect": {"type": "number"},
        "helpful_examples": {"type": "integer", "minimum": 0},
        "harmful_examples": {"type": "integer", "minimum": 0},
        "most_helpful": {
            "type": "array",
            "items": {"type": "object", "required": ["index", "net_effect"]},
        },
        "most_harmful": {
            "type": "array",
            "items": {"type": "object", "required": ["index", "net_effect"]},
        },
        "zone_ids": {"type": "array", "items": {"type": "integer"}},
        "zone_matrix": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
    },
}


SECTION = Section("response", schema=SCHEMA, parts=(Part("body", 120, _html),))
