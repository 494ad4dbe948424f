"""Acting on an analysis: ``constraintlab.clean(data)`` and ``constraintlab.select(data, budget)``.

Both run the ``analyze`` pipeline (same options, report directory and feature store, see
:func:`constraintlab.api.analyze`) and decide from the results it just computed, never by
reading the report back: :mod:`constraintlab.analysis.cleaning` (what to keep) and
:mod:`constraintlab.analysis.selection` (what to train on under a budget). They write data as
``order`` does (:func:`constraintlab.api.record_lines`): for a JSON Lines source the original
line bytes, unchanged; otherwise one JSON object per line. The CLI's ``clean`` and ``select``
are thin wrappers over these.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from constraintlab.analysis import AnalysisConfig
from constraintlab.analysis.cleaning import CleanConfig, plan_cleaning
from constraintlab.analysis.selection import SelectConfig, budget_count, rank_rows
from constraintlab.api import _pipeline, record_lines, refuse_input, split_settings
from constraintlab.encode import EncodeConfig, extract
from constraintlab.encode.store import open_matching_store, store_key
from constraintlab.errors import StoreMismatchError
from constraintlab.io import ExampleSet, ReadConfig, read_examples
from constraintlab.report.report import Report

logger = logging.getLogger(__name__)

__all__ = ["CleanResult", "SelectResult", "clean", "decisions_path", "select",
           "selection_report_path"]


def decisions_path(output: str | Path) -> Path:
    """``CLEAN.decisions.jsonl`` beside ``CLEAN.jsonl``."""
    output = Path(output)
    return output.with_name(output.stem + ".decisions.jsonl")


def selection_report_path(output: str | Path) -> Path:
    """``SUBSET.select.json`` beside ``SUBSET.jsonl``."""
    output = Path(output)
    return output.with_name(output.stem + ".select.json")


def _source(data: Any, examples: ExampleSet) -> str:
    return str(data) if isinstance(data, str | Path) else examples.source


# -- clean ---------------------------------------------------------------------------------------
@dataclass
class CleanResult:
    """The decisions of ``clean`` and the records it keeps.

    Attributes
    ----------
    decisions : list of dict
        One per record, in file order: ``row`` (0-based record index; None for an invalid
        record whose index is not known), ``line`` (1-based), ``action`` (``keep``, ``drop``,
        ``review`` or ``invalid``: a record left out of the analysis, ``reason`` its finding's
        code, never written), ``reason`` and ``evidence``
        (:mod:`constraintlab.analysis.cleaning`).
    records : list of bytes
        The records written: every ``keep`` and ``review`` record, in file order, one line
        each (:func:`constraintlab.api.record_lines`).
    written_as : str
        ``"original lines"`` or ``"json objects"``.
    summary : dict
        Counts (``kept``, ``dropped``, ``review``, ``invalid``, ``written``, ``by_reason``), the
        settings, ``source`` and ``report_dir``.
    report : Report
    """

    decisions: list[dict]
    records: list[bytes]
    written_as: str
    summary: dict[str, Any]
    report: Report

    def write(self, output: str | Path) -> Path:
        """Write :attr:`records` to ``output`` and the decisions, one JSON object a line, to
        ``output``'s ``.decisions.jsonl`` (:func:`decisions_path`); returns that path."""
        output = Path(output)
        refuse_input(output, self.summary.get("source"))
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(b"".join(self.records))
        path = decisions_path(output)
        with path.open("w", encoding="utf-8") as fh:
            for d in self.decisions:
                fh.write(json.dumps(d, ensure_ascii=False, allow_nan=False) + "\n")
        return path


def clean(data: Any, *, config: CleanConfig | None = None, model: str | None = None,
          out: str | Path | None = None, read: ReadConfig | None = None,
          encode: EncodeConfig | None = None, analysis: AnalysisConfig | None = None,
          save: bool = True, cache: str | Path | bool | None = None,
          **settings: Any) -> CleanResult:
    """Analyse a dataset (as :func:`constraintlab.analyze`) and decide what to keep.

    Parameters
    ----------
    data : path | list[dict] | datasets.Dataset | ExampleSet
        The fine-tuning data.
    config : CleanConfig, optional
        Suspect level, contradiction and family policies (defaults: the analysis' suspect flag
        level, contradictions left for review, families kept).
    model, out, read, encode, analysis, save, cache, **settings
        As for :func:`constraintlab.analyze`.

    Returns
    -------
    CleanResult
        Nothing is written until :meth:`CleanResult.write`.
    """
    cfg = config if config is not None else CleanConfig()
    with _pipeline(data, model, out, read, encode, analysis, settings, cache=cache) as run:
        results, examples = run.results, run.examples
        con = results.contradictions
        decisions, summary = plan_cleaning(
            results.table(), sorted(con.positions) if con is not None else (), config=cfg,
            suspect_alpha=results.config.suspect_alpha,
            suspect_rule_p=results.config.suspect_rule_p)
        skipped = [*examples.skipped, *getattr(run.store, "skipped", [])]
        report = run.report
    if run.out is not None and save:
        report.save(run.out)
    line_of = {ex.index: ex.line for ex in examples}
    for d in decisions:
        d["line"] = line_of[d["row"]]
    invalid = [{"row": getattr(p, "index", None), "line": int(p.line), "action": "invalid",
                "reason": getattr(p, "code", "invalid"), "evidence": {"finding": str(p.message)}}
               for p in skipped]
    ordered = sorted(decisions + invalid, key=lambda d: (d["line"], d["action"] == "invalid"))
    ordered = [{"row": d["row"], "line": d["line"], "action": d["action"],
                "reason": d["reason"], "evidence": d["evidence"]} for d in ordered]
    written = [d for d in ordered if d["action"] in ("keep", "review")]
    records, mode = record_lines(examples, [d["row"] for d in written])
    summary.update({"invalid": len(invalid), "written": len(records), "written_as": mode,
                    "source": _source(data, examples),
                    "report_dir": str(report.path) if report.path is not None else None})
    return CleanResult(decisions=ordered, records=records, written_as=mode, summary=summary,
                       report=report)


# -- select --------------------------------------------------------------------------------------
@dataclass
class SelectResult:
    """The examples ``select`` chose and the records to write.

    Attributes
    ----------
    selected : list of int
        Example ids chosen, in file order.
    ranking : list of int
        Every example id, best first (the selection is its first ``len(selected)``).
    records : list of bytes
        The selected records in file order, one line each.
    written_as : str
    summary : dict
        ``method``, ``rule``, ``budget``, ``n_examples``, ``n_selected``, ``selected``,
        ``ranking``, ``scores`` (by id; None for ``herding`` and ``qr``), ``target`` (path or None),
        ``source``, ``written``, ``written_as``, ``skipped``, ``report_dir``.
    report : Report
    """

    selected: list[int]
    ranking: list[int]
    records: list[bytes]
    written_as: str
    summary: dict[str, Any]
    report: Report

    def write(self, output: str | Path) -> Path:
        """Write :attr:`records` to ``output`` and the summary to ``output``'s
        ``.select.json`` (:func:`selection_report_path`); returns that path."""
        output = Path(output)
        refuse_input(output, self.summary.get("source"))
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(b"".join(self.records))
        path = selection_report_path(output)
        doc = {**self.summary, "output": str(output)}
        path.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")
        return path


def _target_features(target: ExampleSet, enc_cfg: EncodeConfig, root: Path) -> np.ndarray:
    """The constraint rows of the target set with the data's encoder settings (its store
    under ``root``, reused when it matches)."""
    store_dir = root / store_key(enc_cfg, target.content_hash)
    store = open_matching_store(store_dir, enc_cfg, target.content_hash, len(target))
    if store is None:
        try:
            store = extract(target, enc_cfg, store_dir)
        except StoreMismatchError:
            store = extract(target, enc_cfg, store_dir, overwrite=True)
    return np.asarray(store.features, dtype=np.float64)


def select(data: Any, budget: float | int, *, target: Any = None, method: str = "herding",
           target_score: str = "mean", target_center: bool | None = None,
           model: str | None = None,
           out: str | Path | None = None, read: ReadConfig | None = None,
           encode: EncodeConfig | None = None, analysis: AnalysisConfig | None = None,
           save: bool = True, cache: str | Path | bool | None = None,
           **settings: Any) -> SelectResult:
    """Analyse a dataset (as :func:`constraintlab.analyze`) and choose a subset of it.

    Parameters
    ----------
    data : path | list[dict] | datasets.Dataset | ExampleSet
    budget : float or int
        A fraction in (0, 1] (float) or a count (int).
    target : path | list[dict] | datasets.Dataset | ExampleSet, optional
        A target set: rank by gradient similarity to it (read with the same reading options,
        encoded with the same model, adapter and projection).
    method : {"herding", "qr", "leverage"}
        Without a target; see :mod:`constraintlab.analysis.selection`.
    target_score : {"mean", "max"}
    target_center : bool, optional
        Remove the data's mean unit direction before the cosine (None: SelectConfig's
        default).
    model, out, read, encode, analysis, save, cache, **settings
        As for :func:`constraintlab.analyze`; a :class:`SelectConfig` field among
        ``settings`` (``herding_block_rows``, ``select_seed``, ``leverage_energy``) sets it.

    Returns
    -------
    SelectResult
    """
    if isinstance(budget, np.integer):
        budget = int(budget)
    elif isinstance(budget, np.floating):
        budget = float(budget)
    own = {f.name for f in fields(SelectConfig)}
    select_settings = {k: settings.pop(k) for k in list(settings) if k in own}
    if target_center is not None:
        select_settings["target_center"] = target_center
    cfg = SelectConfig(budget=budget, method=method, target_score=target_score,
                       **select_settings)
    if model is not None:
        settings["model"] = model
    read_cfg, enc_cfg, ana_cfg = split_settings(settings, read=read, encode=encode,
                                                analysis=analysis)
    # the target is read before any model loads (a bad file exits early)
    tgt = None
    if target is not None:
        tgt = target if isinstance(target, ExampleSet) else read_examples(target, read_cfg)
    with _pipeline(data, None, out, read_cfg, enc_cfg, ana_cfg, {}, cache=cache) as run:
        ids = np.asarray(run.results.ids, dtype=np.int64)
        X = np.asarray(run.store.features)
        T = None
        if tgt is not None:
            with tempfile.TemporaryDirectory(prefix="constraintlab-target-") as tmp:
                root = run.out / "features" if run.out is not None else Path(tmp)
                T = _target_features(tgt, enc_cfg, root)
        ranking, score, info = rank_rows(X, target=T, config=cfg)
        examples, report = run.examples, run.report
    if run.out is not None and save:
        report.save(run.out)
    n_sel = budget_count(cfg.budget, len(ids))
    chosen = np.sort(ranking[:n_sel])
    sel_ids = [int(i) for i in ids[chosen]]
    records, mode = record_lines(examples, sel_ids)
    skipped = [str(p) for p in [*examples.skipped, *getattr(run.store, "skipped", [])]]
    summary = {
        **info, "budget": cfg.budget, "n_examples": len(ids), "n_selected": n_sel,
        "selected": sel_ids, "ranking": [int(i) for i in ids[ranking]],
        "scores": ({str(int(i)): float(s) for i, s in zip(ids, score, strict=True)}
                   if score is not None else None),
        "target": (str(target) if isinstance(target, str | Path)
                   else (tgt.source if tgt is not None else None)),
        "select_config": asdict(cfg),
        "source": _source(data, examples), "written": len(records), "written_as": mode,
        "skipped_records": len(skipped), "skipped": skipped,
        "report_dir": str(report.path) if report.path is not None else None}
    return SelectResult(selected=sel_ids, ranking=summary["ranking"], records=records,
                        written_as=mode, summary=summary, report=report)
