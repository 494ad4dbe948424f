"""The public pipeline: ``constraintlab.analyze(data, model=...) -> Report`` and
``constraintlab.order(data, strategy=...) -> OrderResult``.

io (read) -> encode (feature store, reused when it matches) -> analysis -> report, one way.
:func:`order` runs the same pipeline and orders the examples from the analysis results it just
computed (features, volatility, zones, families, duplicate sets), never by reading the report
back. The CLI's ``analyze``, ``gate`` and ``order`` are thin wrappers over these.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from constraintlab.analysis import AnalysisConfig, AnalysisResults, analyze_store
from constraintlab.analysis.order import STRATEGIES, plan_order
from constraintlab.encode import EncodeConfig, FeatureStore, extract
from constraintlab.encode.cache import cache_dir, cache_key
from constraintlab.encode.config import check_environment
from constraintlab.encode.store import open_matching_store, store_key
from constraintlab.errors import ConfigError, ConstraintlabError, StoreMismatchError
from constraintlab.io import ExampleSet, ReadConfig, read_examples
from constraintlab.report.build import build_report
from constraintlab.report.report import Report

logger = logging.getLogger(__name__)

__all__ = ["STAGES", "OrderResult", "analyze", "default_out_dir", "order", "order_report_path",
           "record_lines", "refuse_input", "split_settings"]

STAGES: tuple[type, ...] = (ReadConfig, EncodeConfig, AnalysisConfig)


#: Keyword settings named for their meaning where stages share a field name (``seed``):
#: ``{keyword: (stage config, field)}``.
SEED_NAMES: dict[str, tuple[type, str]] = {
    "projection_seed": (EncodeConfig, "seed"), "analysis_seed": (AnalysisConfig, "seed"),
}


def _seed_names(settings: dict[str, Any]) -> dict[str, Any]:
    """``seed=`` (deprecated: it set the projection and the analysis seed at once) becomes
    ``projection_seed`` and ``analysis_seed``, with a DeprecationWarning naming them."""
    if "seed" not in settings:
        return settings
    import warnings

    warnings.warn("seed= sets both the projection seed and the analysis seed and will be "
                  "removed: pass projection_seed= and/or analysis_seed= (sample_seed= for "
                  "--sample)", DeprecationWarning, stacklevel=4)
    settings = dict(settings)
    seed = settings.pop("seed")
    for name in SEED_NAMES:
        settings.setdefault(name, seed)
    return settings


def split_settings(settings: dict[str, Any], *, read: ReadConfig | None = None,
                   encode: EncodeConfig | None = None, analysis: AnalysisConfig | None = None
                   ) -> tuple[ReadConfig, EncodeConfig, AnalysisConfig]:
    """Route keyword settings to the stage configs that have a field of that name.

    The seeds have one name per meaning: ``projection_seed`` (``EncodeConfig.seed``),
    ``analysis_seed`` (``AnalysisConfig.seed``), ``sample_seed`` (``ReadConfig``); ``seed``
    alone still sets the first two, with a DeprecationWarning. Unknown names raise
    :class:`ConfigError` listing the valid ones.
    """
    settings = _seed_names(settings)
    base = [read or ReadConfig(), encode or EncodeConfig(), analysis or AnalysisConfig()]
    names = [{f.name for f in dataclasses.fields(cls)} - {"seed"} for cls in STAGES]
    unknown = sorted(k for k in settings if not any(k in n for n in names)
                     and k not in SEED_NAMES)
    if unknown:
        valid = ", ".join(sorted(set().union(*names, SEED_NAMES)))
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; valid settings: {valid}")
    out = []
    for cfg, n in zip(base, names, strict=True):
        mine = {k: v for k, v in settings.items() if k in n}
        seeds = {k: field for k, (cls, field) in SEED_NAMES.items()
                 if cls is type(cfg) and k in settings}
        mine.update({field: settings[k] for k, field in seeds.items()})
        try:
            out.append(dataclasses.replace(cfg, **mine))
        except ConfigError as err:      # name the keyword the caller gave
            prefix = f"{type(cfg).__name__}: seed "
            if seeds and str(err).startswith(prefix):
                raise ConfigError(f"{next(iter(seeds))} " + str(err)[len(prefix):]) from None
            raise
    return out[0], out[1], out[2]


def default_out_dir(data: str | Path) -> Path:
    """Where the report of a data file goes by default: ``constraintlab-report/`` beside it."""
    return Path(data).resolve().parent / "constraintlab-report"


@dataclass
class _Run:
    """One pass of the pipeline (what :func:`analyze` and :func:`order` share)."""

    examples: ExampleSet
    store: FeatureStore
    results: AnalysisResults
    report: Report
    out: Path | None


@contextlib.contextmanager
def _pipeline(data: Any, model: str | None, out: str | Path | None, read: ReadConfig | None,
              encode: EncodeConfig | None, analysis: AnalysisConfig | None,
              settings: dict[str, Any], ray: Any = None,
              cache: str | Path | bool | None = None) -> Iterator[_Run]:
    """Read, encode (reusing a matching store; on Ray when ``ray`` is a RayOptions) and
    analyse; the store lives until the block ends (a temporary directory when there is no
    ``out``; in the shared cache, :func:`~constraintlab.encode.cache.cache_dir`, unless
    ``cache`` is False)."""
    if model is not None:
        settings["model"] = model
    read_cfg, enc_cfg, ana_cfg = split_settings(settings, read=read, encode=encode,
                                                analysis=analysis)
    for field, problem in check_environment(enc_cfg):     # before reading or loading anything
        raise ConfigError(f"{field} {getattr(enc_cfg, field)!r}: {problem}")
    if ana_cfg.device == "cpu" and enc_cfg.device.startswith("cuda"):
        # the run's --device feeds the pass over X @ X.T unless the analysis names its own
        ana_cfg = dataclasses.replace(ana_cfg, device=enc_cfg.device)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    examples = data if isinstance(data, ExampleSet) else read_examples(data, read_cfg)
    timings["read"] = time.perf_counter() - t0
    if out is None and isinstance(data, str | Path):
        out = default_out_dir(data)
    shared = cache_dir(cache)
    with tempfile.TemporaryDirectory(prefix="constraintlab-") as tmp:
        if shared is not None:      # content-addressed: the same rows in any form, any --out
            key, data_hash = cache_key(enc_cfg, examples.examples)
            store_dir = shared / key
        else:
            root = Path(out) / "features" if out is not None else Path(tmp)
            data_hash = examples.content_hash
            store_dir = root / store_key(enc_cfg, data_hash)
        t0 = time.perf_counter()
        store = open_matching_store(store_dir, enc_cfg, data_hash, len(examples))
        reused = store is not None
        if reused:
            logger.info("reusing the feature store in %s", store_dir)
        else:
            try:
                store = extract(examples, enc_cfg, store_dir, content_hash=data_hash, ray=ray)
            except StoreMismatchError as err:
                # the directory is this tool's cache for these settings and data: a store left
                # there by another tool version or format is rebuilt (an unfinished store of
                # this very extraction is resumed by extract itself and never gets here)
                logger.warning("rebuilding the feature store in %s: %s", store_dir,
                               str(err).splitlines()[0])
                store = extract(examples, enc_cfg, store_dir, content_hash=data_hash,
                                overwrite=True, ray=ray)
        timings["extract"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        # the encoder leaves out records it cannot use (e.g. a target truncated away): analyse
        # the examples of the store's rows
        results = analyze_store(store, examples=store.select_examples(examples.examples),
                                config=ana_cfg)
        timings["analysis"] = time.perf_counter() - t0
        run = {"seconds": {k: round(v, 3) for k, v in timings.items()},
               "feature_store": str(store_dir) if out is not None or shared is not None
               else None,
               "feature_store_reused": reused}
        report = build_report(examples, store, results, run=run)
        yield _Run(examples, store, results, report, Path(out) if out is not None else None)


def analyze(data: Any, model: str | None = None, *, out: str | Path | None = None,
            read: ReadConfig | None = None, encode: EncodeConfig | None = None,
            analysis: AnalysisConfig | None = None, save: bool = True, ray: Any = None,
            cache: str | Path | bool | None = None, workers: int | None = None,
            gpus_per_worker: float | None = None,
            cpus_per_worker: float | None = None, **settings: Any) -> Report:
    """Read, encode and analyse a dataset; return (and save) its :class:`Report`.

    Parameters
    ----------
    data : path | list[dict] | pandas.DataFrame | datasets.Dataset | DatasetDict | ExampleSet
        The fine-tuning data (see :func:`constraintlab.io.read_examples`); a ``DatasetDict``
        with several splits needs ``split=`` (a :class:`ReadConfig` field).
    model : str, optional
        Hub id or local directory of a causal LM; default the built-in reference model.
    out : path, optional
        Report directory. Default for a file: ``constraintlab-report/`` beside it; for
        in-memory data no report is written unless ``out`` is given.
    cache : path or bool, optional
        The shared feature-store cache (default: ``$CONSTRAINTLAB_CACHE``, else
        ``~/.cache/constraintlab``; see :func:`~constraintlab.encode.cache.cache_dir`). A store
        is keyed by the examples as the encoder sees them, the model's weights and the encoder
        settings, so the same rows given as a path, a list or a ``datasets.Dataset`` reuse one
        store from any ``out``. ``False``: keep the store in ``out/features/<key>/`` (or a
        temporary directory) as before.
    read, encode, analysis : stage configs, optional
        Start from these instead of the defaults.
    save : bool
        Write the report files into ``out`` (default True when there is an ``out``); the
        report's ``path`` is then that directory.
    ray : str or RayOptions, optional
        Extract on Ray (``constraintlab[ray]``): ``"auto"``, ``"local"``, a cluster address
        or a :class:`~constraintlab.encode.distributed.RayOptions`; see ``extract``.
    workers, gpus_per_worker, cpus_per_worker : the Ray actor pool (only with ``ray``).
        None of the Ray settings changes the feature store or the report.
    **settings
        Any field of :class:`ReadConfig`, :class:`EncodeConfig` or :class:`AnalysisConfig`
        (``k=256``, ``lora_r=16``, ``tau=0.2``, ``on_invalid="skip"``...).

    Returns
    -------
    Report
    """
    from constraintlab.encode.distributed import ray_options as _ray_options

    ray_options = _ray_options(ray, workers=workers, gpus_per_worker=gpus_per_worker,
                               cpus_per_worker=cpus_per_worker)
    with _pipeline(data, model, out, read, encode, analysis, settings, ray=ray_options,
                   cache=cache) as run:
        report = run.report
    if run.out is not None and save:
        report.save(run.out)
        logger.info("report written to %s", run.out)
    return report


# -- order ---------------------------------------------------------------------------------------
def order_report_path(output: str | Path) -> Path:
    """``ORDERED.order.json`` beside ``ORDERED.jsonl``."""
    output = Path(output)
    return output.with_name(output.stem + ".order.json")


def record_lines(data: Any, ids: Sequence[int], split: str | None = None
                 ) -> tuple[list[bytes], str]:
    """The bytes to write for each example, in the given order.

    Parameters
    ----------
    data : path | list[dict] | datasets.Dataset | ExampleSet
        The data, or the ExampleSet read from it (then nothing is read again:
        :meth:`ExampleSet.record_bytes`).
    ids : sequence of int
        Example index (0-based record index) of each example, in output order.
    split : str, optional
        The split of a ``datasets.DatasetDict`` (``ReadConfig.split``).

    Returns
    -------
    chunks : list of bytes
        One line each, ending in ``\\n``. For a JSON Lines file, the original line bytes,
        unchanged (a UTF-8 byte-order mark at the start of the file is not part of a line);
        otherwise (``.json`` document, ``.csv``, ``.parquet``, ``.gz``, records in memory) one
        ``json.dumps(record, ensure_ascii=False)`` object per line.
    mode : str
        ``"original lines"`` or ``"json objects"``.
    """
    if isinstance(data, ExampleSet):
        return data.record_bytes(ids)
    from constraintlab.io.records import read_raw, record_bytes

    return record_bytes(read_raw(data, split), ids)


def refuse_input(output: Path, source: Any) -> None:
    """Refuse to write a result over the data file it was read from.

    Raises
    ------
    ConstraintlabError
        ``source`` is an existing file and ``output`` is that file.
    """
    if source and Path(str(source)).is_file() and output.resolve() == Path(str(source)).resolve():
        raise ConstraintlabError(f"{output}: refusing to overwrite the input; choose another "
                                 "output")


@dataclass
class OrderResult:
    """The records of a dataset in a training order, and what that order looks like.

    Attributes
    ----------
    strategy : str
        ``gradual``, ``zones`` or ``random`` (:mod:`constraintlab.analysis.order`).
    order : list of int
        Example ids (``Example.index``) in training order; every valid record exactly once.
    records : list of bytes
        The records to write, in that order, one line each (see :func:`record_lines`).
    written_as : str
        ``"original lines"`` (JSON Lines source) or ``"json objects"``.
    summary : dict
        The order report (JSON-ready): strategy, rule, seed, ``n_examples``,
        ``volatility_source``, ``volatility_weight``, ``path_metric``, ``chosen`` and
        ``random`` path metrics, ``path_length_ratio``, ``order``, then ``source``,
        ``written``, ``written_as``, ``skipped_records``, ``skipped`` and ``report_dir``.
    report : Report
        The analysis the order was made from (saved in ``report.path`` unless in memory).
    """

    strategy: str
    order: list[int]
    records: list[bytes]
    written_as: str
    summary: dict[str, Any]
    report: Report

    def write(self, output: str | Path) -> Path:
        """Write :attr:`records` to ``output`` (JSON Lines) and the summary, with ``output``
        added, to ``output``'s ``.order.json`` (:func:`order_report_path`); returns that path.

        Raises
        ------
        ConstraintlabError
            When ``output`` is the source file itself.
        """
        output = Path(output)
        refuse_input(output, self.summary.get("source"))
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(b"".join(self.records))
        doc: dict[str, Any] = {}
        for key, value in self.summary.items():
            doc[key] = value
            if key == "source":
                doc["output"] = str(output)
        path = order_report_path(output)
        path.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")
        return path


def order(data: Any, strategy: str = "gradual", *, order_seed: int = 0, model: str | None = None,
          out: str | Path | None = None, read: ReadConfig | None = None,
          encode: EncodeConfig | None = None, analysis: AnalysisConfig | None = None,
          save: bool = True, cache: str | Path | bool | None = None,
          **settings: Any) -> OrderResult:
    """Analyse a dataset (as :func:`analyze`) and put its records in a training order.

    Parameters
    ----------
    data : path | list[dict] | datasets.Dataset | ExampleSet
        The fine-tuning data.
    strategy : {"gradual", "zones", "random"}
        See :mod:`constraintlab.analysis.order` for the exact rules.
    order_seed : int
        Seed of the random order and of the random baseline it is compared with (``seed=``,
        its old name, still works with a DeprecationWarning).
    model, out, read, encode, analysis, save, cache, **settings
        As for :func:`analyze` (the report is saved in ``out`` and the feature store reused).

    Returns
    -------
    OrderResult
        Nothing is written until :meth:`OrderResult.write`.
    """
    if "seed" in settings:          # its old name (the order seed here, unlike analyze)
        import warnings

        warnings.warn("order(seed=) is now order_seed= (projection_seed= and analysis_seed= "
                      "name the other seeds)", DeprecationWarning, stacklevel=2)
        order_seed = settings.pop("seed")
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown order strategy {strategy!r}; choose one of "
                          f"{', '.join(STRATEGIES)}")
    with _pipeline(data, model, out, read, encode, analysis, settings, cache=cache) as run:
        results, examples = run.results, run.examples
        ids = np.asarray(results.ids, dtype=np.int64)
        # per-example findings of this analysis, plus the encoder's loss and gradient norm
        # (volatility fallbacks), in feature row order
        table = results.table()
        extra = [c for c in ("loss", "grad_norm")
                 if c in run.store.table.columns and c not in table.columns]
        table = table.join(run.store.table.set_index("index")[extra], how="left")
        rows, summary = plan_order(np.asarray(run.store.features), table, strategy=strategy,
                                   seed=order_seed, ids=ids, config=results.config)
        report = run.report
    if run.out is not None and save:
        report.save(run.out)
    out_ids = [int(i) for i in ids[rows]]
    records, mode = record_lines(examples, out_ids)      # the records already read
    skipped = [str(p) for p in examples.skipped]
    summary.update({"source": str(data) if isinstance(data, str | Path) else examples.source,
                    "written": len(records), "written_as": mode,
                    "skipped_records": len(skipped), "skipped": skipped,
                    "report_dir": str(report.path) if report.path is not None else None})
    return OrderResult(strategy=strategy, order=out_ids, records=records, written_as=mode,
                       summary=summary, report=report)
