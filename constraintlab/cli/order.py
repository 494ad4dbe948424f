"""``constraintlab order DATA -o ORDERED.jsonl``: the same records in a training order.

Calls :func:`constraintlab.order` (the ``analyze`` pipeline with the same options, report
directory and feature store, then :func:`constraintlab.analysis.order.order_examples` on its
results) and writes what it returns (:meth:`constraintlab.api.OrderResult.write`):

- ``ORDERED.jsonl``: every valid record exactly once. For a JSON Lines source, the original line
  bytes, unchanged (a UTF-8 byte-order mark at the start of the file is not part of a line);
  for a ``.json`` document or ``.parquet`` file, one ``json.dumps(record, ensure_ascii=False)``
  object per line. Records skipped as invalid (``--on-invalid skip``) are left out and counted.
- ``ORDERED.order.json``: strategy, rule, seed, the order (example ids) and the path metrics of
  the chosen order next to a random one with the same seed.
"""

from __future__ import annotations

import argparse

from constraintlab._text import visible
from constraintlab.cli._common import (
    EXIT_OK,
    add_analyze_options,
    add_common_options,
    add_output_option,
    cache_from_args,
    checked_output,
    configs_from_args,
    echo,
)

# = constraintlab.analysis.order.STRATEGIES (not imported: numba would load at CLI start;
# tests/test_order.py checks they agree)
STRATEGIES = ("gradual", "zones", "random")


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
    add_output_option(o, "ORDERED.jsonl", "reordered")
    o.add_argument("--strategy", default="gradual", choices=STRATEGIES,
                   help="ordering strategy (default gradual)")
    o.add_argument("--order-seed", type=int, default=0, metavar="N",
                   help="seed of the random order and of the random baseline (default 0; "
                        "--projection-seed is the projection seed)")
    add_common_options(parser)
    parser.set_defaults(func=run)


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


def run(args: argparse.Namespace) -> int:
    import constraintlab

    output = checked_output(args.output, args.data)
    read, encode, analysis = configs_from_args(args)
    result = constraintlab.order(args.data, args.strategy, order_seed=args.order_seed, out=args.out,
                                 read=read, encode=encode, analysis=analysis,
                                 cache=cache_from_args(args))
    path = result.write(output)
    rep, skipped = result.summary, result.summary["skipped"]
    if not args.quiet:
        echo([f"constraintlab order {visible(args.data)}: {rep['written']} records "
              f"({rep['written_as']}) in {args.strategy} order -> {visible(output)}"
              + (f"; {len(skipped)} invalid record(s) skipped and left out" if skipped else ""),
              "", *table_lines(rep), "", f"order report: {visible(path)}"])
    return EXIT_OK
