"""``pairs``: every pair an analyzer reported (kind, a, b, score, detail)."""

from __future__ import annotations

import pandas as pd

from constraintlab.report.sections import Section


def pairs(report) -> pd.DataFrame:
    """Every pair (kind, a, b, score, detail), one row each."""
    return pd.DataFrame(report.data["pairs"], columns=["kind", "a", "b", "score", "detail"])


SECTION = Section("pairs", properties={"pairs": pairs})
