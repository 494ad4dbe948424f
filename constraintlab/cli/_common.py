"""What the subcommands share: exit codes, options, and how options become stage settings.

The CLI is layered ``main -> subcommand -> cli._common -> library``: :mod:`.main` loads the
subcommands, each subcommand builds its parser from the ``add_*_options`` here and turns the
parsed arguments into configs once (:func:`configs_from_args`), then calls the public API.
Nothing here imports a subcommand or :mod:`.main`, and nothing changes ``args``.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from constraintlab._config import Options, base_type, coerce, field_types
from constraintlab._text import json_visible, visible
from constraintlab.encode.config import EncodeConfig, check_environment
from constraintlab.errors import ConfigError, ConstraintlabError
from constraintlab.io import SCHEMAS, ReadConfig

if TYPE_CHECKING:
    from constraintlab.analysis.config import AnalysisConfig

#: Exit codes: 0 ok, 1 a gate condition failed, 2 usage, config or input error.
EXIT_OK, EXIT_GATE_FAILED, EXIT_USAGE = 0, 1, 2


def echo(lines: str | Sequence[str], *, file: TextIO | None = None) -> None:
    """Print text that holds anything from the data, paths or names (every subcommand prints
    through this): control characters are shown as escapes (ESC as ``\\x1b``; see
    :func:`constraintlab._text.visible`), line breaks are kept. Pass single-line fields
    (paths, sources, messages) through ``visible`` first to show their line breaks too."""
    text = lines if isinstance(lines, str) else "\n".join(lines)
    print(visible(text, keep_newlines=True), file=file or sys.stdout)


def echo_json(text: str, *, file: TextIO | None = None) -> None:
    """Print JSON text with the same characters as ``\\u001b``-style escapes (the same JSON)."""
    print(json_visible(text), file=file or sys.stdout)


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """Options every subcommand shares: verbosity and progress bars."""
    group = parser.add_argument_group("output")
    group.add_argument("-v", "--verbose", action="count", default=0,
                       help="log what happens (-v info, -vv debug) to stderr")
    group.add_argument("-q", "--quiet", action="store_true",
                       help="no progress bars and no summary; errors still go to stderr")


def add_read_options(parser: argparse.ArgumentParser) -> None:
    """The positional DATA argument and the options that say how to read it."""
    parser.add_argument("data", metavar="DATA",
                        help="dataset: .jsonl, .json (array or {\"data\": [...]}), .csv (with a "
                             "header row) or .parquet; .jsonl.gz, .json.gz, .csv.gz too")
    group = parser.add_argument_group("reading the data")
    # hand-written: the CLI spells the schemas with "-" and "fields" is set by --target-field
    group.add_argument("--format", default="auto",
                       choices=["auto", *[s.replace("_", "-") for s in SCHEMAS if s != "fields"]],
                       help="record schema; auto detects it from the first record (default)")
    for title, names in READ_GROUPS.items():
        add_field_flags(group if title == "reading the data" else
                         parser.add_argument_group(title), ReadConfig, names, _read_flag,
                         _READ_METAVARS)


#: The read flags besides --format, by help group, generated from :class:`ReadConfig`'s fields
#: (``max_problems`` and ``split`` have none: library only).
READ_GROUPS: dict[str, tuple[str, ...]] = {
    "reading the data": ("train_on", "on_invalid", "preference", "input_field", "target_field"),
    "a quick first look": ("limit", "sample", "sample_seed"),
}
_READ_FIELDS = {n for group in READ_GROUPS.values() for n in group}
_READ_METAVARS = {"input_field": "NAME", "target_field": "NAME", "limit": "N", "sample": "N",
                  "sample_seed": "S"}


def _read_flag(field: str) -> tuple[str, ...]:
    return ("--" + field.replace("_", "-"),)


def read_config_from_args(args: argparse.Namespace) -> ReadConfig:
    """The :class:`ReadConfig` the parsed options describe; a ConfigError names the flag."""
    try:
        return ReadConfig(format=args.format,
                          **{n: getattr(args, n) for n in _READ_FIELDS if hasattr(args, n)})
    except ConfigError as err:
        text = str(named_by_flag(err, ReadConfig, _read_flag))
        raise ConfigError(text.replace("give limit (", "give --limit (")
                          .replace("or sample (", "or --sample (")) from None


#: The encode flags, by help group: each is generated from its :class:`EncodeConfig` field
#: (flag ``--field-name``, type, default, choices from its Options, help from its doc) by
#: :func:`add_encode_options`; nothing about a setting is written here but where it shows.
ENCODE_GROUPS: dict[str, tuple[str, ...]] = {
    "model and adapter": ("model", "revision", "dtype", "device", "trust_remote_code", "lora_r",
                          "lora_alpha", "target_modules", "adapter_config", "adapter",
                          "lora_init_seed"),
    "tokens and batches": ("max_length", "batch_size", "max_batch_tokens",
                           "activation_checkpointing", "use_chat_template"),
    "projection": ("projection", "k", "seed"),
}
#: EncodeConfig fields without a flag, and why.
ENCODE_NOT_FLAGS: dict[str, str] = {
    "lora_dropout": "recorded only: gradients are taken without dropout",
    "unit_size": "part of the store's identity; set it from the library",
}
#: The flag of each :class:`EncodeConfig` field whose flag is not ``--field-name``; a True
#: default's flag turns it off (``--no-chat-template``).
#: ``--seed``, the projection seed's old flag, stays an alias of ``--projection-seed`` for one
#: release (``--set seed=`` is the analysis seed, ``--sample-seed``, ``--order-seed``,
#: ``--probe-seed`` the others).
_ENCODE_FLAGS: dict[str, tuple[str, ...]] = {"k": ("-k", "--k"),
                                             "seed": ("--projection-seed", "--seed"),
                                             "use_chat_template": ("--no-chat-template",)}
_FLAG_FIELDS = {n for group in ENCODE_GROUPS.values() for n in group}
_ENCODE_METAVARS = {"target_modules": "NAME", "adapter_config": "JSON", "adapter": "DIR"}


def _flag_help(doc: str, default: object, flag_of: Callable[[str], tuple[str, ...]],
               names: set[str]) -> str:
    """A field's doc as flag help: first letter small, no final stop, the other fields among
    ``names`` named by their flags, ``None:`` read as ``default:``, ``%`` escaped."""
    first = doc.split(" ", 1)[0]
    text = doc[0].lower() + doc[1:] if first[1:].islower() else doc
    text = re.sub(r"\b[a-z]+(?:_[a-z]+)+\b(?!\.json)",
                  lambda m: flag_of(m.group(0))[0] if m.group(0) in names else m.group(0),
                  text.rstrip(".")).replace("None: ", "default: ")
    if default is True:
        text = "off: " + text
    said = re.search(r"\bdefault\b", text)
    if default is not None and not isinstance(default, bool) and not said:
        text += f" (default {default:g})" if isinstance(default, float) else \
            f" (default {default})"
    return text.replace("%", "%%")


def add_encode_options(parser: argparse.ArgumentParser) -> None:
    """Model, adapter, tokenisation and projection options, generated from the fields of
    :class:`EncodeConfig` (:data:`ENCODE_GROUPS`)."""
    for title, names in ENCODE_GROUPS.items():
        add_field_flags(parser.add_argument_group(title), EncodeConfig, names, encode_flags,
                         _ENCODE_METAVARS)


def add_field_flags(group: typing.Any, cls: type, names: Sequence[str],
                    flag_of: Callable[[str], tuple[str, ...]],
                    metavars: dict[str, str] | None = None) -> None:
    """One flag per field of ``cls`` in ``names``, generated from its declaration: type,
    default, choices (Options), ``nargs="+"`` for a tuple, a switch for a bool (``store_false``
    when it defaults to True), help from its doc; ``dest`` is the field name."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = field_types(cls)
    known = set(fields)
    for name in names:
        f, hint = fields[name], hints[name]
        check, kind = f.metadata["check"], base_type(hint)
        kwargs: dict = {"dest": name,
                        "help": _flag_help(f.metadata["doc"], f.default, flag_of, known)}
        if kind is bool:
            kwargs["action"] = "store_false" if f.default else "store_true"
        else:
            kwargs["default"] = f.default
            if kind is not str:
                kwargs["type"] = kind
            if isinstance(check, Options):
                kwargs["choices"] = check.values
            if typing.get_origin(_not_none(hint)) is tuple:
                kwargs["nargs"] = "+"
            if name in (metavars or {}):
                kwargs["metavar"] = metavars[name]
        group.add_argument(*flag_of(name), **kwargs)


def _not_none(hint: typing.Any) -> typing.Any:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args and typing.get_origin(hint) in (typing.Union, types.UnionType) \
        else hint


def encode_flags(field: str) -> tuple[str, ...]:
    """The command-line flags of an :class:`EncodeConfig` field (``k``: ``-k``, ``--k``)."""
    return _ENCODE_FLAGS.get(field, ("--" + field.replace("_", "-"),))


def encode_flag(field: str) -> str:
    """The flag named in messages about an :class:`EncodeConfig` field (``k`` -> ``-k``)."""
    return encode_flags(field)[0]


def named_by_flag(err: ConfigError, cls: type = EncodeConfig,
                   flag_of: Callable[[str], tuple[str, ...]] = encode_flags) -> ConfigError:
    """``EncodeConfig: k must be ...`` -> ``-k must be ...``: a config error names the flag the
    user typed, not the dataclass field."""
    text = str(err).removeprefix(f"{cls.__name__}: ")
    match = re.match(r"([a-z_]+)\b", text)
    if match and match.group(1) in field_types(cls):
        return ConfigError(flag_of(match.group(1))[0] + text[match.end():])
    return ConfigError(text)


def encode_config_from_args(args: argparse.Namespace) -> EncodeConfig:
    """The :class:`EncodeConfig` the parsed options describe, checked against this machine
    before any model is loaded: a ConfigError (exit 2) names the flag (``-k``, ``--device``,
    ``--model``), see :func:`constraintlab.encode.config.check_environment`."""
    try:
        config = _encode_config(args)
    except ConfigError as err:
        raise named_by_flag(err) from None
    for field, problem in check_environment(config):
        raise ConfigError(f"{encode_flag(field)} {getattr(config, field)}: {problem}")
    return config


def _encode_config(args: argparse.Namespace) -> EncodeConfig:
    return EncodeConfig(**{n: getattr(args, n) for n in _FLAG_FIELDS})


def add_ray_options(parser: argparse.ArgumentParser) -> None:
    """``--ray`` and the worker pool: extraction on many workers (``constraintlab[ray]``)."""
    g = parser.add_argument_group(
        "scale-out on Ray (needs pip install 'constraintlab[ray]'; the store is the same)")
    g.add_argument("--ray", nargs="?", const="auto", default=None, metavar="auto|ADDRESS",
                   help="compute the work units on Ray: 'auto' (the default when given alone: "
                        "the running cluster, else a new local one), 'local', or a cluster "
                        "address such as 10.0.0.5:6379; the store must be on a filesystem "
                        "every worker sees")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="most Ray workers, each loading the model once (default: what the "
                        "cluster's GPUs, else CPUs, allow)")
    g.add_argument("--gpus-per-worker", type=float, default=None, metavar="G",
                   help="GPUs per worker; 0.5 puts two workers on a GPU (default 1 with "
                        "--device cuda, else 0)")
    g.add_argument("--cpus-per-worker", type=float, default=None, metavar="C",
                   help="CPUs per worker (default 1; torch uses floor(C) threads); leave a "
                        "CPU free or use fractions, else Ray Data has none and waits forever")


def ray_options_from_args(args: argparse.Namespace):
    """The :class:`~constraintlab.encode.distributed.RayOptions` of ``--ray`` and friends,
    or None without ``--ray``. ConfigError (exit 2): a pool flag (``--workers``,
    ``--gpus-per-worker``, ``--cpus-per-worker``) without ``--ray``, or ``--ray`` without Ray
    installed (the message names the extra ``constraintlab[ray]``)."""
    from constraintlab.encode.distributed import import_ray, ray_options

    options = ray_options(getattr(args, "ray", None), flags=True,
                          **{name: getattr(args, name, None)
                             for name in ("workers", "gpus_per_worker", "cpus_per_worker")})
    if options is not None:
        import_ray()    # fail fast, before any data is read, when the extra is not installed
    return options


def add_analyze_options(parser: argparse.ArgumentParser) -> None:
    """DATA, reading, ``--out``, model/encoder and analysis options (``analyze``, ``gate``,
    ``order``)."""
    add_read_options(parser)
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="report directory (default: constraintlab-report/ beside DATA)")
    parser.add_argument("--cache", metavar="DIR", default=None,
                        help="shared feature-store cache: the same rows reuse their store from "
                             "any --out and in any form (default $CONSTRAINTLAB_CACHE, else "
                             "~/.cache/constraintlab)")
    parser.add_argument("--no-cache", action="store_true",
                        help="keep the feature store in --out/features/ instead")
    add_encode_options(parser)
    a = parser.add_argument_group("analysis")
    a.add_argument("--tau", type=float, default=None,
                   help="conflict threshold: pairs with cos < -tau conflict (default: 5 noise "
                        "standard deviations, 5/sqrt(k), at least 0.05)")
    a.add_argument("--top-m", type=int, default=None,
                   help="neighbours per example in the constraint graph (default 10)")
    a.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="settings",
                   help="any analysis setting, e.g. --set tau=0.2 (repeatable; see "
                        "constraintlab.analysis.AnalysisConfig)")


def add_output_option(group: argparse._ArgumentGroup, metavar: str, what: str) -> None:
    """``-o/--output FILE`` of a command that writes records (``clean``, ``select``, ``order``)."""
    group.add_argument("-o", "--output", required=True, metavar=metavar,
                       help=f"where to write the {what} records (JSON Lines)")


def checked_output(output: str, *inputs: str | None) -> Path:
    """``-o OUTPUT`` checked before anything is read or loaded: not one of the command's input
    files (DATA, --target), not a directory.

    Raises
    ------
    ConstraintlabError
        ``output`` is one of ``inputs``.
    ConfigError
        ``output`` is a directory.
    """
    path = Path(output)
    given = [g for g in inputs if g is not None]
    for g in given:
        if path.resolve() == Path(g).resolve():
            which = "an input" if len(inputs) > 1 else "the input"
            raise ConstraintlabError(f"{path}: refusing to overwrite {which}; choose another -o")
    if path.is_dir():
        raise ConfigError(f"-o {path}: is a directory; give a file name")
    return path


def cache_from_args(args: argparse.Namespace) -> str | bool | None:
    """The ``cache`` argument of :func:`constraintlab.analyze` (``--cache`` / ``--no-cache``)."""
    if getattr(args, "no_cache", False):
        if getattr(args, "cache", None) is not None:
            raise ConfigError("give --cache DIR or --no-cache, not both")
        return False
    return getattr(args, "cache", None)


def analysis_config_from_args(args: argparse.Namespace) -> AnalysisConfig:
    """The :class:`AnalysisConfig` of ``--set NAME=VALUE`` (repeatable), ``--tau`` and
    ``--top-m`` (these two win over ``--set``)."""
    from constraintlab.analysis.config import AnalysisConfig  # numba loads on first use

    settings = parse_set_options(getattr(args, "settings", []) or [], AnalysisConfig)
    flags = {name: f"--set {name}" for name in settings}
    if getattr(args, "tau", None) is not None:
        settings["tau"], flags["tau"] = args.tau, "--tau"
    if getattr(args, "top_m", None) is not None:
        settings["top_m"], flags["top_m"] = args.top_m, "--top-m"
    try:
        return AnalysisConfig(**settings)
    except ConfigError as err:   # name the flag that set the refused field, not the class
        message = str(err).removeprefix(f"{AnalysisConfig.__name__}: ")
        field = message.split(" ", 1)[0]
        if field in flags:
            raise ConfigError(f"{flags[field]}: {message}") from None
        raise


def configs_from_args(args: argparse.Namespace) -> tuple[ReadConfig, EncodeConfig, AnalysisConfig]:
    """The three stage configs the parsed options describe, built once (``args`` unchanged).

    Returns
    -------
    (ReadConfig, EncodeConfig, AnalysisConfig)
    """
    return (read_config_from_args(args), encode_config_from_args(args),
            analysis_config_from_args(args))


def parse_set_options(pairs: list[str], config_type: type) -> dict:
    """``["tau=0.2", "lsh_bands=21"]`` -> ``{"tau": 0.2, "lsh_bands": 21}``.

    Each value is read as its field's declared type (:func:`constraintlab._config.coerce`:
    ``int`` stays ``int``, ``none`` for optional fields, comma-separated tuples); ranges are
    checked when the config is built.

    Raises
    ------
    ConfigError
        ``NAME`` is not a field of ``config_type``, or ``VALUE`` is not of its type (exit 2).
    """
    names = field_types(config_type)
    out = {}
    for item in pairs:
        name, sep, raw = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in names:
            raise ConfigError(f"--set {item!r}: expected NAME=VALUE with NAME one of "
                              f"{', '.join(sorted(names))}")
        try:
            out[name] = coerce(config_type, name, raw)
        except ConfigError as err:
            raise ConfigError(f"--set {item!r}: {err}") from None
    return out
