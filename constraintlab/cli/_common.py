"""Options several subcommands share, and how they become stage settings."""

from __future__ import annotations

import argparse

from constraintlab.io import SCHEMAS, ReadConfig
from constraintlab.io.config import ON_INVALID, TRAIN_ON


def add_read_options(parser: argparse.ArgumentParser) -> None:
    """The positional DATA argument and the options that say how to read it."""
    parser.add_argument("data", metavar="DATA",
                        help="dataset: .jsonl, .json (array or {\"data\": [...]}) or .parquet")
    group = parser.add_argument_group("reading the data")
    group.add_argument("--format", default="auto",
                       choices=["auto", *[s.replace("_", "-") for s in SCHEMAS]],
                       help="record schema; auto detects it from the first record (default)")
    group.add_argument("--train-on", default="last-assistant", choices=TRAIN_ON,
                       help="chat data: take the loss on the last assistant turn (default) or "
                            "on every assistant turn")
    group.add_argument("--on-invalid", default="error", choices=ON_INVALID,
                       help="invalid records: stop with a list of problems (default, exit 2) "
                            "or skip them and count them")


def read_config_from_args(args: argparse.Namespace) -> ReadConfig:
    """The :class:`ReadConfig` the parsed options describe."""
    return ReadConfig(format=args.format, train_on=args.train_on, on_invalid=args.on_invalid)
