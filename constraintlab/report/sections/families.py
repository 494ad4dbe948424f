"""``families``: variant families, deliberate variants of one text, and their coherence."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from constraintlab.report._format import _e, _num, number_line
from constraintlab.report.sections import Fix, Part, Section, View


def families(report) -> pd.DataFrame:
    """The variant families, index = family id.

    Columns: ``size``, ``n_variants``, ``base`` (the member the others are compared with),
    ``coherent`` (None when not measured), ``reasons`` (why not, comma-separated),
    ``mean_cos``, ``first_direction_share``, ``opposing_pairs``, ``contradicting_pairs``,
    ``volatility_spread`` (max - min score of the members), ``label``, ``members``.
    """
    cols = ["size", "n_variants", "base", "coherent", "reasons", "mean_cos",
            "first_direction_share", "opposing_pairs", "contradicting_pairs",
            "volatility_spread", "label", "members"]
    rows = []
    for f in report._section("families")["families"]:
        coh = f.get("coherence") or {}
        rows.append({"id": f["id"], "size": f["size"], "n_variants": f["n_variants"],
                     "base": f["base"], "coherent": f["coherent"],
                     "reasons": ", ".join(f["reasons"]),
                     "mean_cos": coh.get("mean_cos", math.nan),
                     "first_direction_share": coh.get("first_direction_share", math.nan),
                     "opposing_pairs": coh.get("opposing_pairs"),
                     "contradicting_pairs": f.get("contradicting_pairs"),
                     "volatility_spread": (f.get("volatility") or {}).get("spread", math.nan),
                     "label": f["label"], "members": f["members"]})
    return pd.DataFrame(rows, columns=["id", *cols]).set_index("id")


def _kpi(v: View) -> list[str]:
    fam = v.data.get("families")
    if not fam:
        return []
    return [f"<div>variant families<b>{fam['count']}</b>{fam['incoherent']} incoherent</div>"]


def _varies(varies: Mapping[str, Any]) -> str:
    parts = []
    for kind in ("marked", "replaced", "added", "removed"):
        entry = varies.get(kind) or {}
        if entry.get("members"):
            items = ", ".join(f"<code>{_e(w)}</code>" + (f" ×{c}" if c > 1 else "")
                              for w, c in entry["top"])
            parts.append(f"<b>{kind}</b> ({entry['members']}): {items}")
    return "<br>".join(parts) or "<span class='muted'>spacing or case only</span>"


def _html(v: View, limit: int = 20) -> list[str]:
    fam = v.data.get("families")
    out = ["<h2>Variant families: deliberate variants of one text</h2>"]
    if not fam:
        return [*out, "<p>Not measured.</p>"]
    out.append(f"<p>{fam['count']} famil{'y' if fam['count'] == 1 else 'ies'} "
               f"({fam['members']} examples; at least "
               f"{fam['min_size']} distinct variants linked by word-shingle Jaccard &ge; "
               f"{_num(fam['family_jaccard'], 3)}); <b>{fam['incoherent']} incoherent</b>.</p>"
               f"<p class='muted'>{_e(fam['coherence_rule'])}.</p>")
    if not fam["families"]:
        return out
    ranked = sorted(fam["families"], key=lambda f: (f["coherent"] is not False, f["id"]))
    out.append("<table><tr><th>family</th><th>size</th><th>base record · label</th>"
               "<th>what varies</th><th>volatility spread</th><th>mean cos</th>"
               "<th>first-direction share</th><th>coherent</th></tr>")
    for f in ranked[:limit]:
        coh, vol = f.get("coherence") or {}, f.get("volatility") or {}
        bad = f["coherent"] is False
        counts = {"contradiction": f.get("contradicting_pairs"),
                  "opposing": coh.get("opposing_pairs")}
        reasons = ", ".join(r.replace("_", " ") + (f" ({counts[r]} pairs)" if counts.get(r)
                                                   else "") for r in f["reasons"])
        verdict = ("⚠ no: " + _e(reasons) if bad
                   else "yes" if f["coherent"] else "not measured")
        members = ", ".join(map(str, f["members"][:12])) + (" …" if f["size"] > 12 else "")
        out.append(f"<tr{' class=bad' if bad else ''}><td class=num>{f['id']}</td>"
                   f"<td class=num>{f['size']} ({f['n_variants']} variants)</td>"
                   f"<td>{f['base']} · {_e(f['label'])}<br><span class='muted'>records "
                   f"{_e(members)}</span></td><td>{_varies(f['varies'])}</td>"
                   f"<td class=num>{_num(vol.get('spread'), 3)}</td>"
                   f"<td class=num>{_num(coh.get('mean_cos'), 3)}</td>"
                   f"<td class=num>{_num(coh.get('first_direction_share'), 3)}</td>"
                   f"<td>{verdict}</td></tr>")
    out.append("</table>")
    if len(ranked) > limit:
        out.append(f"<p class='muted'>{len(ranked) - limit} more in report.json.</p>")
    return out


def _line(v: View) -> list[str]:
    if not v.data.get("families"):
        return []
    m = v.metrics
    return [number_line("variant families", f"{m['families']:d}",
                        f"{m['incoherent_families']} incoherent ({m['family_members']} "
                        "examples)")]


#: The contract of ``report.json["families"]`` (JSON Schema), assembled into the report's
#: by :func:`constraintlab.report.schema.report_schema`.
SCHEMA: dict = {
    "type": ["object", "null"],
    "description": (
        "Variant families: deliberate near-variants of one text and whether their constraints "
        "agree; null when the examples were not analysed."
    ),
    "required": [
        "count",
        "members",
        "incoherent",
        "incoherent_ids",
        "coherence_rule",
        "family_jaccard",
        "min_size",
        "families",
    ],
    "properties": {
        "count": {"type": "integer", "minimum": 0},
        "members": {"type": "integer", "minimum": 0},
        "incoherent": {"type": "integer", "minimum": 0},
        "incoherent_ids": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "coherence_rule": {"type": "string"},
        "family_jaccard": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "min_size": {"type": "integer", "minimum": 2},
        "families": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    "id",
                    "size",
                    "n_variants",
                    "base",
                    "members",
                    "label",
                    "varies",
                    "reasons",
                    "coherent",
                ],
                "properties": {
                    "id": {"type": "integer", "minimum": 0},
                    "size": {"type": "integer", "minimum": 2},
                    "n_variants": {"type": "integer", "minimum": 2},
                    "base": {"type": "integer", "minimum": 0},
                    "members": {
                        "type": "array",
                        "items": {"type": "integer", "minimum": 0},
                        "minItems": 2,
                    },
                    "label": {"type": "string"},
                    "varies": {
                        "type": "object",
                        "required": ["marked", "replaced", "added", "removed"],
                        "additionalProperties": {
                            "type": "object",
                            "required": ["members", "top"],
                            "properties": {
                                "members": {"type": "integer", "minimum": 0},
                                "top": {
                                    "type": "array",
                                    "items": {
                                        "type": "array",
                                        "minItems": 2,
                                        "maxItems": 2,
                                        "prefixItems": [
                                            {"type": "string"},
                                            {"type": "integer", "minimum": 0},
                                        ],
                                    },
                                },
                            },
                        },
                    },
                    "volatility": {
                        "type": "object",
                        "required": ["min", "max", "spread", "std"],
                        "properties": {
                            "min": {"type": "number"},
                            "max": {"type": "number"},
                            "spread": {"type": "number"},
                            "std": {"type": "number"},
                        },
                    },
                    "coherence": {
                        "type": "object",
                        "required": [
                            "mean_cos",
                            "min_cos",
                            "opposing_pairs",
                            "first_direction_share",
                        ],
                        "properties": {
                            "mean_cos": {"type": "number"},
                            "min_cos": {"type": "number"},
                            "opposing_pairs": {"type": "integer", "minimum": 0},
                            "first_direction_share": {"type": "number", "minimum": 0, "maximum": 1},
                        },
                    },
                    "contradicting_pairs": {"type": "integer", "minimum": 0},
                    "reasons": {
                        "type": "array",
                        "items": {"enum": ["contradiction", "low_coherence", "opposing"]},
                    },
                    "coherent": {"type": ["boolean", "null"]},
                },
            },
        },
    },
}


SECTION = Section(
    "families", schema=SCHEMA,
    parts=(Part("kpi", 60, _kpi), Part("body", 100, _html), Part("numbers", 90, _line)),
    fixes=(Fix(40, "incoherent_families", "incoherent variant family",
               "incoherent variant families"),),
    properties={"families": families},
    kpi_links={"variant families": "variant-families"})
