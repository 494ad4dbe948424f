"""``constraintlab gate DATA``: pass/fail conditions on a dataset's report, for CI."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from constraintlab.cli._common import (
    EXIT_GATE_FAILED,
    EXIT_OK,
    add_analyze_options,
    add_common_options,
    configs_from_args,
)
from constraintlab.gate import (
    check,
    check_names,
    load_conditions,
    markdown_summary,
    passed,
    text_summary,
)
from constraintlab.report.report import FILES, METRICS, Report


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "gate", help="check a dataset against declared conditions (exit 1 when one fails)",
        description=textwrap.fill(
                    "Analyse DATA (or read an existing report: DATA may be a report directory "
                    "or its report.json) and check the conditions declared with --fail-on, in "
                    "--config, in constraintlab.toml ([gate] require = [...]) or in "
                    "pyproject.toml ([tool.constraintlab.gate] require = [...]). Each "
                    "condition is METRIC OP VALUE, e.g. 'exact_duplicates == 0', "
                    "'conflict_density < 0.02', 'verdict != \"underdetermined\"'. Prints "
                    "PASS/FAIL per condition; exit 0 when all hold, 1 when one fails, 2 on a "
                    "usage, config or input error.", width=90),
        epilog="metrics:\n" + "\n".join(f"  {k:<24} {v}" for k, v in METRICS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_analyze_options(parser)
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="TOML file with the conditions (pyproject.toml or "
                             "constraintlab.toml)")
    parser.add_argument("--fail-on", action="append", default=[], metavar="CONDITION",
                        help="a requirement, e.g. 'contradictions <= 5' (repeatable; replaces "
                             "the config file's)")
    parser.add_argument("--summary-md", metavar="FILE", default=None,
                        help="also write a Markdown summary (e.g. $GITHUB_STEP_SUMMARY)")
    add_common_options(parser)
    parser.set_defaults(func=run)


def _load_or_analyze(args: argparse.Namespace) -> Report:
    """DATA as a report directory / report.json (loaded), or a dataset (analysed)."""
    path = Path(args.data)
    if path.is_dir() or path.name == FILES["json"]:
        return Report.load(path)
    import constraintlab

    read, encode, analysis = configs_from_args(args)
    return constraintlab.analyze(args.data, out=args.out, read=read, encode=encode,
                                 analysis=analysis)


def run(args: argparse.Namespace) -> int:
    # Check the conditions first: a broken config fails fast, before any model is loaded.
    check_names(load_conditions(fail_on=args.fail_on, config=args.config)[0], list(METRICS))
    report = _load_or_analyze(args)
    checks, origin = check(report, fail_on=args.fail_on, config=args.config)
    if not args.quiet:
        print(report.verdict())
    print(text_summary(checks, origin))
    if args.summary_md:
        Path(args.summary_md).write_text(
            markdown_summary(checks, title=report.data["dataset"]["source"], origin=origin),
            encoding="utf-8")
    return EXIT_OK if passed(checks) else EXIT_GATE_FAILED
