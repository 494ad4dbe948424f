"""``constraintlab inspect DATA``: what constraintlab reads from a dataset, before any model."""

from __future__ import annotations

import argparse
import json
import textwrap

from constraintlab._text import visible
from constraintlab.cli._common import (
    EXIT_OK,
    add_common_options,
    add_read_options,
    echo,
    echo_json,
    read_config_from_args,
)
from constraintlab.io import ExampleSet, read_examples


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "inspect", help="show the schema, size and lengths of a dataset (no model needed)",
        description="Read DATA the way every other command will and show what was found: the "
                    "schema, how many examples, which records were skipped, input and target "
                    "lengths in characters, and a few examples. Unusable records are listed as "
                    "findings (exit 2 only with --on-invalid error).")
    add_read_options(parser)
    parser.add_argument("--show", type=int, default=3, metavar="N",
                        help="how many examples to print (default 3)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_common_options(parser)
    parser.set_defaults(func=run)


def summary(data: ExampleSet, show: int) -> dict:
    """The inspect summary as plain JSON-able data."""
    return {
        "source": data.source,
        "schema": data.schema,
        "reading": data.reading(),
        "records": data.n_records,
        "examples": len(data),
        "skipped": [str(p) for p in data.skipped],
        "length_chars": data.length_stats(),
        "content_sha256": data.content_hash,
        "examples_shown": [
            {"index": ex.index, "line": ex.line, "input": ex.input_text, "target": ex.target_text}
            for ex in data.examples[:show]
        ],
    }


def run(args: argparse.Namespace) -> int:
    data = read_examples(args.data, read_config_from_args(args))
    info = summary(data, max(args.show, 0))
    if args.json:
        echo_json(json.dumps(info, indent=2, ensure_ascii=False))
        return EXIT_OK
    if args.quiet:
        return EXIT_OK
    lines = [f"{visible(info['source'])}: {info['examples']} examples, schema {info['schema']}",
             f"read as {visible(info['reading'])}"]
    if data.skipped:
        lines.append(f"skipped {len(data.skipped)} of {info['records']} records:")
        lines += [f"  {visible(problem)}" for problem in info["skipped"][:20]]
        if len(data.skipped) > 20:
            lines.append(f"  ... and {len(data.skipped) - 20} more")
    lines.append("length in characters      min   median     mean      max")
    for side, s in info["length_chars"].items():
        lines.append(f"  {side:<20} {s['min']:>8} {s['median']:>8.0f} {s['mean']:>8.1f} "
                     f"{s['max']:>8}")
    for ex in info["examples_shown"]:
        lines.append(f"\n--- record {ex['index']} (line {ex['line']})")
        for side, text in (("input ", _clip(ex["input"]) or "(no input)"),
                           ("target", _clip(ex["target"]))):
            lines.append(textwrap.indent(visible(text, keep_newlines=True), f"  {side} | ",
                                         lambda _: True))
    echo(lines)       # record text keeps its line breaks; control characters shown escaped
    return EXIT_OK


def _clip(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[:limit] + f" [... {len(text) - limit} more chars]"
