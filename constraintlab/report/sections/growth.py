"""``growth``: the saturation curve (does more of this data teach new directions?)."""

from __future__ import annotations

from matplotlib.figure import Figure

from constraintlab._text import visible
from constraintlab.report import plots
from constraintlab.report._format import _e, _img, _num, number_line
from constraintlab.report.sections import Part, Section, View


def plot_growth(report) -> Figure:
    """The saturation curve: independent directions against examples (nested subsamples)."""
    return plots.growth_figure(report._section("growth"))


def _figure(report) -> Figure | None:
    return plot_growth(report) if report.data.get("growth") else None


def _html(v: View) -> list[str]:
    """How the independent directions grow with the data (the saturation curve)."""
    g = v.data.get("growth")
    if not g:
        return []
    c = g["curve"]
    rows = "".join(f"<tr><td class=num>{n}</td><td class=num>{r}</td>"
                   f"<td class=num>{_num(e, 3)}</td><td class=num>{d}</td></tr>"
                   for n, r, e, d in zip(c["n"], c["rank"], c["effective_rank"],
                                         c["energy_rank"], strict=True))
    return ["<h2>Growth: does more of this data teach new directions?</h2>",
            _img(v.figures.get("growth"),
                 "independent directions against examples on nested subsamples"),
            f"<p><b>{_e(str(g['verdict']).replace('_', ' '))}</b>: {_e(g['reason'])}.</p>",
            "<table><tr><th>examples</th><th>rank</th><th>effective rank</th>"
            f"<th>directions carrying {100 * float(c['energy']):.0f} % of the energy</th></tr>"
            f"{rows}</table>"]


def _line(v: View) -> list[str]:
    g = v.data.get("growth")
    if not g:
        return []
    slope = g.get("slope_per_100")
    return [number_line("growth", str(g["verdict"]),
                        f"+{slope:.1f} directions per 100 examples, elasticity "
                        f"{g['elasticity']:.2f}" if slope is not None and g.get("elasticity")
                        is not None else visible(g["reason"]))]


SECTION = Section(
    "growth",
    parts=(Part("body", 20, _html), Part("numbers", 20, _line)),
    figures={"growth": _figure},
    methods={"plot_growth": plot_growth})
