"""Each report section's presentation lives in one module of ``constraintlab.report.sections``:
every analyzer's section has one, every one presents a section of the contract, and what they
declare (gate metrics in "To fix", accessors, slots) exists."""

from __future__ import annotations

import importlib
import json
import pkgutil
from pathlib import Path

import pytest

import constraintlab.report.sections as pkg
from constraintlab.analysis.registry import analyzers
from constraintlab.report.report import Report, metric_table
from constraintlab.report.schema import FRAME, report_schema
from constraintlab.report.sections import Part, Section, install, parts, sections


def test_every_analyzer_section_has_a_presentation_module() -> None:
    presented = {s.name for s in sections()}
    reported = {a.section for a in analyzers() if a.section}
    assert reported, "the analysis registry found no analyzer"
    assert reported <= presented, f"no presentation for {sorted(reported - presented)}"


def test_every_presentation_module_names_a_section_of_the_contract() -> None:
    schema = report_schema()
    assert {s.name for s in sections()} <= set(schema["required"])
    frame = json.loads(FRAME.read_text(encoding="utf-8"))
    # each section's contract lives in its module, the frame holds only the run's own keys
    assert not {s.name for s in sections()} & set(frame["properties"])
    for s in sections():
        assert schema["properties"][s.name] == s.schema, s.name


def test_every_module_of_the_package_declares_its_section() -> None:
    here = Path(pkg.__file__).resolve().parent
    for info in pkgutil.iter_modules([str(here)]):
        module = importlib.import_module(f"{pkg.__name__}.{info.name}")
        assert isinstance(getattr(module, "SECTION", None), Section), info.name
        assert module.SECTION.name == info.name, \
            f"{info.name}.py presents {module.SECTION.name!r}: one module per section, named so"


def test_declared_fixes_and_accessors_exist() -> None:
    metrics = metric_table()
    for s in sections():
        for fix in s.fixes:
            assert fix.metric in metrics, (s.name, fix.metric)
        for name in [*s.methods, *s.properties]:
            assert callable(getattr(Report, name)) or isinstance(vars(Report)[name], property)


def test_parts_are_ordered_and_an_accessor_cannot_shadow_report() -> None:
    body = parts("body")
    assert [p.order for p in body] == sorted(p.order for p in body)
    with pytest.raises(ValueError, match="unknown slot"):
        Part("sidebar", 1, lambda v: [])

    class Clash:
        verdict = None     # system declares Report.verdict

    with pytest.raises(ValueError, match="exists already"):
        install(Clash)


def test_interference_line_and_card_say_how_many_sd_of_the_null_draws() -> None:
    import pandas as pd

    from constraintlab.report.sections import View
    from constraintlab.report.sections import interference as sec

    inter = {"interference": 0.081, "null_interference": 0.0625, "interference_excess": 1.296,
             "interference_above_null": True, "interference_z": (0.081 - 0.0625) / 0.005,
             "null_interference_sd": 0.005, "rule": "r", "reason": "x", "null": {}}
    v = View(data={"interference": inter}, examples=pd.DataFrame(),
             metrics={"interference_excess": 1.296, "interference_above_null": True})
    assert "its null, +3.7 sd (above" in sec._line(v)[0]
    assert "its null, +3.7 sd (above)" in sec._kpi(v)[0]
    old = View(data={"interference": {**inter, "interference_z": None}},
               examples=pd.DataFrame(), metrics=v.metrics)     # one draw, or an older report
    assert "its null (above" in sec._line(old)[0]
