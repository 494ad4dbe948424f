"""``constraintlab gate DATA``: pass/fail conditions on a dataset's report, for CI."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from constraintlab._text import visible
from constraintlab.cli._common import (
    EXIT_GATE_FAILED,
    EXIT_OK,
    add_analyze_options,
    add_common_options,
    cache_from_args,
    configs_from_args,
    echo,
)
from constraintlab.errors import ConfigError
from constraintlab.gate import (
    check,
    check_names,
    load_conditions,
    load_report,
    markdown_summary,
    passed,
    text_summary,
)
from constraintlab.report.report import FILES, METRICS, Report, metric_table


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "gate", help="check a dataset against declared conditions (exit 1 when one fails)",
        description=textwrap.fill(
                    "Analyse DATA (or read an existing report: DATA may be a report directory "
                    "or its report.json) and check the conditions declared with --fail-on, in "
                    "--config, in constraintlab.toml ([gate] require = [...]) or in "
                    "pyproject.toml ([tool.constraintlab.gate] require = [...]). Each "
                    "condition is METRIC OP VALUE, e.g. 'exact_duplicates == 0', "
                    "'interference_excess < 1.15', 'consistency != \"inconsistent\"'. Prints "
                    "PASS/FAIL per condition; exit 0 when all hold, 1 when one fails, 2 on a "
                    "usage, config or input error.", width=90),
        epilog="metrics (report.json section.key: meaning):\n" + "\n".join(
            f"  {k:<24} {sec}.{key}: {desc}" for k, (sec, key, desc) in metric_table().items()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_analyze_options(parser)
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="TOML file with the conditions (pyproject.toml or "
                             "constraintlab.toml)")
    parser.add_argument("--fail-on", action="append", default=[], metavar="CONDITION",
                        help="a requirement, e.g. 'contradictions <= 5' (repeatable; replaces "
                             "the config file's)")
    parser.add_argument("--summary-md", metavar="FILE", default=None,
                        help="also append a Markdown summary to FILE (created if missing; its "
                             "folder must exist), e.g. $GITHUB_STEP_SUMMARY; text from the "
                             "data is escaped")
    add_common_options(parser)
    parser.set_defaults(func=run)


def _load_or_analyze(args: argparse.Namespace) -> Report:
    """DATA as a report directory / report.json (loaded), or a dataset (analysed)."""
    path = Path(args.data)
    if path.is_dir() or path.name == FILES["json"]:
        return load_report(path)
    import constraintlab

    read, encode, analysis = configs_from_args(args)
    return constraintlab.analyze(args.data, out=args.out, read=read, encode=encode,
                                 analysis=analysis, cache=cache_from_args(args))


def summary_md_path(value: str | None) -> Path | None:
    """``--summary-md FILE`` checked before any work: not a directory, its folder exists (the
    gate does not create folders: a mistyped path fails instead of writing elsewhere)."""
    if value is None:
        return None
    path = Path(value)
    if path.is_dir():
        raise ConfigError(f"--summary-md {path}: is a directory; give a file (e.g. "
                          "\"$GITHUB_STEP_SUMMARY\")")
    if not path.parent.is_dir():
        raise ConfigError(f"--summary-md {path}: the folder {path.parent} does not exist")
    return path


def append_summary(path: Path, text: str) -> None:
    """Append ``text`` to ``path`` (what was there before is kept, as CI job summaries
    expect); an unwritable file is a ConfigError."""
    try:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as err:
        raise ConfigError(f"--summary-md {path}: cannot write it: {err.strerror or err}") \
            from None


def run(args: argparse.Namespace) -> int:
    # Check the conditions and --summary-md first: a broken config fails fast, before any
    # model is loaded.
    check_names(load_conditions(fail_on=args.fail_on, config=args.config)[0], list(METRICS))
    summary_md = summary_md_path(args.summary_md)
    report = _load_or_analyze(args)
    checks, origin = check(report, fail_on=args.fail_on, config=args.config)
    if not args.quiet:
        echo(visible(report.verdict()))
    echo(text_summary(checks, origin))
    if summary_md is not None:
        source = (report.data.get("dataset") or {}).get("source", args.data)
        append_summary(summary_md, markdown_summary(checks, title=str(source), origin=origin))
    return EXIT_OK if passed(checks) else EXIT_GATE_FAILED
