"""``contradictions``: same input, different target."""

from __future__ import annotations

import pandas as pd

from constraintlab.report._format import _diff, _e, _text, number_line
from constraintlab.report.sections import Fix, Part, Section, View

_TITLE = "Contradictions: same input, different target"


def contradictions(report) -> pd.DataFrame:
    """Contradiction pairs with both inputs and targets side by side."""
    rows = []
    for p in report.data["pairs"]:
        if p["kind"] != "contradiction":
            continue
        a, b = report.examples.loc[p["a"]], report.examples.loc[p["b"]]
        rows.append({"a": p["a"], "b": p["b"], "score": p["score"], "input_a": a["input"],
                     "target_a": a["target"], "input_b": b["input"],
                     "target_b": b["target"], "diff": p["detail"].get("diff")})
    return pd.DataFrame(rows, columns=["a", "b", "score", "input_a", "target_a", "input_b",
                                       "target_b", "diff"])


def _kpi(v: View) -> list[str]:
    return [f"<div>contradictions<b>{v.data['contradictions']['count']}</b>pairs</div>"]


def _html(v: View, limit: int = 10) -> list[str]:
    """The strongest pairs, both inputs (the reader sees that they are the same) and the
    targets' word diff."""
    pairs, examples = [p for p in v.data["pairs"] if p["kind"] == "contradiction"], v.examples
    out = [f"<h2>{_e(_TITLE)}</h2>"]
    if not pairs:
        return [*out, "<p>None found.</p>"]
    out.append(f"<p>{len(pairs)} pairs; the {min(limit, len(pairs))} strongest:</p>")
    for p in sorted(pairs, key=lambda p: -p["score"])[:limit]:
        a, b = p["a"], p["b"]
        ta, tb = _diff(_text(examples, a, "target"), _text(examples, b, "target"))
        out.append(f"<h3>records {a} and {b} <span class='muted'>score {p['score']:.3f}"
                   "</span></h3>")
        ia, ib = _text(examples, a, "input"), _text(examples, b, "input")
        out.append(f"<div class='pair'><pre>{_e(ia)}</pre><pre>{_e(ib)}</pre></div>")
        out.append(f"<div class='pair'><pre>{ta}</pre><pre>{tb}</pre></div>")
    return out


def _line(v: View) -> list[str]:
    return [number_line("contradictions", f"{v.metrics['contradictions']:d}",
                        "pairs (same input, different target)")]


#: The contract of ``report.json["contradictions"]`` (JSON Schema), assembled into the report's
#: by :func:`constraintlab.report.schema.report_schema`.
SCHEMA: dict = {
    "type": "object",
    "required": ["count", "examples"],
    "properties": {
        "count": {"type": "integer", "minimum": 0},
        "examples": {"type": "integer", "minimum": 0},
        "factor_pairs_same_input": {
            "type": ["integer", "null"],
            "minimum": 0,
            "description": (
                "pairs with the same input (key: normalised text, roles, numbers) whose input "
                "factors are aligned (cos > factor_input_min) and output factors apart (cos < "
                "factor_output_max): every pair of every same-input group, also beyond max_group "
                "(at most max_pairs input-aligned pairs, the most aligned); null without texts or "
                "without factors"
            ),
        },
        "factor_pairs_without_text_support": {
            "type": ["integer", "null"],
            "minimum": 0,
            "description": (
                "of factor_pairs_same_input, those whose targets do not differ in substance (not a"
                " contradiction); null without texts or without factors"
            ),
        },
        "factor_pairs": {
            "type": ["integer", "null"],
            "description": (
                "not measured since issue 26 (always null when present): the factor signal no "
                "longer compares pairs of other inputs (that took a second all-pairs pass), see "
                "factor_pairs_scope"
            ),
        },
        "factor_pairs_other_input": {
            "type": ["integer", "null"],
            "description": (
                "not measured since issue 26 (always null when present): pairs of other inputs are"
                " never contradictions and are not compared, see factor_pairs_scope"
            ),
        },
        "factor_pairs_scope": {
            "type": "string",
            "description": (
                "which pairs the factor signal compared and why the counts over all pairs are null"
            ),
        },
    },
}


SECTION = Section(
    "contradictions", schema=SCHEMA,
    parts=(Part("kpi", 70, _kpi), Part("body", 80, _html), Part("numbers", 50, _line)),
    fixes=(Fix(10, "contradictions", "contradiction pair", "contradiction pairs"),),
    methods={"contradictions": contradictions},
    kpi_links={"contradictions": "contradictions"})
