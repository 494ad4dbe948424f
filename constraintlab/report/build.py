"""Assemble ``report.json`` (schema version 2) and the per-example table from the stages' outputs.

This module only selects: each analyzer's summary *is* its ``report.json`` section (the
analyzers emit the contract's names; :mod:`constraintlab.analysis.registry` says which
section), and the dataset, model, adapter and projection sections are copied from what io and
encode recorded. It computes no finding of its own.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import pandas as pd

from constraintlab._version import __version__
from constraintlab.analysis import AnalysisResults
from constraintlab.analysis.registry import analyzers
from constraintlab.analysis.result import plain
from constraintlab.encode import FeatureStore
from constraintlab.io import ExampleSet
from constraintlab.reference import REFERENCE_MODEL_NAME, REFERENCE_MODEL_NOTE, model_info
from constraintlab.report.report import SCHEMA_VERSION, Report

#: Columns of the encoder's table that go into ``examples.csv`` (the per-site energies come
#: with the layer map's table, ``energy:<layer>:<kind>``).
STORE_COLUMNS = ("line", "n_tokens", "n_input_tokens", "n_target_tokens", "n_truncated", "loss",
                 "grad_norm")


def build_report(data: ExampleSet, store: FeatureStore, results: AnalysisResults, *,
                 run: dict[str, Any] | None = None) -> Report:
    """The :class:`Report` of one analysis.

    Parameters
    ----------
    data : ExampleSet
        What io read (texts, source, hash, records it could not use).
    store : FeatureStore
        What encode wrote (manifest, per-example loss and gradient norm, records it could not
        encode).
    results : AnalysisResults
        What analysis found; a section whose analyzers did not run is ``null``.
    run : dict, optional
        Volatile facts about this run (timings, whether the store was reused); ``created`` is
        added. The only part of the report that may differ between identical runs.
    """
    m = store.manifest
    findings = [*data.skipped, *getattr(store, "skipped", [])]
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "constraintlab", "version": __version__},
        "run": {"created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                **(run or {})},
        "dataset": {"source": data.source, "sha256": data.content_hash, "schema": data.schema,
                    "n_records": data.n_records, "n_examples": len(data),
                    "invalid_records": len(findings),
                    "truncated_examples": m["stats"]["n_truncated_examples"],
                    "skipped": [str(f) for f in findings],
                    "findings": [_finding(f) for f in findings],
                    "notes": [_finding(f) for f in getattr(data, "notes", [])],
                    "read_config": plain(vars(data.config))},
        "model": _model_section(m),
        "adapter": _adapter_section(m),
        "projection": dict(m["projection"]),
        "encode_config": m["config"],
        "analysis_config": plain(vars(results.config)),
    }
    for analyzer in analyzers():
        if analyzer.section is None:
            continue
        section = report.setdefault(analyzer.section, None)
        result = getattr(results, analyzer.name)
        if result is not None:
            report[analyzer.section] = {**(section or {}), **result.summary}
    report["pairs"] = results.all_pairs()
    return Report(data=plain(report), examples=_examples_table(data, store, results),
                  edges=_edges(results), tokens=getattr(store, "tokens", None))


def _finding(f: Any) -> dict:
    """One io/encode finding as a JSON object (``to_dict`` when it has one)."""
    to_dict = getattr(f, "to_dict", None)
    return to_dict() if callable(to_dict) else {"message": str(f)}


def _model_section(m: dict) -> dict:
    model = m["model"]
    out = {"name": model["name"], "revision": model.get("revision"),
           "architecture": model.get("architecture"), "weights": model.get("weights"),
           "reference": model["name"] == REFERENCE_MODEL_NAME, "note": None}
    if out["reference"]:
        info = model_info()
        out.update(version=info["version"], sha256=info["sha256"], note=REFERENCE_MODEL_NOTE)
    return out


def _adapter_section(m: dict) -> dict:
    cfg = m["adapter_config"]
    targets = cfg.get("target_modules")
    return {"r": cfg.get("r"), "alpha": cfg.get("lora_alpha"),
            "target_modules": sorted(targets) if isinstance(targets, (list, set)) else targets,
            "n_params": m["n_params"], "trained": bool(m["model"].get("trained_adapter")),
            "modules": len(m["modules"]), "config": cfg}


def _examples_table(data: ExampleSet, store: FeatureStore, results: AnalysisResults
                    ) -> pd.DataFrame:
    enc = store.table.set_index("index")[list(STORE_COLUMNS)]
    text = pd.DataFrame({"input": [ex.input_text for ex in data],
                         "target": [ex.target_text for ex in data]},
                        index=pd.Index([ex.index for ex in data], name="index"))
    table = enc.join(text).join(results.table())
    table.index.name = "index"
    return table


def _edges(results: AnalysisResults) -> pd.DataFrame:
    zones = results.zones
    if zones is not None and getattr(zones, "edges", None) is not None:
        return zones.edges[["a", "b", "cos"]].astype({"cos": float}).reset_index(drop=True)
    return pd.DataFrame({"a": pd.Series(dtype=int), "b": pd.Series(dtype=int),
                         "cos": pd.Series(dtype=float)})
