"""``conflict``: do examples pull against each other? (analyzer ``pairs``)."""

from __future__ import annotations

from matplotlib.figure import Figure

from constraintlab.report import plots
from constraintlab.report._format import _img
from constraintlab.report.sections import Part, Section, View


def plot_cosines(report) -> Figure:
    """Histogram of pair cosines with the conflict threshold."""
    return plots.cosine_histogram_figure(report.data["conflict"])


def _html(v: View) -> list[str]:
    c = v.data["conflict"]
    return ["<h2>Conflict: do examples pull against each other?</h2>",
            _img(v.figures.get("cosines"), "histogram of pair cosines"),
            f"<p>{c['conflicting_pairs']:,} of {c['n_pairs']:,} pairs conflict (cos &lt; "
            f"−{c['tau']:.3g}, {c['method']}); {c['aligned_pairs']:,} are aligned; "
            f"{c['conflicted_examples']} examples have at least one conflicting partner.</p>"]


SECTION = Section(
    "conflict",
    parts=(Part("body", 40, _html),),
    figures={"cosines": plot_cosines},
    methods={"plot_cosines": plot_cosines})
