"""``pairs``: every pair an analyzer reported (kind, a, b, score, detail)."""

from __future__ import annotations

import pandas as pd

from constraintlab.report.sections import Section


def pairs(report) -> pd.DataFrame:
    """Every pair (kind, a, b, score, detail), one row each."""
    return pd.DataFrame(report.data["pairs"], columns=["kind", "a", "b", "score", "detail"])


#: The contract of ``report.json["pairs"]`` (JSON Schema), assembled into the report's
#: by :func:`constraintlab.report.schema.report_schema`.
SCHEMA: dict = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["kind", "a", "b", "score"],
        "properties": {
            "kind": {"enum": ["exact_duplicate", "near_duplicate", "contradiction", "conflict"]},
            "a": {"type": "integer", "minimum": 0},
            "b": {"type": "integer", "minimum": 0},
            "score": {"type": "number"},
            "detail": {"type": "object"},
        },
    },
}


SECTION = Section("pairs", schema=SCHEMA, properties={"pairs": pairs})
