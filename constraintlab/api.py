"""The public pipeline: ``constraintlab.analyze(data, model=...) -> Report``.

io (read) -> encode (feature store, reused when it matches) -> analysis -> report. The CLI's
``analyze`` and ``gate`` are thin wrappers over :func:`analyze`.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from constraintlab.analysis import AnalysisConfig, analyze_store
from constraintlab.encode import EncodeConfig, extract
from constraintlab.encode.store import open_matching_store, store_key
from constraintlab.errors import ConfigError, StoreMismatchError
from constraintlab.io import ExampleSet, ReadConfig, read_examples
from constraintlab.report.build import build_report
from constraintlab.report.report import Report

logger = logging.getLogger(__name__)

STAGES: tuple[type, ...] = (ReadConfig, EncodeConfig, AnalysisConfig)


def split_settings(settings: dict[str, Any], *, read: ReadConfig | None = None,
                   encode: EncodeConfig | None = None, analysis: AnalysisConfig | None = None
                   ) -> tuple[ReadConfig, EncodeConfig, AnalysisConfig]:
    """Route keyword settings to the stage configs that have a field of that name.

    A name several stages share (``seed``) is applied to each of them. Unknown names raise
    :class:`ConfigError` listing the valid ones.
    """
    base = [read or ReadConfig(), encode or EncodeConfig(), analysis or AnalysisConfig()]
    names = [{f.name for f in dataclasses.fields(cls)} for cls in STAGES]
    unknown = sorted(k for k in settings if not any(k in n for n in names))
    if unknown:
        valid = ", ".join(sorted(set().union(*names)))
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; valid settings: {valid}")
    out = [dataclasses.replace(cfg, **{k: v for k, v in settings.items() if k in n})
           for cfg, n in zip(base, names, strict=True)]
    return out[0], out[1], out[2]


def default_out_dir(data: str | Path) -> Path:
    """Where the report of a data file goes by default: ``constraintlab-report/`` beside it."""
    return Path(data).resolve().parent / "constraintlab-report"


def analyze(data: Any, model: str | None = None, *, out: str | Path | None = None,
            read: ReadConfig | None = None, encode: EncodeConfig | None = None,
            analysis: AnalysisConfig | None = None, save: bool = True,
            **settings: Any) -> Report:
    """Read, encode and analyse a dataset; return (and save) its :class:`Report`.

    Parameters
    ----------
    data : path | list[dict] | datasets.Dataset | ExampleSet
        The fine-tuning data (see :func:`constraintlab.io.read_examples`).
    model : str, optional
        Hub id or local directory of a causal LM; default the built-in reference model.
    out : path, optional
        Report directory. The feature store lives in ``out/features/<key>/`` and is reused by a
        later run with the same data and encoder settings. Default for a file:
        ``constraintlab-report/`` beside it; for in-memory data nothing is written unless
        ``out`` is given.
    read, encode, analysis : stage configs, optional
        Start from these instead of the defaults.
    save : bool
        Write the report files into ``out`` (default True when there is an ``out``).
    **settings
        Any field of :class:`ReadConfig`, :class:`EncodeConfig` or :class:`AnalysisConfig`
        (``k=256``, ``lora_r=16``, ``tau=0.2``, ``on_invalid="skip"``...).

    Returns
    -------
    Report
    """
    if model is not None:
        settings["model"] = model
    read_cfg, enc_cfg, ana_cfg = split_settings(settings, read=read, encode=encode,
                                                analysis=analysis)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    examples = data if isinstance(data, ExampleSet) else read_examples(data, read_cfg)
    timings["read"] = time.perf_counter() - t0
    if out is None and isinstance(data, (str, Path)):
        out = default_out_dir(data)
    with tempfile.TemporaryDirectory(prefix="constraintlab-") as tmp:
        root = Path(out) / "features" if out is not None else Path(tmp)
        store_dir = root / store_key(enc_cfg, examples.content_hash)
        t0 = time.perf_counter()
        store = open_matching_store(store_dir, enc_cfg, examples.content_hash, len(examples))
        reused = store is not None
        if reused:
            logger.info("reusing the feature store in %s", store_dir)
        else:
            try:
                store = extract(examples, enc_cfg, store_dir)
            except StoreMismatchError as err:
                # the directory is this tool's cache for these settings and data: a store left
                # there by another tool version or format is rebuilt (an unfinished store of
                # this very extraction is resumed by extract itself and never gets here)
                logger.warning("rebuilding the feature store in %s: %s", store_dir,
                               str(err).splitlines()[0])
                store = extract(examples, enc_cfg, store_dir, overwrite=True)
        timings["extract"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        results = analyze_store(store, examples=examples.examples, config=ana_cfg)
        timings["analysis"] = time.perf_counter() - t0
        run = {"seconds": {k: round(v, 3) for k, v in timings.items()},
               "feature_store": str(store_dir) if out is not None else None,
               "feature_store_reused": reused}
        report = build_report(examples, store, results, run=run)
    if out is not None and save:
        report.save(out)
        logger.info("report written to %s", out)
    return report
