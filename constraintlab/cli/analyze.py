"""``constraintlab analyze DATA``: the whole pipeline, a report, a terminal summary."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from constraintlab.cli._common import (
    EXIT_GATE_FAILED,
    EXIT_OK,
    add_analyze_options,
    add_common_options,
    add_ray_options,
    cache_from_args,
    configs_from_args,
    echo,
    echo_json,
    ray_options_from_args,
)

if TYPE_CHECKING:
    from constraintlab.report.report import Report


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "analyze", help="analyse a dataset as a system of constraints and write a report",
        description="Read DATA, compute every example's constraint (its LoRA gradient, "
                    "projected), and analyse them: rank and verdict, conflicts, duplicates, "
                    "contradictions, pressure zones. Writes report.json, examples.csv and "
                    "report.html into --out and prints a summary. A later run with the same "
                    "data and model settings reuses the feature store.")
    add_analyze_options(parser)
    add_ray_options(parser)
    parser.add_argument("--json", action="store_true",
                        help="print report.json to stdout instead of the summary")
    parser.add_argument("--fail-on", action="append", default=[], metavar="CONDITION",
                        help="also run the gate with this requirement, e.g. "
                             "'contradictions <= 5' (repeatable); exit 1 if one fails")
    add_common_options(parser)
    parser.set_defaults(func=run)


def run_analysis(args: argparse.Namespace) -> Report:
    """:func:`constraintlab.analyze` with the configs the options describe (built once).

    The report lands in ``--out`` (default ``constraintlab-report/`` beside DATA); the returned
    report knows where (``report.path``). ``args`` is not changed.
    """
    import constraintlab

    read, encode, analysis = configs_from_args(args)
    return constraintlab.analyze(args.data, out=args.out, read=read, encode=encode,
                                 analysis=analysis, ray=ray_options_from_args(args),
                                 cache=cache_from_args(args))


def fix_line(metrics: dict) -> str:
    """:func:`constraintlab.report.terminal.fix_line` (loaded on first use)."""
    from constraintlab.report.terminal import fix_line as _fix_line

    return _fix_line(metrics)


def summary_lines(report: Report, out: str | Path | None = None, *,
                  verbose: bool = False) -> list[str]:
    """The terminal summary, each section's lines declared beside it
    (:func:`constraintlab.report.terminal.summary_lines`)."""
    from constraintlab.report.terminal import summary_lines as _summary_lines

    return _summary_lines(report, out, verbose=verbose)


def run(args: argparse.Namespace) -> int:
    from constraintlab.gate import check, passed, text_summary

    report = run_analysis(args)
    if args.json:
        echo_json(report.to_json())
    elif not args.quiet:
        echo(summary_lines(report, verbose=args.verbose > 0))
    if args.fail_on:
        checks, origin = check(report, fail_on=args.fail_on)
        echo(text_summary(checks, origin), file=sys.stderr if args.json else sys.stdout)
        return EXIT_OK if passed(checks) else EXIT_GATE_FAILED
    return EXIT_OK
