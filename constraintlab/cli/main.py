"""Entry point of the ``constraintlab`` command.

Each subcommand lives in its own module of this package and exposes ``register(subparsers)``,
which adds its parser and sets ``func(args) -> int``. This module only wires them together and
turns the library's errors into exit codes: 0 ok, 1 a gate failed, 2 usage or input error.
Layers: ``main -> subcommand -> cli._common -> library``; nothing imports this module back.
"""

from __future__ import annotations

import argparse
import logging
import sys

from constraintlab._text import visible
from constraintlab._version import __version__
from constraintlab.cli import analyze, clean, extract, gate, inspect, order, probe, select
from constraintlab.cli._common import EXIT_GATE_FAILED, EXIT_OK, EXIT_USAGE
from constraintlab.errors import ConstraintlabError
from constraintlab.progress import set_progress

__all__ = ["EXIT_GATE_FAILED", "EXIT_OK", "EXIT_USAGE", "SUBCOMMANDS", "build_parser", "main"]

#: Subcommand modules, in the order --help lists them.
SUBCOMMANDS = (inspect, extract, analyze, gate, probe, order, clean, select)


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
    for module in SUBCOMMANDS:
        module.register(sub)
    return parser


class _VisibleFormatter(logging.Formatter):
    """Log lines with control characters from the data shown as escapes (as everything else
    the CLI prints)."""

    def format(self, record: logging.LogRecord) -> str:
        return visible(super().format(record), keep_newlines=True)


def _configure(args: argparse.Namespace) -> None:
    level = {0: logging.WARNING, 1: logging.INFO}.get(getattr(args, "verbose", 0), logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_VisibleFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    if getattr(args, "quiet", False):
        set_progress(False)
    elif level > logging.INFO:          # the cost estimate before long work is always shown
        logging.getLogger("constraintlab.encode.estimate").setLevel(logging.INFO)


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
        print(f"constraintlab {args.command}: error: {visible(err, keep_newlines=True)}",
              file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("constraintlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
