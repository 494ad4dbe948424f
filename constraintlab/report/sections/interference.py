"""``interference``: cross-zone interference against the data's own null."""

from __future__ import annotations

from constraintlab.report._format import _e, _num, number_line
from constraintlab.report.sections import Part, Section, View


def _measured(v: View) -> dict | None:
    inter = v.data.get("interference")
    return inter if inter and inter.get("interference_excess") is not None else None


def _limited(v: View) -> bool:
    """The model barely conditions on the input (the suspects' capability statement)."""
    return bool(((v.data.get("suspects") or {}).get("capability") or {}).get("limited"))


def _sd(inter: dict) -> str:
    """``, +1.4 sd`` of the null draws (empty when the report predates it or the null had one
    draw)."""
    z = inter.get("interference_z")
    return f", {z:+.1f} sd" if isinstance(z, (int, float)) else ""


def _kpi(v: View) -> list[str]:
    inter = _measured(v)
    if inter is None:
        return []
    note = (" — from a model that barely conditions on the input: it restates that the model "
            "does not know this data" if _limited(v) else "")
    return [f"<div>interference<b>{inter['interference_excess']:.2f}×</b>its null{_sd(inter)}"
            f"{' (above)' if inter['interference_above_null'] else ''}{_e(note)}</div>"]


def _html(v: View) -> list[str]:
    inter = _measured(v)
    if inter is None:
        return []
    lo, hi = (inter.get("null_interference_range") or [None, None])[:2]
    pair = inter.get("most_interfering_pair")
    return ["<h2>Interference: does training on some examples undo others?</h2>",
            f"<p>{_e(inter['reason'])}</p>",
            f"<p class='muted'>Interference {_num(inter['interference'])} against "
            f"{_num(inter['null_interference'])} for the data's Gaussian null (range "
            f"{_num(lo)} – {_num(hi)}): {inter['interference_excess']:.2f}× the null, "
            f"{'above' if inter['interference_above_null'] else 'near'} the data's own "
            f"baseline. {_e(inter['rule'])}"
            + (f" Most interfering: zones {pair['a']} and {pair['b']}." if pair else "")
            + "</p>"]


def _line(v: View) -> list[str]:
    inter = _measured(v)
    if inter is None:
        return []
    m = v.metrics
    return [number_line("interference", f"{m['interference_excess']:.2f}x",
                        f"its null{_sd(inter)} ("
                        f"{'above' if m['interference_above_null'] else 'near'} "
                        "the data's own baseline"
                        + ("; from a model that barely conditions on the input, it restates "
                           "that the model does not know this data)" if _limited(v) else ")"))]


#: The contract of ``report.json["interference"]`` (JSON Schema), assembled into the report's
#: by :func:`constraintlab.report.schema.report_schema`.
SCHEMA: dict = {
    "type": ["object", "null"],
    "description": (
        "cross-zone interference against the data's Gaussian null "
        "(constraintlab.analysis.interference)"
    ),
    "required": [
        "interference",
        "null_interference",
        "interference_excess",
        "interference_above_null",
        "rule",
        "reason",
        "null",
    ],
}


SECTION = Section(
    "interference", schema=SCHEMA,
    parts=(Part("kpi", 20, _kpi), Part("body", 30, _html), Part("numbers", 30, _line)),
    kpi_links={"interference": "interference"})
