"""``system``: the spectrum and the verdict (analyzers ``spectrum`` and ``determinacy``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from matplotlib.figure import Figure

from constraintlab.report import plots
from constraintlab.report._format import _img, number_line
from constraintlab.report.sections import Part, Section, View


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
    return plots.spectrum_figure(report.data["system"])


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


SECTION = Section(
    "system",
    parts=(Part("kpi", 10, _kpi), Part("body", 10, _html), Part("numbers", 10, _line)),
    figures={"spectrum": plot_spectrum},
    methods={"verdict": verdict, "plot_spectrum": plot_spectrum},
    kpi_links={"effective rank": "spectrum"})
