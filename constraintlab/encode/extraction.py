"""Examples -> feature store: tokenise, bucket, batched per-example gradients, shards, assemble."""

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
    write_json_atomic,
    write_shard,
)
from constraintlab.encode.tokenize import Encoded, Renderer
from constraintlab.errors import ConfigError
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

    def plan(self, encoded: Sequence[Encoded]) -> list[list[int]]:
        return plan_batches([e.n_tokens for e in encoded], self.config.batch_size,
                            self.config.max_batch_tokens)

    def compute(self, batch: Sequence[Encoded]) -> BatchResult:
        """Per-example results for one batch (rows in ``batch`` order)."""
        return self.engine.run(list(batch))


def _unpack(examples) -> tuple[list[Example], str | None, str | None]:
    if hasattr(examples, "examples"):
        return (list(examples.examples), getattr(examples, "source", None),
                getattr(examples, "content_hash", None))
    return list(examples), None, None


def extract(examples: Iterable[Example], config: EncodeConfig | None = None,
            out_dir: str | os.PathLike = "features", *, dataset_source: str | None = None,
            content_hash: str | None = None, overwrite: bool = False,
            encoder: Encoder | None = None) -> FeatureStore:
    """Build (or resume, or reuse) the feature store of ``examples`` in ``out_dir``.

    Parameters
    ----------
    examples : sequence of Example, or an ``ExampleSet`` (its source and content hash are used)
    config : EncodeConfig, default ``EncodeConfig()``
    out_dir : directory of the store. An unfinished store built with the same settings and
        data is resumed (finished batches are kept); a finished one is returned as is; one
        built otherwise raises :class:`~constraintlab.errors.StoreMismatchError`.
    dataset_source : path recorded in the manifest.
    content_hash : sha256 of the dataset file; default: a hash of the examples' content.
    overwrite : delete an existing store in ``out_dir`` first.
    encoder : reuse a loaded :class:`Encoder` (built with ``config``).

    Returns
    -------
    FeatureStore
    """
    config = config or (encoder.config if encoder is not None else EncodeConfig())
    if encoder is not None and encoder.config != config:
        raise ConfigError("the encoder was built with another EncodeConfig")
    examples, src, chash = _unpack(examples)
    dataset_source = dataset_source or src or "<records>"
    content_hash = content_hash or chash or examples_digest(examples)
    if not examples:
        raise ConfigError("no examples to extract")
    out_dir = Path(out_dir)
    enc = encoder or Encoder(config)
    encoded = enc.encode(examples)
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
        "dataset": {"content_hash": content_hash, "n_examples": len(examples)},
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
                    "n_examples": len(examples)},
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
    done = {b for b in range(len(batches)) if (out_dir / SHARDS / f"{b:06d}.npz").exists()}
    n_done = sum(len(batches[b]) for b in done)
    if done:
        logger.info("resuming: %d of %d batches already done", len(done), len(batches))
    bar = progress(total=len(examples), desc="extract", unit="ex")
    bar.update(n_done)
    start, n_new = time.perf_counter(), 0
    try:
        for b, positions in enumerate(batches):
            if b in done and read_shard(out_dir, b) is not None:
                continue
            res = enc.compute([encoded[p] for p in positions])
            write_shard(out_dir, b, {
                "positions": np.asarray(positions, dtype=np.int64),
                "features": res.features.astype(np.float32),
                "input_factors": res.input_factors.astype(np.float32),
                "output_factors": res.output_factors.astype(np.float32),
                "energy": res.energy, "grad_norm": res.grad_norm, "loss": res.loss,
                "token_nll": res.token_nll.astype(np.float32),
                "token_rank": res.token_rank.astype(np.int32),
                "token_counts": res.token_counts})
            bar.update(len(positions))
            n_new += len(positions)
    finally:
        bar.close()
    elapsed = time.perf_counter() - start
    _assemble(out_dir, manifest, examples, encoded, batches, enc.dim,
              stats={"seconds": round(elapsed, 3), "examples_computed": n_new,
                     "examples_per_s": round(n_new / elapsed, 3) if elapsed > 0 else None})
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
    grad_norm, loss = np.zeros(n), np.zeros(n)
    tok_nll: list[np.ndarray | None] = [None] * n
    tok_rank: list[np.ndarray | None] = [None] * n
    for b in range(len(batches)):
        shard = read_shard(out_dir, b)
        if shard is None:
            raise ConfigError(f"shard {b} of {out_dir} is missing; run extract again")
        pos = shard["positions"]
        feats[pos] = shard["features"]
        inp[pos] = shard["input_factors"]
        outp[pos] = shard["output_factors"]
        energy[pos] = shard["energy"]
        grad_norm[pos] = shard["grad_norm"]
        loss[pos] = shard["loss"]
        bounds = np.concatenate([[0], np.cumsum(shard["token_counts"])])
        for j, p in enumerate(pos.tolist()):
            tok_nll[p] = shard["token_nll"][bounds[j]:bounds[j + 1]]
            tok_rank[p] = shard["token_rank"][bounds[j]:bounds[j + 1]]
    for arr in (feats, inp, outp):
        arr.flush()
    del feats, inp, outp
    TokenProfiles.from_lists(
        tok_nll, tok_rank,
        [e.input_ids[e.predicted_targets()] for e in encoded],
        [e.target_pieces() for e in encoded]).save(out_dir, suffix=".tmp")
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
