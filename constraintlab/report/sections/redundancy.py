"""``redundancy``: duplicate sets (exact and near)."""

from __future__ import annotations

from constraintlab.report._format import _e, _text, number_line
from constraintlab.report.sections import Fix, Part, Section, View


def _kpi(v: View) -> list[str]:
    r = v.data["redundancy"]
    return [f"<div>duplicates<b>{r['duplicates']}</b>"
            f"{r['exact_duplicates']} exact, {r['near_duplicates']} near</div>"]


def _html(v: View, limit: int = 10) -> list[str]:
    r, examples = v.data["redundancy"], v.examples
    out = ["<h2>Duplicate sets</h2>",
           f"<p>{r['exact_duplicates']} exact and {r['near_duplicates']} near duplicates "
           f"(records beyond one keeper per set); redundancy ratio "
           f"{r['redundancy_ratio']:.3f}. Flagged, never deleted."
           + (f" {r['near_duplicate_pairs_in_families']} near-duplicate links inside variant "
              "families are intended variation and not counted."
              if r.get("near_duplicate_pairs_in_families") else "") + "</p>"]
    for dup in r["sets"][:limit]:
        members = dup["members"]
        out.append(f"<h3>{_e(dup['kind'])} set of {len(members)}: keep {dup['keeper']}, "
                   f"flag {_e(', '.join(str(m) for m in members if m != dup['keeper']))}</h3>")
        if dup.get("keeper_detail"):
            out.append(f"<p class=muted>kept {dup['keeper']}: {_e(dup['keeper_detail'])}</p>")
        shown = [dup["keeper"], *[m for m in members if m != dup["keeper"]][:1]]
        out.append("<div class='pair'>" + "".join(
            f"<pre>[{m}] {_e(_text(examples, m, 'input', 600))}\n→ "
            f"{_e(_text(examples, m, 'target', 600))}</pre>" for m in shown) + "</div>")
    return out


def _line(v: View) -> list[str]:
    m = v.metrics
    return [number_line("duplicates", f"{m['duplicates']:d}",
                        f"{m['exact_duplicates']} exact, {m['near_duplicates']} near")]


#: The contract of ``report.json["redundancy"]`` (JSON Schema), assembled into the report's
#: by :func:`constraintlab.report.schema.report_schema`.
SCHEMA: dict = {
    "type": "object",
    "required": [
        "exact_duplicates",
        "exact_duplicate_sets",
        "near_duplicates",
        "near_duplicate_pairs",
        "redundancy_ratio",
        "sets",
    ],
    "properties": {
        "exact_duplicates": {"type": "integer", "minimum": 0},
        "exact_duplicate_sets": {"type": "integer", "minimum": 0},
        "near_duplicates": {"type": "integer", "minimum": 0},
        "near_duplicate_pairs": {"type": "integer", "minimum": 0},
        "redundancy_ratio": {"type": "number", "minimum": 0, "maximum": 1},
        "sets": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "kind", "keeper", "keeper_reason", "members"],
                "properties": {
                    "kind": {"enum": ["exact", "near"]},
                    "keeper": {"type": "integer", "minimum": 0},
                    "keeper_reason": {
                        "enum": ["formatting", "loss", "file_order"],
                        "description": (
                            "The rule that chose the keeper: fewest formatting marks (whitespace, "
                            "capitals, lower-case starts), else lowest mean target loss, else "
                            "first in file order."
                        ),
                    },
                    "keeper_detail": {
                        "type": "string",
                        "description": (
                            "The keeper_reason in words, with the counts or losses compared."
                        ),
                    },
                    "members": {
                        "type": "array",
                        "items": {"type": "integer", "minimum": 0},
                        "minItems": 2,
                    },
                },
            },
        },
        "keeper_rule": {"type": "string", "description": "How each set's keeper is chosen."},
        "keeper_reasons": {
            "type": "object",
            "additionalProperties": {"type": "integer", "minimum": 0},
            "description": "How many sets each keeper_reason decided.",
        },
        "near_duplicate_pairs_in_families": {
            "type": "integer",
            "minimum": 0,
            "description": (
                "Near-duplicate links between members of one variant family: intended variation, "
                "not counted as duplicates (unless families_are_duplicates)."
            ),
        },
    },
}


SECTION = Section(
    "redundancy", schema=SCHEMA,
    parts=(Part("kpi", 30, _kpi), Part("body", 90, _html), Part("numbers", 40, _line)),
    fixes=(Fix(20, "duplicates", "duplicate row", "duplicate rows"),),
    kpi_links={"duplicates": "duplicate-sets"})
