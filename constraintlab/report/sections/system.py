"""``system``: the spectrum and the verdict (analyzers ``spectrum`` and ``determinacy``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from constraintlab.report._format import _img, number_line
from constraintlab.report.plots import OKABE_ITO, STYLE
from constraintlab.report.sections import Part, Section, View


def spectrum_figure(system: Mapping[str, Any]) -> Figure:
    """Singular values (log scale) with the numerical rank and effective rank marked.

    Parameters
    ----------
    system : dict
        ``report["system"]``: needs ``singular_values`` (descending), ``rank``,
        ``effective_rank``, ``rank_tolerance``.
    """
    s = [float(v) for v in system["singular_values"]]
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(6.4, 3.4))
        ax = fig.subplots()
        xs = range(1, len(s) + 1)
        positive = [(x, v) for x, v in zip(xs, s, strict=True) if v > 0]
        if positive:
            ax.semilogy(*zip(*positive, strict=True), color=OKABE_ITO["blue"], lw=1.6,
                        label="singular values")
        tol = system.get("rank_tolerance")
        if tol:
            ax.axhline(tol, color=OKABE_ITO["black"], ls=":", lw=1,
                       label=f"rank tolerance {tol:.3g}")
        ax.axvline(system["rank"], color=OKABE_ITO["vermillion"], ls="--", lw=1.4,
                   label=f"rank {system['rank']}")
        ax.axvline(system["effective_rank"], color=OKABE_ITO["green"], ls="-.", lw=1.4,
                   label=f"effective rank {system['effective_rank']:.1f}")
        ax.set_xlabel("direction (sorted by strength)")
        ax.set_ylabel("singular value")
        ax.set_title("How many independent constraints the data imposes")
        ax.legend(loc="upper right", frameon=False)
        fig.tight_layout()
    return fig

def verdict_sentence(report: Mapping[str, Any]) -> str:
    """The verdict in one sentence with its numbers (plain text; used by the terminal too):
    the system's size, then the determinacy rule, consistency and interference as
    :mod:`constraintlab.analysis.spectrum` worded them."""
    s = report["system"]
    text = (f"{s['n_equations']} examples (equations) against {s['n_unknowns']:,} adapter "
            f"parameters (unknowns): rank {s['rank']}"
            f"{' (a lower bound: the sketch has k dimensions)' if s['rank_is_lower_bound'] else ''}"
            f", effective rank {s['effective_rank']:.1f}.")
    return text + (" " + s["sentence"] if s.get("sentence") else "")


def verdict(report) -> str:
    """The verdict in one sentence with its numbers."""
    return verdict_sentence(report.data)


def plot_spectrum(report) -> Figure:
    """Singular values with rank and effective rank marked."""
    return spectrum_figure(report.data["system"])


def _kpi(v: View) -> list[str]:
    s = v.data["system"]
    return [f"<div>effective rank<b>{s['effective_rank']:.1f}</b>of {s['n_equations']}</div>"]


def _html(v: View) -> list[str]:
    s = v.data["system"]
    return ["<h2>Spectrum: independent constraints</h2>",
            _img(v.figures.get("spectrum"), "singular values with rank and effective rank"),
            "<table><tr><th>N equations</th><th>P unknowns</th><th>rank</th><th>effective rank"
            "</th><th>stable rank</th><th>directions for 50 / 90 / 99 % of energy</th></tr>"
            f"<tr><td class=num>{s['n_equations']}</td><td class=num>{s['n_unknowns']:,}</td>"
            f"<td class=num>{s['rank']}</td><td class=num>{s['effective_rank']:.2f}</td>"
            f"<td class=num>{s['stable_rank']:.2f}</td><td class=num>"
            + " / ".join(str(s["energy_directions"][k]) for k in ("50", "90", "99"))
            + "</td></tr></table>"]


def _line(v: View) -> list[str]:
    m = v.metrics
    return [number_line("effective rank", f"{m['effective_rank']:.1f}",
                        f"of {m['examples']} examples (rank {m['rank']}"
                        f"{', lower bound' if m['rank_is_lower_bound'] else ''}; "
                        f"P = {m['unknowns']:,} unknowns)")]


#: The contract of ``report.json["system"]`` (JSON Schema), assembled into the report's
#: by :func:`constraintlab.report.schema.report_schema`.
SCHEMA: dict = {
    "type": "object",
    "required": [
        "n_equations",
        "n_unknowns",
        "rank",
        "rank_is_lower_bound",
        "rank_tolerance",
        "effective_rank",
        "stable_rank",
        "energy_directions",
        "singular_values",
        "rule",
        "rules",
        "inconsistent_reasons",
        "determinacy",
        "consistency",
        "sentence",
    ],
    "properties": {
        "n_equations": {"type": "integer", "minimum": 0},
        "n_unknowns": {"type": "integer", "minimum": 0},
        "rank": {"type": "integer", "minimum": 0},
        "rank_is_lower_bound": {"type": "boolean"},
        "rank_tolerance": {"type": "number"},
        "effective_rank": {"type": "number"},
        "stable_rank": {"type": "number"},
        "energy_directions": {
            "type": "object",
            "required": ["50", "90", "99"],
            "additionalProperties": {"type": "integer", "minimum": 0},
        },
        "singular_values": {"type": "array", "items": {"type": "number"}},
        "rule": {"type": "string"},
        "rules": {"type": "array"},
        "inconsistent_reasons": {"type": "array", "items": {"type": "string"}},
        "determinacy": {
            "enum": [
                "too_few_examples",
                "limited_by_sketch",
                "limited_by_adapter",
                "saturating",
                "still_growing",
                "slowing",
            ],
            "description": "how the directions grow with the data (the growth section's verdict)",
        },
        "consistency": {
            "enum": ["consistent", "inconsistent", "unknown"],
            "description": "inconsistent only by contradiction pairs",
        },
        "sentence": {"type": "string"},
    },
}


SECTION = Section(
    "system", schema=SCHEMA,
    parts=(Part("kpi", 10, _kpi), Part("body", 10, _html), Part("numbers", 10, _line)),
    figures={"spectrum": plot_spectrum},
    methods={"verdict": verdict, "plot_spectrum": plot_spectrum},
    kpi_links={"effective rank": "spectrum"})
