"""report.json schema 2 on the shipped sample: the names of schema 1 map to the new ones, the
analyzers' summaries *are* their sections, and the metrics are a table lookup.

``tests/fixtures/report_v1_sample.json`` holds the scalars of report.json and
``Report.metrics()`` that constraintlab 25babd6 (schema 1) wrote for
``constraintlab analyze data/gsm8k_sample.jsonl`` with the default settings.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import jsonschema
import pytest

from constraintlab.analysis.registry import analyzers, lookup
from constraintlab.api import _pipeline
from constraintlab.report.report import METRICS, SCHEMA_VERSION, Report, metric_table
from constraintlab.report.schema import report_schema

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "gsm8k_sample.jsonl"
V1 = json.loads((REPO / "tests" / "fixtures" / "report_v1_sample.json").read_text())
SCHEMA = report_schema()

#: report.json keys of schema 1 -> schema 2 (those not listed kept their name and value).
RENAMED_KEYS: dict[str, str] = {"schema_version": "schema_version"}
#: keys whose meaning changed (issue 14): replaced by another name, never kept with a new
#: meaning. ``verdict`` (under/over-determined) -> the growth verdict ``determinacy``;
#: ``inconsistent`` (conflict or contradictions) -> ``consistency`` (contradictions only).
REPLACED_KEYS: dict[str, str] = {"system.verdict": "system.determinacy",
                                 "system.inconsistent": "system.consistency"}
#: values recomputed by a calibrated rule (issue 14): the system's rule sentence (now the growth
#: rule), zones refined on mean-removed rows and pressure judged against the data's null (and
#: the per-zone layer maps that follow the zones).
RECOMPUTED = ("system.rule", "zones.pressure_zones", "layer_map.zones.",
              # issue 22: a duplicate set keeps its cleanest copy, not its first
              "redundancy.keeper_rule",
              # issue 22: a contradiction is the same input up to formatting; the sample's
              # planted pairs with a changed word ("gave" / "handed") are other inputs, so
              # those family members are now near-duplicate links inside their family
              "contradictions.", "redundancy.near_duplicate_pairs_in_families")
#: gate metrics of schema 1 -> schema 2.
RENAMED_METRICS: dict[str, str] = {"skipped_records": "invalid_records"}
REPLACED_METRICS: dict[str, str] = {"verdict": "determinacy", "inconsistent": "consistency"}
#: raw conflict counts: still in report.json (``conflict``), no longer gate metrics (clean real
#: data sits at its own null there; ``interference_excess`` is the gate-able number).
REMOVED_METRICS = ("conflict_density", "alignment_density", "conflicting_pairs",
                   "conflicted_share")
RECOMPUTED_METRICS = ("pressure_zones", "max_zone_pressure", "contradictions",
                      "contradicting_examples")
#: analyzer summary keys before schema 2 (what report/build.py renamed) -> the report key the
#: analyzer now emits itself.
OLD_SUMMARY_NAMES: dict[tuple[str, str], str] = {
    ("spectrum", "n"): "system.n_equations", ("spectrum", "k"): "system.sketch_dim",
    ("spectrum", "method"): "system.spectrum_method",
    ("spectrum", "n_unique_constraints"): "system.unique_constraints",
    ("determinacy", "reason"): "system.rule", ("determinacy", "verdict"): "system.determinacy",
    ("pairs", "conflict_pairs"): "conflict.conflicting_pairs",
    ("pairs", "alignment_pairs"): "conflict.aligned_pairs",
    ("contradictions", "contradiction_pairs"): "contradictions.count",
    ("contradictions", "examples_in_contradictions"): "contradictions.examples",
    ("zones", "n_zones"): "zones.count", ("zones", "n_pressure_zones"): "zones.pressure_zones",
    ("families", "n_families"): "families.count",
    ("families", "family_members"): "families.members",
    ("families", "incoherent_families"): "families.incoherent",
}


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample")
    return _run(out)


def _run(out: Path):
    with _pipeline(SAMPLE, None, out, None, None, None, {}) as run:
        run.report.save(out)
    return run


def _same(old, new, where: str) -> None:
    if isinstance(old, float) or isinstance(new, float):
        assert new == pytest.approx(old, rel=1e-6, abs=1e-9), where
    else:
        assert new == old, where


def test_schema_1_keys_keep_their_values_under_their_schema_2_names(sample) -> None:
    data = sample.report.data
    assert data["schema_version"] == SCHEMA_VERSION == 2 and V1["report"]["schema_version"] == 1
    for key, old in V1["report"].items():
        if key in ("schema_version", "dataset.source"):   # the source: as the user named it
            continue
        if key in REPLACED_KEYS:
            section, name = key.split(".", 1)
            assert name not in data[section], key         # not kept with a new meaning
            lookup(data, REPLACED_KEYS[key])
            continue
        new = lookup(data, RENAMED_KEYS.get(key, key))
        if not key.startswith(RECOMPUTED):
            _same(old, new, key)
    assert len(data["zones"]["zones"]) == len(V1["zones"]) == data["zones"]["count"]
    # the same sets; the keeper is the first member unless formatting or the loss chose another
    # (issue 22: the sample's shouted, double-spaced copies 68 and 146 are no longer kept)
    sets = data["redundancy"]["sets"]
    assert [{k: v for k, v in d.items() if k != "keeper"} for d in V1["sets"]] == [
        {k: d[k] for k in ("id", "kind", "members", "size")} for d in sets]
    for d in sets:
        assert d["keeper_reason"] != "file_order" or d["keeper"] == d["members"][0], d
    kept = {d["members"][0]: (d["keeper"], d["keeper_reason"]) for d in sets}
    assert kept[68] == (76, "formatting") and kept[146] == (213, "formatting")
    # the sample's planted contradictions keep it inconsistent; its gradients no longer do
    assert data["system"]["consistency"] == "inconsistent"
    assert all("contradiction" in r for r in data["system"]["inconsistent_reasons"])


def test_schema_1_metrics_under_their_schema_2_names(sample) -> None:
    m = sample.report.metrics()
    assert set(m) == set(METRICS)
    for name, old in V1["metrics"].items():
        if name in REMOVED_METRICS or name in REPLACED_METRICS:
            assert name not in m, name
            continue
        new = m[RENAMED_METRICS.get(name, name)]
        if name in RECOMPUTED_METRICS:
            continue
        if old is None:
            assert isinstance(new, float) and not math.isfinite(new), name
        else:
            _same(old, new, name)
    assert not set(RENAMED_METRICS) & set(m)   # old names are gone, not kept beside
    assert set(REPLACED_METRICS.values()) <= set(m)


def test_analyzers_emit_their_sections_and_metrics_are_lookups(sample) -> None:
    data, results = sample.report.data, sample.results
    jsonschema.validate(data, SCHEMA)
    for a in analyzers():
        result = getattr(results, a.name)
        if a.section is None or result is None:
            continue
        section = data[a.section]
        for key, value in result.summary.items():
            assert section[key] == value, (a.name, key)
    for (analyzer, old), new in OLD_SUMMARY_NAMES.items():
        summary = getattr(results, analyzer).summary
        assert old not in summary, (analyzer, old)
        section, key = new.split(".", 1)
        assert key in summary and data[section][key] == summary[key], new
    for name, (section, key, _) in metric_table().items():
        value = lookup(data[section], key)
        got = sample.report.metrics()[name]
        assert got == value or (value is None and math.isnan(got)), name
    # the advice is computed by analysis and only shown by the report
    assert sample.report.advice() == results.advice.summary["items"] == data["advice"]["items"]
    assert any("contradiction pair" in a for a in sample.report.advice())


def test_saved_report_loads_and_old_schema_is_refused(sample, tmp_path) -> None:
    back = Report.load(sample.out)
    assert back.metrics().keys() == sample.report.metrics().keys()
    old = json.loads((sample.out / "report.json").read_text())
    old["schema_version"] = 1
    (tmp_path / "report.json").write_text(json.dumps(old))
    with pytest.raises(Exception, match="schema version 1"):
        Report.load(tmp_path)
