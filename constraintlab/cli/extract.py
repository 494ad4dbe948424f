"""``constraintlab extract DATA --model M --out DIR``: build the feature store."""

from __future__ import annotations

import argparse
import sys

from constraintlab.cli._common import add_read_options, read_config_from_args
from constraintlab.cli.main import add_common_options
from constraintlab.encode import EncodeConfig, extract
from constraintlab.encode.config import DTYPES, PROJECTIONS, REFERENCE_MODEL
from constraintlab.io import read_examples

_DEFAULTS = EncodeConfig.__dataclass_fields__


def _default(name: str):
    return _DEFAULTS[name].default


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
    g = parser.add_argument_group("model and adapter")
    g.add_argument("--model", default=REFERENCE_MODEL,
                   help="hub id or local directory of a causal LM (default: the built-in "
                        "reference model)")
    g.add_argument("--revision", default=None, help="hub revision of --model")
    g.add_argument("--dtype", default=_default("dtype"), choices=DTYPES)
    g.add_argument("--device", default=_default("device"), help="torch device (default cpu)")
    g.add_argument("--trust-remote-code", action="store_true",
                   help="allow the model's own code from the hub")
    g.add_argument("--lora-r", type=int, default=_default("lora_r"))
    g.add_argument("--lora-alpha", type=float, default=_default("lora_alpha"))
    g.add_argument("--target-modules", nargs="+", default=None, metavar="NAME",
                   help="modules that get LoRA (default: peft's default for the architecture; "
                        "'all-linear' for every linear layer)")
    g.add_argument("--adapter-config", default=None, metavar="JSON",
                   help="adapter_config.json to analyse with (fresh adapter, B = 0)")
    g.add_argument("--adapter", default=None, metavar="DIR",
                   help="already-trained peft adapter to analyse at")
    t = parser.add_argument_group("tokens and batches")
    t.add_argument("--max-length", type=int, default=_default("max_length"))
    t.add_argument("--batch-size", type=int, default=_default("batch_size"))
    t.add_argument("--max-batch-tokens", type=int, default=None,
                   help=f"most padded tokens per batch (default "
                        f"max({_default('max_batch_tokens')}, --max-length))")
    t.add_argument("--no-chat-template", action="store_true",
                   help="render chat examples with the plain template")
    p = parser.add_argument_group("projection")
    p.add_argument("--projection", default=_default("projection"), choices=PROJECTIONS)
    p.add_argument("-k", "--k", type=int, default=_default("k"), help="projected dimension")
    p.add_argument("--seed", type=int, default=_default("seed"), help="projection seed")
    g.add_argument("--lora-init-seed", type=int, default=_default("lora_init_seed"),
                   help="seed of the fresh adapter's A initialisation")
    add_common_options(parser)
    parser.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> EncodeConfig:
    """The :class:`EncodeConfig` the parsed options describe."""
    return EncodeConfig(
        model=args.model, revision=args.revision, dtype=args.dtype, device=args.device,
        trust_remote_code=args.trust_remote_code, lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        target_modules=tuple(args.target_modules) if args.target_modules else None,
        adapter_config=args.adapter_config, adapter=args.adapter, max_length=args.max_length,
        batch_size=args.batch_size,
        max_batch_tokens=args.max_batch_tokens or max(_default("max_batch_tokens"),
                                                      args.max_length),
        projection=args.projection, k=args.k, seed=args.seed,
        lora_init_seed=args.lora_init_seed,
        use_chat_template=not args.no_chat_template)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    data = read_examples(args.data, read_config_from_args(args))
    store = extract(data, config, args.out, dataset_source=data.source,
                    content_hash=data.content_hash, overwrite=args.overwrite)
    if not args.quiet:
        stats = store.manifest.get("stats", {})
        lines = [
            f"{len(store)} examples -> {args.out}  (features {store.features.shape[1]} dims, "
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
        print("\n".join(lines), file=sys.stdout)
    return 0
