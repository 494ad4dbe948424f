"""``constraintlab extract DATA --model M --out DIR``: build the feature store."""

from __future__ import annotations

import argparse
import sys

from constraintlab._text import visible
from constraintlab.cli._common import (
    EXIT_OK,
    add_common_options,
    add_encode_options,
    add_ray_options,
    add_read_options,
    echo,
    encode_config_from_args,
    ray_options_from_args,
    read_config_from_args,
)
from constraintlab.io import read_examples


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "extract", help="per-example LoRA gradients of a dataset -> feature store",
        description="Turn every example into one constraint: the gradient of its loss (mean "
                    "NLL over target tokens) with respect to a LoRA adapter, projected to k "
                    "dimensions with a seeded Johnson-Lindenstrauss map, written to a feature "
                    "store. An interrupted run resumes when run again with the same settings; "
                    "a store built with other settings or data is refused.")
    add_read_options(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="feature store directory")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete an existing store in DIR first")
    add_encode_options(parser)
    add_ray_options(parser)
    add_common_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from constraintlab.encode import extract

    config = encode_config_from_args(args)
    ray = ray_options_from_args(args)            # before reading: a bad flag fails fast
    data = read_examples(args.data, read_config_from_args(args))
    store = extract(data, config, args.out, dataset_source=data.source,
                    content_hash=data.content_hash, overwrite=args.overwrite, ray=ray)
    if not args.quiet:
        stats = store.manifest.get("stats", {})
        lines = [
            f"{len(store)} examples -> {visible(args.out)}  (features "
            f"{store.features.shape[1]} dims, "
            f"P = {store.n_params} LoRA parameters, projection {config.projection})",
            f"target tokens: {stats.get('n_target_tokens', '?')}; "
            f"truncated examples: {stats.get('n_truncated_examples', 0)} "
            f"({stats.get('n_truncated_tokens', 0)} tokens dropped at --max-length "
            f"{config.max_length})",
        ]
        if data.skipped:
            lines.append(f"skipped records: {len(data.skipped)}")
        if stats.get("examples_per_s"):
            lines.append(f"speed: {stats['examples_per_s']} examples/s")
        echo(lines, file=sys.stdout)
    return EXIT_OK
