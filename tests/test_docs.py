"""The README documents what the code does: every gate metric, with where it lives."""

from __future__ import annotations

import re
from pathlib import Path

from constraintlab.report.report import metric_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_gate_table_lists_every_metric_where_it_is():
    text = README.read_text(encoding="utf-8")
    block = text.split("<!-- gate-metrics", 1)[1].split("<!-- /gate-metrics -->", 1)[0]
    rows = re.findall(r"^\| `([a-z_0-9]+)` \| `([a-z_]+)\.([a-z_0-9.]+)` \| (.*) \|$", block,
                      re.M)
    documented = {name: (sec, key, doc) for name, sec, key, doc in rows}
    actual = {name: (sec, key, doc) for name, (sec, key, doc) in metric_table().items()}
    assert documented == actual       # where each metric lives and what it means
