"""``constraintlab analyze DATA``: the whole pipeline, a report, a terminal summary."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from constraintlab._text import visible
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


#: What the first line counts: (metric, one, many); a null metric reads "not measured".
TO_FIX = (("contradictions", "contradiction pair", "contradiction pairs"),
          ("duplicates", "duplicate row", "duplicate rows"),
          ("suspects", "likely wrong target", "likely wrong targets"),
          ("incoherent_families", "incoherent variant family", "incoherent variant families"))


def fix_line(metrics: dict) -> str:
    """One plain line of what to fix, from the report's numbers: ``To fix: 7 contradiction
    pairs, 4 duplicate rows, 2 likely wrong targets`` (counts of 0 left out, a null count
    "not measured"; unusable records skipped on reading come last)."""
    found, unmeasured = [], []
    for key, one, many in TO_FIX:
        value = metrics.get(key)
        if value is None:
            unmeasured.append(many)
        elif value:
            found.append(f"{value} {one if value == 1 else many}")
    bad = metrics.get("invalid_records") or 0
    if bad:
        found.append(f"{bad} unusable record{'' if bad == 1 else 's'} (skipped)")
    text = ("To fix: " + ", ".join(found)) if found else (
        "Nothing to fix found: no contradiction pairs, duplicate rows or likely wrong targets")
    if unmeasured:
        text += f"; {', '.join(unmeasured)}: not measured"
    return text


def action_lines(report: Report, width: int = 100) -> list[str]:
    """``What to do next:`` and the report's advice (``advice.items``), numbered, wrapped."""
    items = (report.data.get("advice") or {}).get("items") or []
    if not items:
        return []
    lines = ["What to do next:"]
    for i, item in enumerate(items, 1):
        lines += textwrap.wrap(visible(item), width=width, initial_indent=f"  {i}. ",
                               subsequent_indent="     ")
    return lines


def summary_lines(report: Report, out: str | Path | None = None, *,
                  verbose: bool = False) -> list[str]:
    """The terminal summary: what to fix (one line), what to do next (the advice, with record
    ids), the numbers, where the report is (``out``, default ``report.path``); the verdict
    sentence with ``verbose`` (``-v``)."""
    m, d = report.metrics(), report.data
    model = d["model"]
    name = model["name"] + (f" v{model['version']}" if model.get("version") else "")
    read_cfg = d["dataset"].get("read_config") or {}
    subset = (f", the first {read_cfg['limit']} records" if read_cfg.get("limit") else
              f", {read_cfg['sample']} records drawn (seed {read_cfg.get('sample_seed', 0)})"
              if read_cfg.get("sample") else "")
    lines = [f"constraintlab analyze {visible(d['dataset']['source'])}  (model {visible(name)}, "
             f"k = {d['projection']['k']}, {m['examples']} examples{subset}"
             + (f", {m['invalid_records']} invalid records skipped"
                if m["invalid_records"] else "") + ")",
             "", fix_line(m), *_capability_lines(d), "", *action_lines(report), "",
             f"  effective rank   {m['effective_rank']:>10.1f}   of {m['examples']} examples "
             f"(rank {m['rank']}{', lower bound' if m['rank_is_lower_bound'] else ''}; "
             f"P = {m['unknowns']:,} unknowns)",
             *_interference_lines(m, d),
             f"  duplicates       {m['duplicates']:>10d}   {m['exact_duplicates']} exact, "
             f"{m['near_duplicates']} near",
             f"  contradictions   {m['contradictions']:>10d}   pairs (same input, different "
             "target)",
             f"  pressure zones   {m['pressure_zones']:>10d}   of {m['zones']} zones",
             *_new_lines(m, d), "", *_finding_lines(d["dataset"])]
    if verbose:
        lines += [*textwrap.wrap(visible(report.verdict()), width=100), ""]
    if model.get("note"):
        lines.append(f"note: {visible(model['note'])}")
    out = Path(out if out is not None else report.path)
    lines.append(f"report: {visible(out / 'report.html')}  (also report.json, examples.csv)")
    return lines


def _interference_lines(m: dict, d: dict) -> list[str]:
    inter, g = d.get("interference"), d.get("growth")
    lines = []
    if g:
        slope = g.get("slope_per_100")
        lines.append(f"  growth           {g['verdict']!s:>10}   "
                     + (f"+{slope:.1f} directions per 100 examples, elasticity "
                        f"{g['elasticity']:.2f}" if slope is not None and g.get("elasticity")
                        is not None else visible(g["reason"])))
    if inter and inter.get("interference_excess") is not None:
        limited = ((d.get("suspects") or {}).get("capability") or {}).get("limited")
        lines.append(f"  interference     {m['interference_excess']:>9.2f}x   its null "
                     f"({'above' if m['interference_above_null'] else 'near'} the data's own "
                     "baseline" + ("; from a model that barely conditions on the input, it "
                                   "restates that the model does not know this data)"
                                   if limited else ")"))
    return lines


def _capability_lines(d: dict) -> list[str]:
    """The capability statement right under the verdict, when it fires."""
    cap = (d.get("suspects") or {}).get("capability") or {}
    return [f"model capability: {visible(cap['message'])}"] if cap.get("limited") else []


def _finding_lines(ds: dict, limit: int = 10) -> list[str]:
    """The records left out, ``path:line: reason`` each (the first ``limit``)."""
    findings = ds.get("findings") or []
    if not findings:
        return []
    lines = [f"records left out ({len(findings)}, gate metric invalid_records):"]
    for f in findings[:limit]:
        where = f"{f['source']}:{f['line']}" if f.get("line") else str(f["source"])
        lines.append(f"  {visible(where)}: {visible(f['message'])}")
    if len(findings) > limit:
        lines.append(f"  ... and {len(findings) - limit} more (report.json dataset.findings)")
    return [*lines, ""]


def _new_lines(m: dict, d: dict) -> list[str]:
    """Volatility, families and layer map lines (each only when the report has it)."""
    lines = []
    sus = d.get("suspects")
    cap = (sus or {}).get("capability") or {}
    if sus:
        why = ", ".join(f"{visible(k)} {v}" for k, v in sus["reasons"].items() if v)
        if sus.get("suspects") is None:
            lines.append(f"  suspects     {'not measured':>14}   the model cannot judge this "
                         f"data (capability above); {sus.get('flagged', 0)} flagged by the "
                         f"checks that ran{' (' + why + ')' if why else ''}")
        else:
            lines.append(f"  suspects         {m['suspects']:>10d}   {m['suspect_share']:.1%} "
                         f"of the examples{' (' + why + ')' if why else ''}")
    if d.get("volatility"):
        lines.append(f"  volatility p99   {m['volatility_p99']:>10.3f}   max "
                     f"{m['max_volatility']:.3f} (0 = predicted, 1 = unknown to the model"
                     + ("; here it restates that the model does not know this text)"
                        if cap.get("predicts_targets") is False else ")"))
    if d.get("families"):
        lines.append(f"  variant families {m['families']:>10d}   {m['incoherent_families']} "
                     f"incoherent ({m['family_members']} examples)")
    lm = d.get("layer_map")
    if lm and lm["dataset"]["top_layer"] is not None:
        ds = lm["dataset"]
        layer_share = ds["by_layer"][lm["layers"].index(ds["top_layer"])]
        kind_share = ds["by_kind"][lm["kinds"].index(ds["top_kind"])]
        top = f"layer {ds['top_layer']}"
        lines.append(f"  layer map        {top:>10}   {layer_share:.0%} of the squared gradient "
                     f"norm; {ds['top_kind']} {kind_share:.0%}")
    return lines


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
