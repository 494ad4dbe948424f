"""``constraintlab probe DATA --examples IDS | --zone Z``: what would training on them do?"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from constraintlab._text import visible
from constraintlab.cli._common import (
    EXIT_OK,
    add_common_options,
    add_encode_options,
    add_field_flags,
    add_read_options,
    echo,
    echo_json,
    encode_config_from_args,
    named_by_flag,
    read_config_from_args,
)
from constraintlab.errors import ConfigError
from constraintlab.probe.config import ProbeConfig

if TYPE_CHECKING:
    from constraintlab.encode.config import EncodeConfig
    from constraintlab.io import ReadConfig
    from constraintlab.report.report import Report

#: ProbeConfig fields without a flag (``betas``, ``eps``: AdamW's usual values, library only).
PROBE_FLAGS = ("probe_size", "seed", "top_tokens", "optimizer", "steps", "lr", "weight_decay")


def _probe_flag(field: str) -> tuple[str, ...]:
    """``seed`` -> ``--probe-seed`` (``--projection-seed`` is the projection's)."""
    return ("--probe-seed",) if field == "seed" else ("--" + field.replace("_", "-"),)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "probe", help="take a real LoRA update on some examples and measure its effect",
        description="Take a few real optimiser steps of the LoRA adapter on the chosen examples "
                    "(--examples or a zone of an analysis report), then measure on a probe set: "
                    "the change of each probe example's loss next to the first-order "
                    "prediction, the target tokens whose probability moved most, and the drift "
                    "of the hidden states per layer. The adapter is restored afterwards; no "
                    "weights are written unless --save-adapter is given.")
    add_read_options(parser)
    s = parser.add_argument_group("what to train on and what to measure")
    which = s.add_mutually_exclusive_group()
    which.add_argument("--examples", metavar="IDS", default=None,
                       help="record indices to train on, as in reports: 3,17,42")
    which.add_argument("--zone", type=int, metavar="Z", default=None,
                       help="train on the members of zone Z of the analysis report")
    s.add_argument("--report", metavar="DIR", default=None,
                   help="analyze output directory that defines --zone (default: run the "
                        "analysis with default analysis settings, writing its report beside "
                        "DATA as 'constraintlab analyze' does)")
    s.add_argument("--probe", metavar="PROBE", default=None, dest="probe_data",
                   help="probe set file (read like DATA); default: a sample of the rest of DATA")
    add_field_flags(s, ProbeConfig, ("probe_size", "seed", "top_tokens"), _probe_flag)
    u = parser.add_argument_group("the update")
    add_field_flags(u, ProbeConfig, ("optimizer", "steps", "lr", "weight_decay"), _probe_flag)
    o = parser.add_argument_group("results")
    o.add_argument("--out", metavar="FILE", default=None, help="write the result as JSON here")
    o.add_argument("--json", action="store_true",
                   help="print the JSON result to stdout instead of the summary")
    o.add_argument("--save-adapter", metavar="DIR", default=None,
                   help="also save the updated adapter (peft save_pretrained) into DIR")
    add_encode_options(parser)
    add_common_options(parser)
    parser.set_defaults(func=run)


def probe_config_from_args(args: argparse.Namespace) -> ProbeConfig:
    """The :class:`ProbeConfig` the parsed options describe; a ConfigError names the flag."""
    try:
        return ProbeConfig(**{n: getattr(args, n) for n in PROBE_FLAGS})
    except ConfigError as err:
        raise named_by_flag(err, ProbeConfig, _probe_flag) from None


def _zone_report(args: argparse.Namespace, read: ReadConfig, encode: EncodeConfig
                 ) -> Report | Path:
    """The report that defines ``--zone``: ``--report`` (its directory; loaded by the probe), or
    a fresh analysis of DATA with the default analysis settings (saved beside DATA as
    ``constraintlab analyze`` does)."""
    if args.report is not None:
        path = Path(args.report)
        if not (path / "report.json").is_file() and not path.is_file():
            raise ConfigError(f"--report {args.report}: no report.json there; run "
                              f"'constraintlab analyze DATA --out {args.report}' first, or "
                              "leave out --report to run the analysis now")
        return path
    import constraintlab
    from constraintlab.analysis.config import AnalysisConfig

    return constraintlab.analyze(args.data, read=read, encode=encode, analysis=AnalysisConfig())


def run(args: argparse.Namespace) -> int:
    from constraintlab.io import read_examples
    from constraintlab.probe import probe

    config = probe_config_from_args(args)
    encode = encode_config_from_args(args)
    read = read_config_from_args(args)
    if args.examples is None and args.zone is None:
        raise ConfigError("choose what to train on: --examples 3,17,42 or --zone Z")
    if args.report is not None and args.zone is None:
        raise ConfigError("--report only defines zones; give --zone Z with it")
    data = read_examples(args.data, read)
    report = _zone_report(args, read, encode) if args.zone is not None else None
    result = probe(data, examples=args.examples, zone=args.zone, report=report,
                   probe_data=args.probe_data, config=config, encode=encode, read=read,
                   save_adapter=args.save_adapter)
    if args.out:
        result.save(args.out)
    if args.json:
        echo_json(result.to_json())
    elif not args.quiet:
        echo(summary_lines(result, args))
    return EXIT_OK


def _num(x: float | None, fmt: str = ".3f") -> str:
    return "n/a" if x is None else format(x, fmt)


def summary_lines(result, args: argparse.Namespace) -> list[str]:
    """The terminal summary of a :class:`ProbeResult`."""
    s = result.summary
    opt = s["optimizer"]
    train = s["train_examples"]
    shown = ", ".join(map(str, train[:12])) + (f", ... ({len(train)} in all)"
                                              if len(train) > 12 else "")
    lines = [f"constraintlab probe {visible(args.data)}  (model "
             f"{visible(s['model']['name'])}, {opt['name']} "
             f"lr {opt['lr']:g} x {opt['steps']} step{'s' if opt['steps'] > 1 else ''})",
             f"trained on: {shown}",
             f"probe set:  {visible(s['probe_source'])}",
             f"training loss {s['train_loss'][0]:.4f} -> {s['train_loss'][-1]:.4f}  "
             f"(update norm {s['update_norm']:.3g})", "",
             f"predicted vs actual loss change over {s['n_probe']} probe examples: "
             f"Spearman {_num(s['spearman'])}, Pearson {_num(s['pearson'])}, "
             f"same sign {100 * s['sign_agreement']:.0f} %",
             f"  prediction: {s['prediction']}", ""]
    head = f"  {'index':>7} {'before':>9} {'after':>9} {'change':>10} {'predicted':>10}  input"

    def rows(df):
        return [f"  {i:>7} {r.loss_before:>9.4f} {r.loss_after:>9.4f} {r.actual_change:>+10.2e} "
                f"{r.predicted_change:>+10.2e}  {r.input[:40]!r}" for i, r in df.iterrows()]

    helped = result.helped(5)
    hurt = result.hurt(5)
    lines += ["most helped (loss fell most):", head, *rows(helped[helped.actual_change < 0]), ""]
    lines += ["most hurt (loss rose most):", head, *rows(hurt[hurt.actual_change > 0]), ""]
    if s["top_tokens"]:
        lines.append("target tokens whose probability moved most:")
        lines.append(f"  {'example':>7} {'pos':>5}  {'token':<16} {'p before':>10} "
                     f"{'p after':>10} {'d log p':>9}")
        lines += [f"  {x['example']:>7} {x['position']:>5}  {x['token']!r:<16} "
                  f"{x['p_before']:>10.4g} {x['p_after']:>10.4g} {x['delta_logp']:>+9.3g}"
                  for x in s["top_tokens"]]
        lines.append("")
    lines.append("hidden-state drift (cosine before/after, mean over probe tokens):")
    lines += [f"  layer {d['layer']:>3}{' (embeddings)' if d['layer'] == 0 else '':<13} "
              f"{d['cosine']:.6f}" for d in s["drift"]]
    if args.out:
        lines.append(f"\nresult: {args.out}")
    if s["adapter_saved_to"]:
        lines.append(f"updated adapter: {s['adapter_saved_to']}")
    return lines
