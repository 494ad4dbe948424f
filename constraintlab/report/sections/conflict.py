"""``conflict``: do examples pull against each other? (analyzer ``pairs``)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from constraintlab.report._format import _img
from constraintlab.report.plots import OKABE_ITO, STYLE
from constraintlab.report.sections import Part, Section, View


def cosine_histogram_figure(conflict: Mapping[str, Any]) -> Figure:
    """Histogram of pair cosines with the conflict and alignment thresholds (``+-tau``).

    Parameters
    ----------
    conflict : dict
        ``report["conflict"]``: needs ``histogram`` {``edges`` (B+1,), ``counts`` (B,)} and
        ``tau``.
    """
    edges = [float(e) for e in conflict["histogram"]["edges"]]
    counts = [float(c) for c in conflict["histogram"]["counts"]]
    tau = float(conflict["tau"])
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(6.4, 3.2))
        ax = fig.subplots()
        widths = [b - a for a, b in itertools.pairwise(edges)]
        colours = [OKABE_ITO["vermillion"] if b <= -tau else OKABE_ITO["sky"] if a >= tau
                   else "#999999" for a, b in itertools.pairwise(edges)]
        hatches = ["////" if b <= -tau else "" for b in edges[1:]]
        bars = ax.bar(edges[:-1], counts, width=widths, align="edge", color=colours,
                      edgecolor="white", linewidth=0.2)
        for bar, hatch in zip(bars, hatches, strict=True):
            bar.set_hatch(hatch)
        if any(c > 0 for c in counts):
            ax.set_yscale("log")
        ax.axvline(-tau, color=OKABE_ITO["black"], ls="--", lw=1,
                   label=f"conflict: cos < -{tau:.3g}")
        ax.axvline(tau, color=OKABE_ITO["black"], ls=":", lw=1,
                   label=f"aligned: cos > {tau:.3g}")
        ax.set_xlim(-1, 1)
        ax.set_xlabel("cosine of two examples' constraints")
        ax.set_ylabel("pairs")
        ax.set_title("Do examples pull together or against each other?")
        ax.legend(loc="upper left", frameon=False)
        fig.tight_layout()
    return fig

def plot_cosines(report) -> Figure:
    """Histogram of pair cosines with the conflict threshold."""
    return cosine_histogram_figure(report.data["conflict"])


def _html(v: View) -> list[str]:
    c = v.data["conflict"]
    return ["<h2>Conflict: do examples pull against each other?</h2>",
            _img(v.figures.get("cosines"), "histogram of pair cosines"),
            f"<p>{c['conflicting_pairs']:,} of {c['n_pairs']:,} pairs conflict (cos &lt; "
            f"−{c['tau']:.3g}, {c['method']}); {c['aligned_pairs']:,} are aligned; "
            f"{c['conflicted_examples']} examples have at least one conflicting partner.</p>"]


#: The contract of ``report.json["conflict"]`` (JSON Schema), assembled into the report's
#: by :func:`constraintlab.report.schema.report_schema`.
SCHEMA: dict = {
    "type": "object",
    "required": [
        "tau",
        "method",
        "n_pairs",
        "conflicting_pairs",
        "conflict_density",
        "aligned_pairs",
        "alignment_density",
        "conflicted_examples",
        "histogram",
    ],
    "properties": {
        "tau": {"type": "number"},
        "method": {"enum": ["exact", "sampled"]},
        "n_pairs": {"type": "integer", "minimum": 0},
        "conflicting_pairs": {"type": "integer", "minimum": 0},
        "conflict_density": {"type": "number", "minimum": 0, "maximum": 1},
        "aligned_pairs": {"type": "integer", "minimum": 0},
        "alignment_density": {"type": "number", "minimum": 0, "maximum": 1},
        "conflicted_examples": {"type": "integer", "minimum": 0},
        "histogram": {
            "type": "object",
            "required": ["edges", "counts"],
            "properties": {
                "edges": {"type": "array", "items": {"type": "number"}},
                "counts": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            },
        },
    },
}


SECTION = Section(
    "conflict", schema=SCHEMA,
    parts=(Part("body", 40, _html),),
    figures={"cosines": plot_cosines},
    methods={"plot_cosines": plot_cosines})
