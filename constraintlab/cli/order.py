"""``constraintlab order DATA -o ORDERED.jsonl``: the same records in a training order.

Runs the ``analyze`` pipeline (same options, same report directory and feature store), orders
the examples with :func:`constraintlab.analysis.order.order_examples` and writes:

- ``ORDERED.jsonl``: every valid record exactly once. For a JSON Lines source, the original line
  bytes, unchanged (a UTF-8 byte-order mark at the start of the file is not part of a line);
  for a ``.json`` document or ``.parquet`` file, one ``json.dumps(record, ensure_ascii=False)``
  object per line. Records skipped as invalid (``--on-invalid skip``) are left out and counted.
- ``ORDERED.order.json``: strategy, rule, seed, the order (example ids) and the path metrics of
  the chosen order next to a random one with the same seed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

from constraintlab.cli.analyze import add_analyze_options, run_analysis
from constraintlab.cli.main import EXIT_OK, add_common_options
from constraintlab.errors import ConstraintlabError

if TYPE_CHECKING:
    import numpy as np


def _analysis_config(report):
    """The :class:`AnalysisConfig` the report was made with (from ``analysis_config``)."""
    from constraintlab.analysis import AnalysisConfig

    names = {f.name for f in dataclasses.fields(AnalysisConfig)}
    return AnalysisConfig(**{k: v for k, v in report.data["analysis_config"].items()
                             if k in names})


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "order", help="write the records in a training order (gradual, by zones, or random)",
        description="Analyse DATA like 'analyze' (same options; the feature store is reused), "
                    "then write every valid record exactly once, unchanged, in a new order: "
                    "'gradual' starts from the examples the model already predicts best (low "
                    "loss) and moves by small steps in constraint space, keeping duplicate "
                    "families together; 'zones' trains one zone after another, easiest first; "
                    "'random' is a seeded shuffle. Also writes OUTPUT's .order.json: the order "
                    "and its path length, largest step and volatility trend next to a random "
                    "order.")
    add_analyze_options(parser)
    o = parser.add_argument_group("order")
    o.add_argument("-o", "--output", required=True, metavar="ORDERED.jsonl",
                   help="where to write the reordered records (JSON Lines)")
    o.add_argument("--strategy", default="gradual", choices=["gradual", "zones", "random"],
                   help="ordering strategy (default gradual)")
    o.add_argument("--order-seed", type=int, default=0, metavar="N",
                   help="seed of the random order and of the random baseline (default 0; "
                        "--seed is the projection seed)")
    add_common_options(parser)
    parser.set_defaults(func=run)


def order_report_path(output: str | Path) -> Path:
    """``ORDERED.order.json`` beside ``ORDERED.jsonl``."""
    output = Path(output)
    return output.with_name(output.stem + ".order.json")


def record_lines(source: str | Path, ids: list[int], lines: list[int]) -> tuple[list[bytes], str]:
    """The bytes to write for each example, in the given order.

    Parameters
    ----------
    source : path
        The data file.
    ids, lines : list of int
        Example index (0-based record index) and 1-based line of each example, in output order.

    Returns
    -------
    chunks : list of bytes
        One line each, ending in ``\\n``.
    mode : str
        ``"original lines"`` (JSON Lines source) or ``"json objects"``.
    """
    from constraintlab.io.records import read_raw

    path = Path(source)
    raw = read_raw(path)
    if path.suffix.lower() != ".parquet" and not raw.indexed:
        data = path.read_bytes()
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        file_lines = data.split(b"\n")
        return [file_lines[line - 1] + b"\n" for line in lines], "original lines"
    return [(json.dumps(raw.records[i].value, ensure_ascii=False, default=str) + "\n")
            .encode("utf-8") for i in ids], "json objects"


def table_lines(rep: dict) -> list[str]:
    """The printed comparison of the chosen order with the random one."""
    c, r = rep["chosen"], rep["random"]

    def q(m: dict) -> str:
        return " ".join(f"{v:.3g}" for v in m["volatility_by_quarter"])

    def rho(m: dict) -> str:
        return "n/a" if m["volatility_spearman"] is None else f"{m['volatility_spearman']:+.3f}"

    name = rep["strategy"]
    return [f"{'':<28}{name:>14}{'random':>14}",
            f"{'path length':<28}{c['path_length']:>14.3f}{r['path_length']:>14.3f}",
            f"{'mean step':<28}{c['mean_step']:>14.4f}{r['mean_step']:>14.4f}",
            f"{'largest step':<28}{c['max_step']:>14.4f}{r['max_step']:>14.4f}",
            f"{'volatility trend (Spearman)':<28}{rho(c):>14}{rho(r):>14}",
            f"volatility by quarter ({rep['volatility_source']}): {name} [{q(c)}], "
            f"random [{q(r)}]",
            rep["path_metric"]]


def _units(ex) -> np.ndarray | None:
    """Rows kept together: variant families first, then duplicate sets (labels >= 0)."""
    import numpy as np

    fam = (ex["family"].fillna(-1).to_numpy(dtype=np.int64) if "family" in ex
           else np.full(len(ex), -1, np.int64))
    dup = (ex["duplicate_set"].fillna(-1).to_numpy(dtype=np.int64) if "duplicate_set" in ex
           else np.full(len(ex), -1, np.int64))
    if (fam < 0).all() and (dup < 0).all():
        return None if "duplicate_set" not in ex else dup
    return np.where(fam >= 0, fam, np.where(dup >= 0, dup + fam.max() + 1, -1))


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from constraintlab.analysis.order import order_examples, order_report, volatility_proxy
    from constraintlab.encode import FeatureStore

    output = Path(args.output)
    if output.resolve() == Path(args.data).resolve():
        raise ConstraintlabError(f"{output}: refusing to overwrite the input; choose another -o")
    report = run_analysis(args)
    store_dir = report.data["run"].get("feature_store")
    if not store_dir:
        raise ConstraintlabError("the analysis kept no feature store to order by")
    store = FeatureStore.open(store_dir)
    ids = store.table["index"].to_numpy(dtype=np.int64)
    ex = report.examples.reindex(ids)
    features = np.asarray(store.features)
    volatility, source = volatility_proxy(ex, features)
    zones = ex["zone"].fillna(-1).to_numpy(dtype=np.int64) if "zone" in ex else None
    families = _units(ex)
    cfg = _analysis_config(report)
    order = order_examples(features, volatility, strategy=args.strategy, zones=zones,
                           families=families, seed=args.order_seed, config=cfg)
    rep = order_report(features, volatility, order, strategy=args.strategy,
                       seed=args.order_seed, ids=ids, volatility_source=source, config=cfg)
    out_ids = [int(i) for i in ids[order]]
    lines = ex["line"].to_numpy(dtype=np.int64)[order].tolist()
    chunks, mode = record_lines(args.data, out_ids, lines)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(b"".join(chunks))
    skipped = report.data["dataset"]["skipped"]
    rep.update({"source": str(args.data), "output": str(output), "written": len(chunks),
                "written_as": mode, "skipped_records": len(skipped), "skipped": skipped,
                "report_dir": str(args.out)})
    path = order_report_path(output)
    path.write_text(json.dumps(rep, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    if not args.quiet:
        print(f"constraintlab order {args.data}: {len(chunks)} records ({mode}) in "
              f"{args.strategy} order -> {output}"
              + (f"; {len(skipped)} invalid record(s) skipped and left out" if skipped else ""))
        print("")
        print("\n".join(table_lines(rep)))
        print("")
        print(f"order report: {path}")
    return EXIT_OK

