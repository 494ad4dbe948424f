"""``constraintlab select DATA --budget F [--target DEV] -o SUBSET.jsonl``: a subset to train on.

Calls :func:`constraintlab.select` (the ``analyze`` pipeline with the same options, report
directory and feature store, then :func:`constraintlab.analysis.selection.rank_rows` on the
constraint rows) and writes what it returns (:meth:`constraintlab.actions.SelectResult.write`):

- ``SUBSET.jsonl``: the selected records in file order (JSON Lines sources: the original line
  bytes, unchanged; otherwise one JSON object per line).
- ``SUBSET.select.json``: method, rule, budget, the selected ids, the full ranking and the
  scores.

Without ``--target``: the examples that keep the constraint matrix's directions (kernel herding
on the unit rows by default, ``--method qr`` or ``--method leverage``); with ``--target DEV``:
the examples whose constraint rows align with DEV's (LESS-style cosine, mean over DEV's rows, or
``--target-score max``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

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
from constraintlab.errors import ConfigError

# = constraintlab.analysis.selection.{METHODS, TARGET_SCORES} and SelectConfig's default
# method (not imported: numba would load at CLI start; tests/test_clean_select.py checks)
METHODS = ("herding", "qr", "leverage")
DEFAULT_METHOD = "herding"
TARGET_SCORES = ("mean", "max")


def budget(text: str) -> float | int:
    """``--budget``: an integer is a count (>= 1); a number with a decimal point, or below 1,
    a fraction in (0, 1] (``1.0`` = every example, ``1`` = one example)."""
    t = text.strip()
    try:
        if t.isdigit():
            value: float | int = int(t)
            if value < 1:
                raise ValueError
            return value
        value = float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a fraction in (0, 1] (e.g. 0.3) or a count (e.g. 200), got {text!r}"
        ) from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(
            f"expected a fraction in (0, 1] (e.g. 0.3) or a count (e.g. 200), got {text!r}")
    return value


def seed(text: str) -> int:
    """``--select-seed``: a non-negative integer."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a non-negative integer")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "select", help="write a subset under a budget: the examples that keep the data's "
                       "directions, or those closest to a target set",
        description="Analyse DATA like 'analyze' (same options; the feature store is reused), "
                    "then choose --budget examples. Without --target: the examples that keep "
                    "the constraint matrix's directions (kernel herding on the unit-length "
                    "projected gradients: each next example brings the mean direction of "
                    "those chosen closest to the data's; --method qr: QR with column "
                    "pivoting, each next example has the largest direction outside the span "
                    "of those chosen; --method leverage: rank-r leverage). With --target DEV: "
                    "the examples whose projected gradients align with DEV's (LESS-style: "
                    "mean cosine over DEV's examples; --target-score max). Writes the chosen "
                    "records unchanged, in file order, and OUTPUT's .select.json.")
    add_analyze_options(parser)
    s = parser.add_argument_group("select")
    add_output_option(s, "SUBSET.jsonl", "selected")
    s.add_argument("--budget", required=True, type=budget, metavar="F|N",
                   help="a fraction in (0, 1] (0.3 = 30 %% of the examples) or a count (200)")
    s.add_argument("--target", default=None, metavar="DEV",
                   help="a target set (same formats as DATA): choose the examples closest to "
                        "it, encoded with the same model and projection")
    s.add_argument("--method", default=DEFAULT_METHOD, choices=METHODS,
                   help=f"without --target: {', '.join(METHODS)} (default "
                        f"{DEFAULT_METHOD})")
    s.add_argument("--target-score", default="mean", choices=TARGET_SCORES,
                   help="with --target: mean (default) or max cosine over its examples")
    s.add_argument("--target-center", action=argparse.BooleanOptionalAction, default=None,
                   help="with --target: remove the data's mean unit direction from every "
                        "row before the cosine (default: SelectConfig.target_center)")
    s.add_argument("--select-seed", type=seed, default=0, metavar="S",
                   help="seed of herding's random blocks (only above herding_block_rows = "
                        "8,192 examples)")
    add_common_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import constraintlab

    output = checked_output(args.output, args.data, args.target)
    if args.target is not None and not Path(args.target).exists():
        raise ConfigError(f"--target {args.target}: no such file")
    read, encode, analysis = configs_from_args(args)
    result = constraintlab.select(args.data, args.budget, target=args.target,
                                  method=args.method, target_score=args.target_score,
                                  target_center=args.target_center,
                                  select_seed=args.select_seed,
                                  out=args.out, read=read, encode=encode, analysis=analysis,
                                  cache=cache_from_args(args))
    path = result.write(output)
    if not args.quiet:
        s = result.summary
        echo([f"constraintlab select {visible(args.data)}: {s['n_selected']} of "
              f"{s['n_examples']} examples ({s['method']}) -> {visible(output)}"
              + (f"; {s['skipped_records']} invalid record(s) left out"
                 if s["skipped_records"] else ""),
              f"rule: {s['rule']}",
              f"selection report: {visible(path)}"])
    return EXIT_OK
