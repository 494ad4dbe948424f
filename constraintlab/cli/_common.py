"""What the subcommands share: exit codes, options, and how options become stage settings.

The CLI is layered ``main -> subcommand -> cli._common -> library``: :mod:`.main` loads the
subcommands, each subcommand builds its parser from the ``add_*_options`` here and turns the
parsed arguments into configs once (:func:`configs_from_args`), then calls the public API.
Nothing here imports a subcommand or :mod:`.main`, and nothing changes ``args``.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from constraintlab._config import coerce, field_types
from constraintlab._text import json_visible, visible
from constraintlab.encode.config import (
    DTYPES,
    PROJECTIONS,
    REFERENCE_MODEL,
    EncodeConfig,
    check_environment,
)
from constraintlab.errors import ConfigError
from constraintlab.io import SCHEMAS, ReadConfig
from constraintlab.io.config import ON_INVALID, PREFERENCE, TRAIN_ON

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
    group.add_argument("--format", default="auto",
                       choices=["auto", *[s.replace("_", "-") for s in SCHEMAS if s != "fields"]],
                       help="record schema; auto detects it from the first record (default)")
    group.add_argument("--train-on", default="last-assistant", choices=TRAIN_ON,
                       help="chat data: take the loss on the last assistant turn (default) or "
                            "on every assistant turn")
    group.add_argument("--on-invalid", default=ReadConfig().on_invalid, choices=ON_INVALID,
                       help="readable but unusable records: skip them and list them as findings "
                            "(default) or stop with the list of problems (error, exit 2)")
    group.add_argument("--preference", default=ReadConfig().preference, choices=PREFERENCE,
                       help="preference data (chosen/rejected): which reply is the target "
                            "(default chosen)")
    group.add_argument("--input-field", default=None, metavar="NAME",
                       help="read the prompt from this field of every record (with "
                            "--target-field), for data whose keys match no known schema")
    group.add_argument("--target-field", default=None, metavar="NAME",
                       help="read the target (the reply trained on) from this field of every "
                            "record")
    first = parser.add_argument_group("a quick first look")
    first.add_argument("--limit", type=int, default=None, metavar="N",
                       help="read only the first N records")
    first.add_argument("--sample", type=int, default=None, metavar="N",
                       help="read N records drawn at random (seeded by --sample-seed), in file "
                            "order")
    first.add_argument("--sample-seed", type=int, default=ReadConfig().sample_seed,
                       metavar="S", help="seed of --sample (default 0)")


def read_config_from_args(args: argparse.Namespace) -> ReadConfig:
    """The :class:`ReadConfig` the parsed options describe."""
    try:
        return ReadConfig(format=args.format, train_on=args.train_on,
                          on_invalid=args.on_invalid, preference=args.preference,
                          input_field=args.input_field, target_field=args.target_field,
                          limit=getattr(args, "limit", None),
                          sample=getattr(args, "sample", None),
                          sample_seed=getattr(args, "sample_seed", 0))
    except ConfigError as err:
        text = str(err).removeprefix("ReadConfig: ")
        for name in ("sample_seed", "limit", "sample"):
            if text.startswith(name):
                text = "--" + name.replace("_", "-") + text[len(name):]
                break
        raise ConfigError(text.replace("give limit (", "give --limit (")
                          .replace("or sample (", "or --sample (")) from None


def _encode_default(name: str):
    return EncodeConfig.__dataclass_fields__[name].default  # type: ignore[attr-defined]


def add_encode_options(parser: argparse.ArgumentParser) -> None:
    """Model, adapter, tokenisation and projection options (the :class:`EncodeConfig`)."""
    g = parser.add_argument_group("model and adapter")
    g.add_argument("--model", default=REFERENCE_MODEL,
                   help="hub id or local directory of a causal LM (default: the built-in "
                        "offline reference model)")
    g.add_argument("--revision", default=None, help="hub revision of --model")
    g.add_argument("--dtype", default=_encode_default("dtype"), choices=DTYPES,
                   help="weights and activations (default float32; bfloat16 on a GPU)")
    g.add_argument("--device", default=_encode_default("device"),
                   help="torch device: cpu (default), cuda, cuda:1, mps")
    g.add_argument("--trust-remote-code", action="store_true",
                   help="allow the model's own code from the hub (off unless given)")
    g.add_argument("--lora-r", type=int, default=_encode_default("lora_r"),
                   help=f"LoRA rank (default {_encode_default('lora_r')})")
    g.add_argument("--lora-alpha", type=float, default=_encode_default("lora_alpha"),
                   help=f"LoRA alpha (default {_encode_default('lora_alpha'):g})")
    g.add_argument("--target-modules", nargs="+", default=None, metavar="NAME",
                   help="modules that get LoRA (default: peft's default for the architecture; "
                        "'all-linear' for every linear layer)")
    g.add_argument("--adapter-config", default=None, metavar="JSON",
                   help="adapter_config.json to analyse with (fresh adapter, B = 0)")
    g.add_argument("--adapter", default=None, metavar="DIR",
                   help="already-trained peft adapter to analyse at")
    g.add_argument("--lora-init-seed", type=int, default=_encode_default("lora_init_seed"),
                   help="seed of the fresh adapter's A initialisation")
    t = parser.add_argument_group("tokens and batches")
    t.add_argument("--max-length", type=int, default=_encode_default("max_length"),
                   help=f"longest sequence in tokens; longer examples are truncated and "
                        f"counted (default {_encode_default('max_length')})")
    t.add_argument("--batch-size", type=int, default=_encode_default("batch_size"),
                   help="most examples per batch (default: 16 on CPU, no limit on a GPU)")
    t.add_argument("--max-batch-tokens", type=int, default=None,
                   help="most padded tokens per batch (default: 8192 on CPU; on a GPU chosen "
                        "from the free memory; never below --max-length)")
    t.add_argument("--activation-checkpointing", default="auto", choices=("auto", "on", "off"),
                   help="recompute activations in the backward to save memory (auto: only "
                        "when one --max-length example would not fit otherwise)")
    t.add_argument("--no-chat-template", action="store_true",
                   help="render chat examples with the plain template")
    p = parser.add_argument_group("projection")
    p.add_argument("--projection", default=_encode_default("projection"), choices=PROJECTIONS)
    p.add_argument("-k", "--k", type=int, default=_encode_default("k"),
                   help=f"projected dimension (default {_encode_default('k')})")
    p.add_argument("--seed", type=int, default=_encode_default("seed"), help="projection seed")


#: The flag of each :class:`EncodeConfig` field whose flag is not ``--field-name``.
_ENCODE_FLAGS = {"k": "-k", "use_chat_template": "--no-chat-template"}


def encode_flag(field: str) -> str:
    """The command-line flag of an :class:`EncodeConfig` field (``k`` -> ``-k``)."""
    return _ENCODE_FLAGS.get(field, "--" + field.replace("_", "-"))


def _named_by_flag(err: ConfigError) -> ConfigError:
    """``EncodeConfig: k must be ...`` -> ``-k must be ...``: a config error names the flag the
    user typed, not the dataclass field."""
    text = str(err)
    match = re.match(r"(?:EncodeConfig: )?([a-z_]+)\b", text)
    if match and match.group(1) in EncodeConfig.__dataclass_fields__:  # type: ignore[attr-defined]
        return ConfigError(encode_flag(match.group(1)) + text[match.end():])
    return ConfigError(text.removeprefix("EncodeConfig: "))


def encode_config_from_args(args: argparse.Namespace) -> EncodeConfig:
    """The :class:`EncodeConfig` the parsed options describe, checked against this machine
    before any model is loaded: a ConfigError (exit 2) names the flag (``-k``, ``--device``,
    ``--model``), see :func:`constraintlab.encode.config.check_environment`."""
    try:
        config = _encode_config(args)
    except ConfigError as err:
        raise _named_by_flag(err) from None
    for field, problem in check_environment(config):
        raise ConfigError(f"{encode_flag(field)} {getattr(config, field)}: {problem}")
    return config


def _encode_config(args: argparse.Namespace) -> EncodeConfig:
    return EncodeConfig(
        model=args.model, revision=args.revision, dtype=args.dtype, device=args.device,
        trust_remote_code=args.trust_remote_code, lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        target_modules=tuple(args.target_modules) if args.target_modules else None,
        adapter_config=args.adapter_config, adapter=args.adapter, max_length=args.max_length,
        batch_size=args.batch_size,
        max_batch_tokens=args.max_batch_tokens,
        activation_checkpointing=getattr(args, "activation_checkpointing", "auto"),
        projection=args.projection, k=args.k, seed=args.seed,
        lora_init_seed=args.lora_init_seed,
        use_chat_template=not args.no_chat_template)


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
    if getattr(args, "tau", None) is not None:
        settings["tau"] = args.tau
    if getattr(args, "top_m", None) is not None:
        settings["top_m"] = args.top_m
    return AnalysisConfig(**settings)


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
