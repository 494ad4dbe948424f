"""Entry point of the ``constraintlab`` command.

Each subcommand lives in its own module of this package and exposes ``register(subparsers)``,
which adds its parser and sets ``func(args) -> int``. This module only wires them together and
turns the library's errors into exit codes: 0 ok, 1 a gate failed, 2 usage or input error.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from constraintlab._version import __version__
from constraintlab.errors import ConstraintlabError
from constraintlab.progress import set_progress

# Subcommand modules, in the order --help lists them.
SUBCOMMANDS: tuple[str, ...] = ("inspect", "extract", "analyze", "gate", "probe", "order")

EXIT_OK, EXIT_GATE_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (all subcommands registered)."""
    parser = argparse.ArgumentParser(
        prog="constraintlab",
        description=(
            "See what a fine-tuning dataset will do to a model before you train: each example "
            "is one constraint on the LoRA adapter; constraintlab measures rank, redundancy, "
            "contradictions and conflict."
        ),
        epilog="Run 'constraintlab COMMAND --help' for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"constraintlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"constraintlab.cli.{name}").register(sub)
    return parser


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """Options every subcommand shares: verbosity and progress bars."""
    group = parser.add_argument_group("output")
    group.add_argument("-v", "--verbose", action="count", default=0,
                       help="log what happens (-v info, -vv debug) to stderr")
    group.add_argument("-q", "--quiet", action="store_true",
                       help="no progress bars and no summary; errors still go to stderr")


def _configure(args: argparse.Namespace) -> None:
    level = {0: logging.WARNING, 1: logging.INFO}.get(getattr(args, "verbose", 0), logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr, force=True)
    if getattr(args, "quiet", False):
        set_progress(False)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (also used by the console script)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    _configure(args)
    try:
        return int(args.func(args))
    except ConstraintlabError as err:
        print(f"constraintlab {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("constraintlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
