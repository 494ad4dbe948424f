"""What every figure of a report shares: the palette, the style and PNG output. Each figure
is drawn beside its section (:mod:`constraintlab.report.sections`) from plain numbers of
``report.json``.

Colours are the Okabe-Ito palette (distinguishable with the common colour-vision deficiencies)
and every mark that carries meaning also differs in line style or hatch, so the figures read in
grey-scale print too. Figures are built with matplotlib's object-oriented API (no pyplot, no
global backend), so they render alike in a terminal, a CI job and Jupyter. Nothing here computes
a finding.
"""

from __future__ import annotations

import io

from matplotlib.figure import Figure

OKABE_ITO = {"black": "#000000", "orange": "#E69F00", "sky": "#56B4E9", "green": "#009E73",
             "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00",
             "purple": "#CC79A7"}
STYLE = {"figure.dpi": 110, "axes.spines.top": False, "axes.spines.right": False,
         "axes.grid": True, "grid.alpha": 0.3, "font.size": 9}


def figure_to_png(fig: Figure) -> bytes:
    """PNG bytes of a figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()
