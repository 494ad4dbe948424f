"""``growth``: the saturation curve (does more of this data teach new directions?)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from constraintlab._text import visible
from constraintlab.report._format import _e, _img, _num, number_line
from constraintlab.report.plots import OKABE_ITO, STYLE
from constraintlab.report.sections import Part, Section, View


def growth_figure(growth: Mapping[str, Any]) -> Figure:
    """The saturation curve: independent directions against examples, on nested subsamples.

    Parameters
    ----------
    growth : dict
        ``report["growth"]``: ``curve`` (``n``, ``rank``, ``effective_rank``, ``energy_rank``,
        ``energy``), ``verdict``, ``slope_per_100``; ``capacity`` when known.
    """
    c = growth["curve"]
    n = [int(v) for v in c["n"]]
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(6.4, 3.4))
        ax = fig.subplots()
        ax.plot(n, n, color=OKABE_ITO["black"], ls=":", lw=1,
                label="one new direction per example")
        ax.plot(n, c["rank"], color=OKABE_ITO["vermillion"], ls="--", marker="s", ms=3,
                lw=1.2, label="rank")
        ax.plot(n, c["effective_rank"], color=OKABE_ITO["green"], ls="-.", marker="^", ms=3,
                lw=1.2, label="effective rank")
        ax.plot(n, c["energy_rank"], color=OKABE_ITO["blue"], ls="-", marker="o", ms=4,
                lw=2.0, label=f"directions carrying {100 * float(c['energy']):.0f} % of the "
                              "energy (the verdict's curve)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("examples (seeded nested subsamples)")
        ax.set_ylabel("independent directions")
        slope = growth.get("slope_per_100")
        ax.set_title(f"{str(growth['verdict']).replace('_', ' ')}"
                     + (f": about {slope:.1f} new directions per 100 more examples"
                        if slope is not None else ""))
        ax.legend(loc="upper left", frameon=False, fontsize=8)
        fig.tight_layout()
    return fig

def plot_growth(report) -> Figure:
    """The saturation curve: independent directions against examples (nested subsamples)."""
    return growth_figure(report._section("growth"))


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


#: The contract of ``report.json["growth"]`` (JSON Schema), assembled into the report's
#: by :func:`constraintlab.report.schema.report_schema`.
SCHEMA: dict = {
    "type": ["object", "null"],
    "description": (
        "rank, effective rank and energy rank on seeded nested subsamples N/16..N and the growth "
        "verdict (constraintlab.analysis.growth)"
    ),
    "required": ["curve", "verdict", "reason", "rules", "slope_per_100", "elasticity"],
    "properties": {
        "curve": {
            "type": "object",
            "required": ["n", "rank", "effective_rank", "energy_rank", "energy"],
        },
    },
}


SECTION = Section(
    "growth", schema=SCHEMA,
    parts=(Part("body", 20, _html), Part("numbers", 20, _line)),
    figures={"growth": _figure},
    methods={"plot_growth": plot_growth})
