"""Assemble ``report.json`` (schema version 1) and the per-example table from the stages' outputs.

This module only re-arranges what io, encode and analysis produced into the documented contract
(README, "report.json"); it computes no finding of its own.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import pandas as pd

from constraintlab._version import __version__
from constraintlab.analysis import AnalysisResults
from constraintlab.analysis.result import AnalyzerResult, plain
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
        What io read (texts, source, hash, skipped records).
    store : FeatureStore
        What encode wrote (manifest, per-example loss and gradient norm).
    results : AnalysisResults
        What analysis found (needs the spectrum, pairs, redundancy, contradictions and zones;
        volatility, families and layers are ``null`` sections when they did not run).
    run : dict, optional
        Volatile facts about this run (timings, whether the store was reused); ``created`` is
        added. The only part of the report that may differ between identical runs.
    """
    m = store.manifest
    spec, pairs, red = results.spectrum.summary, results.pairs.summary, results.redundancy.summary
    con, zon = results.contradictions.summary, results.zones.summary
    det = spec["determinacy"]
    report = {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "constraintlab", "version": __version__},
        "run": {"created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                **(run or {})},
        "dataset": {"source": data.source, "sha256": data.content_hash, "schema": data.schema,
                    "n_records": data.n_records, "n_examples": len(data),
                    "skipped": [str(p) for p in [*data.skipped, *getattr(store, "skipped", [])]],
                    "read_config": plain(vars(data.config))},
        "model": _model_section(m),
        "adapter": _adapter_section(m),
        "projection": dict(m["projection"]),
        "encode_config": m["config"],
        "analysis_config": plain(vars(results.config)),
        "system": {
            "n_equations": spec["n"], "n_unknowns": m["n_params"],
            "sketch_dim": spec["k"], "rank": spec["rank"],
            "rank_is_lower_bound": spec["rank_is_lower_bound"],
            "rank_tolerance": spec["rank_tolerance"],
            "rank_tolerance_rule": spec["rank_tolerance_rule"],
            "effective_rank": spec["effective_rank"], "stable_rank": spec["stable_rank"],
            "energy_directions": {k.rstrip("%"): v for k, v in spec["energy_directions"].items()},
            "unique_constraints": spec["n_unique_constraints"],
            "spectrum_method": spec["method"], "singular_values": spec["singular_values"],
            "verdict": det["verdict"], "rule": det["reason"], "rules": det["rules"],
            "inconsistent": det["inconsistent"],
            "inconsistent_reasons": det["inconsistent_reasons"], "caveats": det["caveats"],
        },
        "conflict": {
            "tau": pairs["tau"], "tau_rule": pairs["tau_rule"],
            "noise_floor": pairs["noise_floor"], "method": pairs["method"],
            "n_pairs": pairs["n_pairs"], "conflicting_pairs": pairs["conflict_pairs"],
            "conflict_density": pairs["conflict_density"],
            "aligned_pairs": pairs["alignment_pairs"],
            "alignment_density": pairs["alignment_density"],
            "near_parallel_pairs": pairs["near_parallel_pairs"],
            "conflicted_examples": pairs["conflicted_examples"],
            "conflicted_share": pairs["conflicted_share"],
            "histogram": pairs["histogram"],
            **{k: pairs[k] for k in pairs if k.endswith("_ci")},
        },
        "redundancy": {
            "exact_duplicate_sets": red["exact_duplicate_sets"],
            "exact_duplicates": red["exact_duplicates"],
            "near_duplicate_pairs": red["near_duplicate_pairs_text"]
            + red["near_duplicate_pairs_gradient"],
            "near_duplicate_pairs_text": red["near_duplicate_pairs_text"],
            "near_duplicate_pairs_gradient": red["near_duplicate_pairs_gradient"],
            "near_duplicate_pairs_in_families": red["near_duplicate_pairs_in_families"],
            "near_duplicates": red["redundant_examples"] - red["exact_duplicates"],
            "duplicate_sets": red["duplicate_sets"],
            "redundant_examples": red["redundant_examples"],
            "redundancy_ratio": red["redundancy_ratio"], "keeper_rule": red["keeper_rule"],
            "sets": _sets(red["sets"], results.redundancy.pairs),
        },
        "contradictions": {
            "count": con["contradiction_pairs"],
            "examples": con["examples_in_contradictions"],
            "signals": con["signals"], "by_reason": con.get("by_reason", {}),
            "by_signal": con.get("by_signal", {}),
        },
        "zones": {
            "count": zon["n_zones"], "pressure_zones": zon["n_pressure_zones"],
            "pressure_rule": zon["pressure_rule"], "edge_min": zon["edge_min"],
            "graph_edges": zon["graph_edges"],
            "zones": [_zone(z, rank) for rank, z in enumerate(zon["zones"], start=1)],
            "outliers": zon["outliers"],
        },
        "response": _response_section(results.response.summary),
        "volatility": _volatility_section(results.volatility),
        "families": _families_section(results.families),
        "layer_map": _layer_map_section(results.layers),
        "pairs": results.all_pairs(),
    }
    return Report(data=plain(report), examples=_examples_table(data, store, results),
                  edges=_edges(results), tokens=getattr(store, "tokens", None))


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


def _sets(sets: list[dict], pairs: list[dict]) -> list[dict]:
    exact = {(p["a"], p["b"]) for p in pairs if p["kind"] == "exact_duplicate"}
    out = []
    for s in sets:
        members = s["members"]
        is_exact = all((min(a, b), max(a, b)) in exact for a in members for b in members if a < b)
        out.append({"id": s["set"], "kind": "exact" if is_exact else "near",
                    "keeper": s["keeper"], "members": members, "size": s["size"]})
    return out


def _response_section(r: dict) -> dict:
    keys = ("method", "sign_convention", "units", "formulas", "top_m", "total_effect",
            "helpful_examples", "harmful_examples", "most_helpful", "most_harmful", "zone_ids",
            "zone_sizes", "zone_matrix", "zone_matrix_mean", "zone_net_effect",
            "zone_matrix_rule")
    return {k: r[k] for k in keys if k in r}


def _volatility_section(r: AnalyzerResult | None) -> dict | None:
    if r is None:
        return None
    keys = ("formula", "top_k", "weights", "ln_vocab", "vocab_size", "grad_norm_median",
            "percentiles", "most_volatile")
    return {k: r.summary[k] for k in keys}


def _families_section(r: AnalyzerResult | None) -> dict | None:
    if r is None:
        return None
    s = r.summary
    return {"count": s["n_families"], "members": s["family_members"],
            "incoherent": s["incoherent_families"], "incoherent_ids": s["incoherent"],
            "coherence_rule": s["coherence_rule"], "family_jaccard": s["family_jaccard"],
            "min_size": s["min_size"], "families": s["families"]}


def _layer_map_section(r: AnalyzerResult | None) -> dict | None:
    if r is None:
        return None
    s = r.summary
    return {"layers": s["layers"], "kinds": s["kinds"], "n_sites": s["n_sites"],
            "dataset": s["dataset"], "zones": s["zones"]}


def _zone(z: dict, rank: int) -> dict:
    return {"id": z["zone"], "rank": rank, "label": z["label"], "size": z["size"],
            "members": z["members"], "internal_edges": z["internal_edges"],
            "internal_conflict_share": z["conflict_share"], "mean_alignment": z["mean_alignment"],
            "density": z["density"], "pressure": z["pressure"],
            "is_pressure_zone": z["is_pressure_zone"]}


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
    rows = sorted((min(a, b), max(a, b), float(d["weight"]))
                  for a, b, d in results.graph.edges(data=True))
    return pd.DataFrame(rows, columns=["a", "b", "cos"])
