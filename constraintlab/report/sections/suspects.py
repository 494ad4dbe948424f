"""``suspects``: examples whose target is likely wrong, and what the model can judge."""

from __future__ import annotations

import pandas as pd

from constraintlab._text import visible
from constraintlab.report._format import _clip, _e, _text, number_line
from constraintlab.report.sections import Fix, Part, Section, View


def suspects(report) -> pd.DataFrame:
    """The suspect examples, most suspect first (index = example index).

    Columns: ``suspect_rank``, ``suspect_p`` (the combined p-value: it ranks where the
    score rounds to 1), ``suspect_score`` (in [0, 1]; ``is_suspect`` when it reaches
    ``suspects.threshold``), ``suspect_reasons`` (``;``-separated codes),
    ``suspect_detail`` (what a rule judged false), ``input_dependence`` (nats of the
    target its input explains), ``ending_surprise``,
    ``loss`` (the ``target_surprise`` signal, nats/token), ``input``, ``target``. Every
    flagged example, not only the listed ones (:mod:`constraintlab.analysis.suspects` says
    how the score is calibrated).
    """
    report._section("suspects")
    cols = ["suspect_rank", "suspect_p", "suspect_score", "suspect_reasons",
            "suspect_detail", "input_dependence", "ending_surprise", "loss", "input",
            "target"]
    t = report.examples
    flagged = t[t["is_suspect"].astype(bool)]
    order = flagged.sort_values(["suspect_evidence", "suspect_score"], ascending=False,
                                kind="stable")
    return order[[c for c in cols if c in order.columns]]


def _capability(v: View) -> dict:
    return (v.data.get("suspects") or {}).get("capability") or {}


def _headline(v: View) -> list[str]:
    """The capability statement in the verdict box when it fires (escaped, with a line
    break)."""
    cap = _capability(v)
    if not cap.get("limited"):
        return []
    return [f"<br><b>Model capability:</b> {_e(cap.get('message', ''))}"]


def _capability_lines(v: View) -> list[str]:
    """The capability statement right under the verdict, when it fires."""
    cap = _capability(v)
    return [f"model capability: {visible(cap['message'])}"] if cap.get("limited") else []


def _kpi(v: View) -> list[str]:
    sus = v.data.get("suspects")
    if sus and sus.get("suspects") is None:
        return ["<div>suspects<b>not measured</b>the model cannot judge this data</div>"]
    if sus:
        return [f"<div>suspects<b>{sus['suspects']}</b>{sus['suspect_share']:.1%} of the "
                "examples</div>"]
    return []


def _token_list(tokens: list[dict]) -> str:
    return ", ".join(f"<code>{_e(t['text'])}</code> {t['nll']:.2f}"
                     + (f" ({t['nll_noinput']:.2f} without the input)"
                        if t.get("nll_noinput") is not None else "") for t in tokens)


def _token_cell(tokens: list[dict], shown: int = 3) -> str:
    """The first ``shown`` tokens; the rest behind an expander."""
    if len(tokens) <= shown:
        return _token_list(tokens)
    return (f"<details class='clip'><summary>{_token_list(tokens[:shown])}</summary>"
            f"{_token_list(tokens)}</details>")


def _html(v: View, limit: int = 20) -> list[str]:
    """'Examples to look at': the suspects with both texts, the reasons and the tokens the
    input does not explain; then what the model can and cannot judge."""
    sus, examples = v.data.get("suspects"), v.examples
    if not sus:
        return []
    cap = sus.get("capability") or {}
    if sus.get("suspects") is None:
        head = (f"<p><b>Suspects: not measured</b>. {_e(sus.get('not_measured') or '')}. "
                f"{sus.get('flagged', 0)} examples flagged by the checks that ran.</p>")
    else:
        head = (f"<p>{sus['suspects']} of the examples ({sus['suspect_share']:.1%}) are "
                f"suspect: {_e(sus['calibration'])}.</p>")
    out = ["<h2>Examples to look at</h2>", head]
    pairs = sus.get("contradiction_pairs") or []
    if pairs:
        shown = ", ".join(f"{a} and {b}" for a, b in pairs[:10])
        out.append(f"<p>Contradiction pairs to resolve ({len(pairs)}): records {shown}"
                   f"{' …' if len(pairs) > 10 else ''}. One side of each is wrong; the pair "
                   "does not say which (section Contradictions).</p>")
    if cap.get("message"):
        out.append(f"<p class='{'verdict bad' if cap.get('limited') else 'muted'}'>"
                   f"{_e(cap['message'])}</p>")
    if not sus["listed"]:
        out.append("<p class='muted'>No example is suspect.</p>")
        return out
    out.append("<table><tr><th>record</th><th>rank</th><th>p-value</th><th>reasons</th>"
               "<th>input</th><th>target</th><th>tokens the input does not explain (NLL, "
               "nats)</th></tr>")
    for row in sus["listed"][:limit]:
        i = row["id"]
        p = row.get("p_value")
        detail = f"<br><i>{_clip(row['detail'], 120)}</i>" if row.get("detail") else ""
        out.append(f"<tr><td class=num>{i}</td><td class=num>{row.get('rank', '')}</td>"
                   f"<td class=num>{'–' if p is None else f'{p:.2g}'}</td>"
                   f"<td>{_clip(', '.join(row['reasons']), 60)}{detail}</td>"
                   f"<td class=text>{_clip(_text(examples, i, 'input', 600))}</td>"
                   f"<td class=text>{_clip(_text(examples, i, 'target', 600))}</td>"
                   f"<td>{_token_cell(row['tokens'])}</td></tr>")
    out.append("</table>")
    shown = dict.fromkeys(r for row in sus["listed"][:limit] for r in row["reasons"])
    legend = sus.get("reason_codes") or {}
    if any(r in legend for r in shown):
        out.append("<p class='muted'>" + "; ".join(
            f"<b>{_e(r)}</b>: {_e(legend[r])}" for r in shown if r in legend) + ".</p>")
    if sus.get("flagged", sus.get("suspects") or 0) > limit:
        out.append("<p class='muted'>… every suspect: column is_suspect of examples.csv, "
                   "report.suspects().</p>")
    return out


def _line(v: View) -> list[str]:
    sus, m = v.data.get("suspects"), v.metrics
    if not sus:
        return []
    why = ", ".join(f"{visible(k)} {n}" for k, n in sus["reasons"].items() if n)
    if sus.get("suspects") is None:
        return [f"  suspects     {'not measured':>14}   the model cannot judge this "
                f"data (capability above); {sus.get('flagged', 0)} flagged by the "
                f"checks that ran{' (' + why + ')' if why else ''}"]
    return [number_line("suspects", f"{m['suspects']:d}", f"{m['suspect_share']:.1%} of the "
                        f"examples{' (' + why + ')' if why else ''}")]


#: The contract of ``report.json["suspects"]`` (JSON Schema), assembled into the report's
#: by :func:`constraintlab.report.schema.report_schema`.
SCHEMA: dict = {
    "type": ["object", "null"],
    "description": (
        "which examples are probably wrong (constraintlab.analysis.suspects): the flag, the "
        "score's calibration, the signals, the listed suspects and what the model can judge; null "
        "without token profiles"
    ),
    "required": [
        "suspects",
        "suspect_share",
        "alpha",
        "threshold",
        "formula",
        "calibration",
        "signals",
        "reasons",
        "capability",
        "listed",
    ],
    "properties": {
        "suspects": {
            "type": ["integer", "null"],
            "minimum": 0,
            "description": (
                "examples flagged; null when the model-based checks did not all run "
                "(capability.limited): not measured"
            ),
        },
        "suspect_share": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "measured": {
            "type": "boolean",
            "description": (
                "true when every suspect check ran (suspects and suspect_share are then numbers)"
            ),
        },
        "flagged": {
            "type": "integer",
            "minimum": 0,
            "description": (
                "examples flagged by the checks that did run (is_suspect), measured or not"
            ),
        },
        "contradiction_pairs": {
            "type": "array",
            "description": (
                "contradiction pairs to resolve ([a, b] ids): one side is wrong, the pair does not"
                " say which"
            ),
            "items": {"type": "array"},
        },
        "alpha": {"type": "number"},
        "threshold": {"type": "number"},
        "capability": {
            "type": "object",
            "required": ["limited", "out_of_reach", "message"],
            "properties": {
                "limited": {"type": "boolean"},
                "out_of_reach": {"type": "array", "items": {"type": "string"}},
                "message": {"type": "string"},
            },
        },
        "listed": {
            "type": "array",
            "items": {"type": "object", "required": ["id", "score", "reasons", "tokens"]},
        },
    },
}


SECTION = Section(
    "suspects", schema=SCHEMA,
    parts=(Part("verdict", 10, _headline), Part("head", 10, _capability_lines),
           Part("kpi", 40, _kpi), Part("body", 50, _html), Part("numbers", 70, _line)),
    fixes=(Fix(30, "suspects", "likely wrong target", "likely wrong targets"),),
    methods={"suspects": suspects},
    kpi_links={"suspects": "examples-to-look-at"})
