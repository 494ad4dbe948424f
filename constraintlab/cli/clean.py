"""``constraintlab clean DATA -o CLEAN.jsonl``: the records worth training on, and why.

Calls :func:`constraintlab.clean` (the ``analyze`` pipeline with the same options, report
directory and feature store, then :func:`constraintlab.analysis.cleaning.plan_cleaning` on its
results) and writes what it returns (:meth:`constraintlab.actions.CleanResult.write`):

- ``CLEAN.jsonl``: the records kept and those left for review, in file order. For a JSON Lines
  source, the original line bytes, unchanged; otherwise one JSON object per line.
- ``CLEAN.decisions.jsonl``: one line per record: ``row``, ``line``, ``action`` (keep, drop,
  review, invalid), ``reason``, ``evidence``.

``--dry-run`` prints the decisions and writes neither file.
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

# = constraintlab.analysis.cleaning.{CONTRADICTION_POLICIES, FAMILY_POLICIES} (not imported:
# numba would load at CLI start; tests/test_clean_select.py checks they agree)
CONTRADICTION_POLICIES = ("review", "keep-less-suspect", "drop")
FAMILY_POLICIES = ("keep", "base")
_LISTED = 40     # decisions printed by --dry-run (all of them with -v)


def suspect_level(text: str) -> float | str:
    """``--suspect-level``: a score in (0, 1], or ``"off"`` (keep every suspect)."""
    if text.strip().lower() == "off":
        return "off"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number in (0, 1] or 'off', got {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1] or 'off', got {text!r}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "clean", help="write the records worth training on (duplicates and likely wrong "
                      "targets dropped) and a decision for every record",
        description="Analyse DATA like 'analyze' (same options; the feature store is reused), "
                    "then decide for every record: drop a redundant copy (the duplicate set's "
                    "keeper stays), drop a likely wrong target (suspect score at or above "
                    "--suspect-level), leave both members of a contradiction for review (kept "
                    "and marked; --contradictions to decide), keep variant families (--families "
                    "base to keep one per family). Writes the kept and review records unchanged "
                    "(JSON Lines sources: the original lines) and OUTPUT's .decisions.jsonl "
                    "(row, line, action, reason, evidence).")
    add_analyze_options(parser)
    c = parser.add_argument_group("clean")
    add_output_option(c, "CLEAN.jsonl", "kept")
    c.add_argument("--suspect-level", type=suspect_level, default=None, metavar="S|off",
                   help="drop an example whose suspect score (without the contradiction rule) "
                        "is at least S (default: the analysis' own flag level, 1 - "
                        "suspect_alpha = 0.99; on planted GSM8K sets it flagged 0.3-0.7 %% of "
                        "the clean rows at precision 0.93-0.99); 'off' keeps them")
    c.add_argument("--contradictions", default="review", choices=CONTRADICTION_POLICIES,
                   help="same input, another answer: keep both and mark them for review "
                        "(default), keep the less suspect member of each group, or drop both")
    c.add_argument("--families", default="keep", choices=FAMILY_POLICIES,
                   help="variant families: keep every member (default; deliberate variation) "
                        "or only each family's base")
    c.add_argument("--keep-duplicates", action="store_true",
                   help="do not drop redundant copies")
    c.add_argument("--dry-run", action="store_true",
                   help="print the decisions; write nothing (the report is still saved)")
    add_common_options(parser)
    parser.set_defaults(func=run)


def decision_lines(decisions: list[dict], limit: int | None) -> list[str]:
    """One printed line per decision that is not a plain keep."""
    out = []
    shown = [d for d in decisions if d["action"] != "keep" or d["reason"]]
    for d in shown[:limit]:
        ev = d["evidence"]
        bits = []
        if "keeper" in ev:
            bits.append(f"keeper {ev['keeper']}")
        if "suspect_score" in ev:
            bits.append(f"score {ev['suspect_score']:.4f} "
                        f"({', '.join(ev['suspect_reasons']) or 'combined signals'})")
        if "contradicts" in ev:
            bits.append("contradicts " + ", ".join(str(x) for x in ev["contradicts"]))
        if "base" in ev:
            bits.append(f"family {ev['family']}, base {ev['base']}")
        if "finding" in ev:
            bits.append(visible(ev["finding"]))
        row = "-" if d["row"] is None else d["row"]
        out.append(f"  line {d['line']:>6} row {row!s:>6}  {d['action']:<7} "
                   f"{d['reason']:<26} {'; '.join(bits)}")
    if limit is not None and len(shown) > limit:
        out.append(f"  ... {len(shown) - limit} more (-v lists all; the decisions file has "
                   "every record)")
    return out


def run(args: argparse.Namespace) -> int:
    import constraintlab
    from constraintlab.analysis.cleaning import CleanConfig

    output = checked_output(args.output, args.data)
    drop_suspects = args.suspect_level != "off"
    level = args.suspect_level if drop_suspects else None
    cfg = CleanConfig(suspect_level=level, drop_suspects=drop_suspects,
                      contradictions=args.contradictions, families=args.families,
                      drop_duplicates=not args.keep_duplicates)
    read, encode, analysis = configs_from_args(args)
    result = constraintlab.clean(args.data, config=cfg, out=args.out, read=read, encode=encode,
                                 analysis=analysis, cache=cache_from_args(args))
    s = result.summary
    path = None if args.dry_run else result.write(output)
    if not args.quiet:
        level_text = ("off" if s["suspect_level"] is None else f"{s['suspect_level']:g}")
        head = (f"constraintlab clean {visible(args.data)}: {s['examples']} examples: "
                f"{s['kept']} kept, {s['dropped']} dropped, {s['review']} for review"
                + (f"; {s['invalid']} invalid record(s) left out" if s["invalid"] else ""))
        lines = [head, f"suspect level {level_text}, contradictions {s['contradictions']}, "
                       f"families {s['families']}"
                       + (f"; not measured: {', '.join(s['not_measured'])}"
                          if s["not_measured"] else "")]
        if s["by_reason"]:
            lines.append("by reason: " + ", ".join(f"{k} {v}" for k, v in s["by_reason"].items()))
        lines += decision_lines(result.decisions, None if args.verbose else _LISTED)
        if path is None:
            lines.append(f"dry run: nothing written ({s['written']} records would go to "
                         f"{visible(output)})")
        else:
            lines.append(f"{s['written']} records ({s['written_as']}) -> {visible(output)}; "
                         f"decisions: {visible(path)}")
        echo(lines)
    return EXIT_OK
