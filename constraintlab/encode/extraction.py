"""Examples -> feature store: tokenise, bucket, batched per-example gradients, shards, assemble.

Each batch also gets its input-dependence pass (the same target tokens scored with the input
removed, :mod:`.tokenize` defines what is removed; one forward pass without gradients, see
:mod:`.gradients`), written in the same shard, so it resumes like the rest.

Records the encoder cannot use (a target truncated away by ``max_length``, a template that
cannot render the record) stop the extraction with an :class:`~constraintlab.errors.InputError`
when the examples were read with ``on_invalid="error"``; with ``"skip"`` they are left out,
logged, and listed in ``FeatureStore.skipped`` (the manifest's ``skipped``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from constraintlab._version import __version__
from constraintlab.encode.config import EncodeConfig
from constraintlab.encode.gradients import BatchResult, GradientEngine
from constraintlab.encode.model import LoadedModel, load_model
from constraintlab.encode.projection import Projector
from constraintlab.encode.store import (
    MANIFEST,
    SHARDS,
    STORE_FORMAT,
    FeatureStore,
    TokenProfiles,
    prepare_dir,
    read_shard,
    verify_shard,
    write_json_atomic,
    write_shard,
)
from constraintlab.encode.tokenize import Encoded, Renderer
from constraintlab.errors import ConfigError, Finding, InputError
from constraintlab.io.example import Example
from constraintlab.progress import progress

logger = logging.getLogger(__name__)


def plan_batches(lengths: Sequence[int], batch_size: int, max_batch_tokens: int
                 ) -> list[list[int]]:
    """Group positions into length buckets.

    Sorts by length (longest first, ties by position) and fills a batch while
    ``rows * longest <= max_batch_tokens`` and ``rows <= batch_size``.

    Returns
    -------
    list of batches, each a list of positions into ``lengths``.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        new_longest = max(longest, lengths[i])
        if current and (len(current) + 1 > batch_size
                        or (len(current) + 1) * new_longest > max_batch_tokens):
            batches.append(current)
            current, new_longest = [], lengths[i]
        current.append(i)
        longest = new_longest
    if current:
        batches.append(current)
    return batches


def examples_digest(examples: Sequence[Example]) -> str:
    """sha256 of the examples' content (used when the reader gave no content hash)."""
    h = hashlib.sha256()
    for ex in examples:
        rec = [ex.index, ex.schema, ex.chat, list(ex.targets),
               [[m.role, m.content] for m in ex.messages]]
        h.update(json.dumps(rec, ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()


class Encoder:
    """A loaded model + adapter + projection, ready to turn examples into constraint rows.

    Parameters
    ----------
    config : EncodeConfig
    loaded : LoadedModel, optional
        Reuse an already loaded model (it must have been loaded with ``config``).
    """

    def __init__(self, config: EncodeConfig, loaded: LoadedModel | None = None) -> None:
        self.config = config
        self.loaded = loaded if loaded is not None else load_model(config)
        tok = self.loaded.tokenizer
        self.renderer = Renderer(tok, max_length=config.max_length,
                                 use_chat_template=config.use_chat_template)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.projector = None
        if config.projection != "none":
            acc = torch.float64 if next(self.loaded.model.parameters()).dtype == torch.float64 \
                else torch.float32
            self.projector = Projector(config.projection, config.k, config.seed,
                                       device=next(self.loaded.model.parameters()).device,
                                       dtype=acc)
        self.engine = GradientEngine(self.loaded, self.projector, pad_id=int(pad or 0))

    @property
    def dim(self) -> int:
        """Feature dimension: ``k``, or ``P`` with ``projection="none"``."""
        return self.loaded.n_params if self.projector is None else self.config.k

    def encode(self, examples: Sequence[Example]) -> list[Encoded]:
        """Tokenise (raises InputError listing every unusable example)."""
        return self.renderer.encode_all(list(examples))

    def encode_some(self, examples: Sequence[Example]) -> tuple[list[Encoded], list[Finding]]:
        """Tokenise the usable examples; the others become findings
        (:meth:`Renderer.encode_some`)."""
        return self.renderer.encode_some(list(examples))

    def plan(self, encoded: Sequence[Encoded]) -> list[list[int]]:
        return plan_batches([e.n_tokens for e in encoded], self.config.batch_size,
                            self.config.max_batch_tokens)

    def compute(self, batch: Sequence[Encoded]) -> BatchResult:
        """Per-example results for one batch (rows in ``batch`` order)."""
        return self.engine.run(list(batch))


#: arrays every shard holds (a shard lacking one is recomputed)
SHARD_KEYS = ("positions", "features", "input_factors", "output_factors", "energy",
              "grad_norm", "loss", "token_nll", "token_rank", "token_counts",
              "token_nll_noinput", "loss_noinput")


def _unpack(examples) -> tuple[list[Example], str | None, str | None, str | None]:
    if hasattr(examples, "examples"):
        return (list(examples.examples), getattr(examples, "source", None),
                getattr(examples, "content_hash", None),
                getattr(getattr(examples, "config", None), "on_invalid", None))
    return list(examples), None, None, None


def extract(examples: Iterable[Example], config: EncodeConfig | None = None,
            out_dir: str | os.PathLike = "features", *, dataset_source: str | None = None,
            content_hash: str | None = None, overwrite: bool = False,
            encoder: Encoder | None = None, on_invalid: str | None = None) -> FeatureStore:
    """Build (or resume, or reuse) the feature store of ``examples`` in ``out_dir``.

    Parameters
    ----------
    examples : sequence of Example, or an ``ExampleSet`` (its source, content hash and
        ``config.on_invalid`` are used)
    config : EncodeConfig, default ``EncodeConfig()``
    out_dir : directory of the store. An unfinished store built with the same settings and
        data is resumed (finished batches are kept, a damaged or half-written shard is
        recomputed); a finished one is returned as is; one built otherwise raises
        :class:`~constraintlab.errors.StoreMismatchError`.
    dataset_source : path recorded in the manifest.
    content_hash : sha256 of the dataset file; default: a hash of the examples' content.
    overwrite : delete an existing store in ``out_dir`` first.
    encoder : reuse a loaded :class:`Encoder` (built with ``config``).
    on_invalid : {"error", "skip"}, optional
        What to do with an example the encoder cannot use (target truncated away by
        ``max_length``, template error): ``"error"`` raises :class:`InputError` listing them;
        ``"skip"`` leaves them out (``FeatureStore.skipped``). Default: the ExampleSet's
        ``config.on_invalid``, else ``"error"``.

    Returns
    -------
    FeatureStore
        Row n is the n-th usable example.
    """
    config = config or (encoder.config if encoder is not None else EncodeConfig())
    if encoder is not None and encoder.config != config:
        raise ConfigError("the encoder was built with another EncodeConfig")
    examples, src, chash, read_policy = _unpack(examples)
    on_invalid = on_invalid or read_policy or "error"
    dataset_source = dataset_source or src or "<records>"
    content_hash = content_hash or chash or examples_digest(examples)
    if not examples:
        raise ConfigError("no examples to extract")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():   # before the model is loaded
        raise ConfigError(f"{out_dir} is a file, not a directory: a feature store is a "
                          "directory; choose another --out (nothing was changed)")
    n_given = len(examples)
    enc = encoder or Encoder(config)
    encoded, skipped = enc.encode_some(examples)
    if skipped and on_invalid == "error":
        raise InputError(skipped)
    if skipped:
        logger.warning("skipped %d of %d example(s) the encoder cannot use (e.g. %s)",
                       len(skipped), n_given, skipped[0])
        kept = {ex.index for ex in examples} - {f.index for f in skipped}
        examples = [ex for ex in examples if ex.index in kept]
        if not examples:
            raise InputError(skipped)
    batches = enc.plan(encoded)
    lengths = [e.n_tokens for e in encoded]
    plan_digest = hashlib.sha256(json.dumps([batches, lengths]).encode()).hexdigest()
    info = enc.loaded.info
    sites = enc.loaded.sites
    fingerprint = {
        "format": STORE_FORMAT,
        "tool_version": __version__,
        "config": config.to_dict(),
        "model": {k: info[k] for k in ("name", "revision", "architecture", "weights")},
        "adapter": {"config": info["adapter_config"],
                    "weights_sha256": info["adapter_weights_sha256"]},
        "projection": {"kind": config.projection, "k": config.k, "seed": config.seed},
        "dataset": {"content_hash": content_hash, "n_examples": n_given},
        "plan_sha256": plan_digest,
        "n_params": enc.loaded.n_params,
    }
    head = enc.engine.head
    d_model = int(head.weight.shape[1]) if head is not None else None
    vocab_size = int(head.weight.shape[0]) if head is not None else len(enc.loaded.tokenizer)
    manifest = {
        "format": STORE_FORMAT,
        "fingerprint": fingerprint,
        "tool_version": __version__,
        "config": config.to_dict(),
        "model": info,
        "adapter_config": info["adapter_config"],
        "projection": fingerprint["projection"],
        "dataset": {"path": str(dataset_source), "content_hash": content_hash,
                    "n_examples": n_given},
        "n_rows": len(examples),
        "skipped": [{"source": f.source, "line": f.line, "message": f.message,
                     "code": getattr(f, "code", "invalid"), "index": getattr(f, "index", None)}
                    for f in skipped],
        "n_params": enc.loaded.n_params,
        "dim": enc.dim,
        "d_model": d_model,
        "vocab_size": vocab_size,
        "modules": [{"name": s.name, "layer": s.layer, "kind": s.kind, "n_params": s.n_params,
                     "column": s.column} for s in sites],
        "n_batches": len(batches),
        "complete": False,
    }
    if prepare_dir(out_dir, manifest, overwrite=overwrite):
        logger.info("%s already holds this extraction; reusing it", out_dir)
        return FeatureStore.open(out_dir)
    done = {b for b in range(len(batches))
            if (out_dir / SHARDS / f"{b:06d}.npz").exists() and verify_shard(out_dir, b)}
    n_done = sum(len(batches[b]) for b in done)
    if done:
        logger.info("resuming: %d of %d batches already done", len(done), len(batches))
    bar = progress(total=len(examples), desc="extract", unit="ex")
    bar.update(n_done)
    start, n_new = time.perf_counter(), 0
    try:
        for b, positions in enumerate(batches):
            if b in done:
                continue
            res = enc.compute([encoded[p] for p in positions])
            try:
                write_shard(out_dir, b, {
                    "positions": np.asarray(positions, dtype=np.int64),
                    "features": res.features.astype(np.float32),
                    "input_factors": res.input_factors.astype(np.float32),
                    "output_factors": res.output_factors.astype(np.float32),
                    "energy": res.energy, "grad_norm": res.grad_norm, "loss": res.loss,
                    "token_nll": res.token_nll.astype(np.float32),
                    "token_rank": res.token_rank.astype(np.int32),
                    "token_counts": res.token_counts,
                    "token_nll_noinput": res.token_nll_noinput.astype(np.float32),
                    "loss_noinput": res.loss_noinput})
            except OSError as err:
                raise ConfigError(
                    f"cannot write to the feature store {out_dir}: {err.strerror or err}; "
                    "the batches written so far are kept: fix it and run the same command "
                    "again to resume") from err
            bar.update(len(positions))
            n_new += len(positions)
    finally:
        bar.close()
    elapsed = time.perf_counter() - start
    try:
        _assemble(out_dir, manifest, examples, encoded, batches, enc.dim,
                  stats={"seconds": round(elapsed, 3), "examples_computed": n_new,
                         "examples_per_s": round(n_new / elapsed, 3) if elapsed > 0 else None})
    except OSError as err:
        raise ConfigError(
            f"cannot write to the feature store {out_dir}: {err.strerror or err}; the batches "
            "are kept: fix it and run the same command again to finish") from err
    return FeatureStore.open(out_dir)


def _assemble(out_dir: Path, manifest: dict, examples: list[Example], encoded: list[Encoded],
              batches: list[list[int]], dim: int, stats: dict) -> None:
    n = len(examples)
    sites = manifest["modules"]
    d = manifest["d_model"]
    tmp = {name: out_dir / f"{name}.npy.tmp" for name in
           ("features", "input_factors", "output_factors")}
    feats = np.lib.format.open_memmap(tmp["features"], mode="w+", dtype=np.float32,
                                      shape=(n, dim))
    inp = np.lib.format.open_memmap(tmp["input_factors"], mode="w+", dtype=np.float32,
                                    shape=(n, d))
    outp = np.lib.format.open_memmap(tmp["output_factors"], mode="w+", dtype=np.float32,
                                     shape=(n, d))
    energy = np.zeros((n, len(sites)))
    grad_norm, loss, loss_noinput = np.zeros(n), np.zeros(n), np.zeros(n)
    tok_nll: list[np.ndarray | None] = [None] * n
    tok_rank: list[np.ndarray | None] = [None] * n
    tok_noinput: list[np.ndarray | None] = [None] * n
    for b in range(len(batches)):
        shard = read_shard(out_dir, b, SHARD_KEYS)
        if shard is None or shard["positions"].tolist() != list(batches[b]):
            raise ConfigError(f"shard {b} of {out_dir} is missing or damaged; run the same "
                              "extract command again (it recomputes that batch)")
        pos = shard["positions"]
        feats[pos] = shard["features"]
        inp[pos] = shard["input_factors"]
        outp[pos] = shard["output_factors"]
        energy[pos] = shard["energy"]
        grad_norm[pos] = shard["grad_norm"]
        loss[pos] = shard["loss"]
        loss_noinput[pos] = shard["loss_noinput"]
        bounds = np.concatenate([[0], np.cumsum(shard["token_counts"])])
        for j, p in enumerate(pos.tolist()):
            tok_nll[p] = shard["token_nll"][bounds[j]:bounds[j + 1]]
            tok_rank[p] = shard["token_rank"][bounds[j]:bounds[j + 1]]
            tok_noinput[p] = shard["token_nll_noinput"][bounds[j]:bounds[j + 1]]
    for arr in (feats, inp, outp):
        arr.flush()
    del feats, inp, outp
    TokenProfiles.from_lists(
        tok_nll, tok_rank,
        [e.input_ids[e.predicted_targets()] for e in encoded],
        [e.target_pieces() for e in encoded], tok_noinput).save(out_dir, suffix=".tmp")
    with np.errstate(divide="ignore", invalid="ignore"):
        ifd = np.where(loss_noinput > 0, loss / loss_noinput, np.nan)
    table = pd.DataFrame({
        "index": [ex.index for ex in examples],
        "line": [ex.line for ex in examples],
        "schema": [ex.schema for ex in examples],
        "template": [e.template for e in encoded],
        "n_tokens": [e.n_tokens for e in encoded],
        "n_input_tokens": [e.n_input_tokens for e in encoded],
        "n_target_tokens": [e.n_target_tokens for e in encoded],
        "n_truncated": [e.n_truncated for e in encoded],
        "truncated": [e.n_truncated > 0 for e in encoded],
        "loss": loss,
        "nll_noinput": loss_noinput,
        "input_gain": loss_noinput - loss,
        "ifd": ifd,
        "grad_norm": grad_norm,
    })
    for j, site in enumerate(sites):
        table[site["column"]] = energy[:, j]
    table.to_csv(out_dir / "examples.csv.tmp", index=False, float_format="%.17g")
    for name, path in tmp.items():
        os.replace(path, out_dir / f"{name}.npy")
    TokenProfiles.commit(out_dir, suffix=".tmp")
    os.replace(out_dir / "examples.csv.tmp", out_dir / "examples.csv")
    n_trunc = int(table["truncated"].sum())
    if n_trunc:
        logger.warning("%d of %d examples were truncated to max_length (%d tokens dropped)",
                       n_trunc, n, int(table["n_truncated"].sum()))
    manifest = dict(manifest)
    manifest["stats"] = {
        **stats,
        "n_truncated_examples": n_trunc,
        "n_truncated_tokens": int(table["n_truncated"].sum()),
        "n_target_tokens": int(table["n_target_tokens"].sum()),
        "n_tokens": int(table["n_tokens"].sum()),
    }
    manifest["complete"] = True
    write_json_atomic(out_dir / MANIFEST, manifest)
    shutil.rmtree(out_dir / SHARDS, ignore_errors=True)
