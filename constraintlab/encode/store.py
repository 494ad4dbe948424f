"""The feature store: its format, written and read here and nowhere else.

One directory per extraction, written in shards by work units, resumable. The encoder
(:mod:`.extraction`, :mod:`.distributed`) computes; this module decides every file name, array,
column and manifest key: :func:`new_manifest` and :func:`prepare_dir` open a store,
:func:`shard_arrays` / :func:`write_shard` / :func:`write_unit_marker` write a unit,
:func:`assemble` turns the shards into the files below, and :class:`FeatureStore` reads them.

Layout
------
``manifest.json``
    Written when the store is opened (``complete`` false) and rewritten, complete, by
    :func:`assemble`. ``format`` (:data:`STORE_FORMAT`), ``fingerprint`` (everything that
    determines the numbers: format, tool version, full EncodeConfig, model
    name/revision/architecture/weights digest, adapter config and weights digest, projection
    kind/k/seed, dataset content hash and size, ``n_params``; a store is reused only when it is
    the same), ``tool_version``, ``config``, ``model`` (what the loader reported),
    ``adapter_config``, ``projection``, ``dataset`` (``path``, ``content_hash``,
    ``n_examples``), ``n_params`` (P), ``dim`` (k, or P without projection), ``d_model``,
    ``vocab_size``, ``modules`` (one ``{name, layer, kind, n_params, column}`` per LoRA site),
    ``n_units``, ``complete``; once complete also ``n_rows``, ``skipped`` (the records left out,
    :func:`finding_dict`), ``n_batches``, ``plan_sha256`` (of the units' batch plans),
    ``projection_sha256`` (of the projection matrices) and ``stats`` (timings, the runs that
    computed the units, token counts).
``features.npy``
    (N, k) float32, memory-mappable; row n is the n-th usable example given to ``extract``.
``input_factors.npy`` / ``output_factors.npy``
    (N, d) float32; see :class:`constraintlab.encode.gradients.BatchResult`.
``examples.csv``
    One row per example: ``index``, ``line``, ``schema``, ``template``, ``n_tokens``,
    ``n_input_tokens``, ``n_target_tokens``, ``n_truncated``, ``truncated``, ``loss`` (mean NLL
    of the target given its input), ``nll_noinput`` (mean NLL of the same target tokens with
    the input removed, see :mod:`constraintlab.encode.tokenize`), ``input_gain`` =
    ``nll_noinput - loss`` (nats per target token the input explains: the pointwise mutual
    information of input and target per token; ~0 or negative = the input does not help
    predict the target), ``ifd`` = ``loss / nll_noinput`` (Cherry-LLM's instruction-following
    difficulty; near or above 1 = the input does not help), ``grad_norm``, and one
    ``energy:<layer>:<module type>`` column per LoRA site (squared norm of the example's
    gradient on that site; the columns sum to ``grad_norm**2``). Examples without input (plain
    text) have ``input_gain == 0`` and ``ifd == 1``.
``tokens.npz`` / ``tokens.jsonl``
    Per-token profiles of the predicted target tokens (:class:`TokenProfiles`): ``offsets``
    (N + 1), ``nll`` (T,) float32, ``nll_noinput`` (T,) float32 (the same token with the input
    removed; NaN where it is not scored without input), ``rank`` (T,) int32 (logits strictly
    above the target's; 0 = the model's top prediction), ``ids`` (T,) int32; ``tokens.jsonl``
    holds one JSON list of the tokens' text pieces per example.
``shards/``
    While running, per work unit ``UUUUUU`` (``EncodeConfig.unit_size`` consecutive examples):
    one ``UUUUUU-BBBBBB.npz`` per batch (the arrays :data:`SHARD_KEYS`, made by
    :func:`shard_arrays`: results and the examples' token metadata), fsynced and renamed into
    place, then its marker ``UUUUUU-BBBBBB.ok`` (size and sha256 of the shard, written the
    same way); after the unit's last batch, ``UUUUUU.done`` (JSON: ``n_batches``, the unit's
    ``plan_sha256`` and ``projection_sha256``, ``skipped`` and ``skipped_positions``, and who
    computed it: ``run``, ``mode``, ``examples_computed``, ``seconds``, ``finished``...). On
    resume a unit with a ``.done`` is skipped and a shard counts as done only when its marker
    matches it; any other shard (killed mid-write, truncated, no marker) is recomputed. The
    same files are written by one process and by Ray workers
    (:mod:`constraintlab.encode.distributed`), so either resumes what the other started.
    Removed when complete.

Records the encoder could not use (``--on-invalid skip``: a target truncated away by
``max_length``, a template that cannot render the record) are not rows: they are listed in the
manifest's ``skipped`` and in :attr:`FeatureStore.skipped`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from constraintlab._hashing import file_sha256, json_sha256
from constraintlab._version import __version__
from constraintlab.errors import ConfigError, Finding, InputError, StoreMismatchError

if TYPE_CHECKING:
    from constraintlab.encode.gradients import BatchResult
    from constraintlab.encode.tokenize import Encoded
    from constraintlab.io.example import Example

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
SHARDS = "shards"
#: Layout version written in every manifest; a store of another format is never reused.
#: 3: input dependence (``nll_noinput``, ``input_gain``, ``ifd``; per-token ``nll_noinput``),
#: shard markers, ``skipped``. 4: work units (batches planned per unit of ``unit_size``
#: examples; per-unit markers), ``plan_sha256``/``projection_sha256`` in the manifest.
STORE_FORMAT = "constraintlab.features/4"


# ---- writing: the manifest, shards and unit markers, then the assembled store -------------

def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomic(path: Path, obj: dict, *, indent: int = 2) -> None:
    """Write ``obj`` as JSON to ``path``: a temp file of this process (several Ray workers may
    write beside each other), fsync, rename (never a half-written file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(obj, indent=indent, sort_keys=True))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def read_manifest(out_dir: Path) -> dict:
    """The manifest of the store in ``out_dir``.

    Raises
    ------
    StoreMismatchError
        When it is missing, unreadable, not JSON, or not a JSON object (the store is damaged:
        nothing is deleted, the message says how to rebuild).
    """
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        raise StoreMismatchError(f"{out_dir} is not a constraintlab feature store")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        why = getattr(err, "strerror", None) or type(err).__name__
        raise StoreMismatchError(
            f"{path} is damaged (cannot be read as JSON: {why}); the store cannot be trusted. "
            "Rebuild it with --overwrite (deletes this store) or choose another --out") from err
    if not isinstance(obj, dict):
        raise StoreMismatchError(
            f"{path} is damaged (a JSON {type(obj).__name__}, not an object); rebuild the "
            "store with --overwrite (deletes this store) or choose another --out")
    return obj


def _diff(old: object, new: object, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += _diff(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')}: store has {old!r}, now {new!r}"]


def _comparable(fingerprint: object) -> object:
    """``fingerprint`` without where the model was read from: peft records the base model's
    path in the adapter config (``base_model_name_or_path``), so the same built-in model
    checked out in two places would never share a store; the model is identified by its name,
    revision, architecture and weights digest instead."""
    if not isinstance(fingerprint, dict) or not isinstance(fingerprint.get("adapter"), dict):
        return fingerprint
    adapter = dict(fingerprint["adapter"])
    if isinstance(adapter.get("config"), dict):
        adapter["config"] = {k: v for k, v in adapter["config"].items()
                             if k != "base_model_name_or_path"}
    return {**fingerprint, "adapter": adapter}


def check_out_dir(out_dir: str | os.PathLike) -> Path:
    """``out_dir`` as a Path; a ConfigError when it is a file (checked before loading)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir} is a file, not a directory: a feature store is a "
                          "directory; choose another --out (nothing was changed)")
    return out_dir


def new_manifest(config, info: dict[str, Any], *, n_params: int, dim: int,
                 d_model: int | None, vocab_size: int, modules: list[dict[str, Any]],
                 n_units: int, dataset_source: str, content_hash: str,
                 n_examples: int) -> dict[str, Any]:
    """The manifest of a store being opened (``complete`` False; the keys are in the module
    docstring).

    Parameters
    ----------
    config : EncodeConfig
    info : what the model loader reports (``LoadedModel.info``: ``name``, ``revision``,
        ``architecture``, ``weights``, ``adapter_config``, ``adapter_weights_sha256``...)
    n_params, dim, d_model, vocab_size : P, the feature width, the model's hidden size (None
        when it has no output embedding) and vocabulary size
    modules : one ``{name, layer, kind, n_params, column}`` per LoRA site
    n_units : work units of the extraction
    dataset_source, content_hash, n_examples : the dataset's path, identity and size
    """
    fingerprint = {
        "format": STORE_FORMAT,
        "tool_version": __version__,
        "config": config.to_dict(),
        "model": {k: info[k] for k in ("name", "revision", "architecture", "weights")},
        "adapter": {"config": info["adapter_config"],
                    "weights_sha256": info["adapter_weights_sha256"]},
        "projection": {"kind": config.projection, "k": config.k, "seed": config.seed},
        "dataset": {"content_hash": content_hash, "n_examples": n_examples},
        "n_params": n_params,
    }
    return {
        "format": STORE_FORMAT,
        "fingerprint": fingerprint,
        "tool_version": __version__,
        "config": config.to_dict(),
        "model": info,
        "adapter_config": info["adapter_config"],
        "projection": fingerprint["projection"],
        "dataset": {"path": str(dataset_source), "content_hash": content_hash,
                    "n_examples": n_examples},
        "n_params": n_params,
        "dim": dim,
        "d_model": d_model,
        "vocab_size": vocab_size,
        "modules": modules,
        "n_units": n_units,
        "complete": False,
    }


def prepare_dir(out_dir: Path, manifest: dict, *, overwrite: bool) -> bool:
    """Create, reuse or refuse ``out_dir``.

    Returns True when the directory already holds a complete store with the same fingerprint.
    Raises :class:`StoreMismatchError` when it holds anything built otherwise.
    """
    out_dir = check_out_dir(out_dir)
    try:
        if overwrite and out_dir.exists():
            if (out_dir / MANIFEST).exists() or (out_dir / SHARDS).exists():
                shutil.rmtree(out_dir)
            elif any(out_dir.iterdir()):
                raise StoreMismatchError(
                    f"{out_dir} is not a constraintlab feature store; refusing to delete it")
        if out_dir.exists() and any(out_dir.iterdir()):
            if not (out_dir / MANIFEST).exists():
                raise StoreMismatchError(
                    f"{out_dir} exists and is not a constraintlab feature store; choose an "
                    "empty or new directory")
            old = read_manifest(out_dir)
            diffs = _diff(_comparable(old.get("fingerprint")),
                          _comparable(manifest["fingerprint"]))
            if diffs:
                shown = "\n  ".join(diffs[:12])
                raise StoreMismatchError(
                    f"{out_dir} holds features built with other settings or data; they are "
                    f"never mixed. Use another --out or --overwrite. Differences:\n  {shown}")
            if old.get("complete"):
                return True
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / SHARDS).mkdir(exist_ok=True)
        write_json_atomic(out_dir / MANIFEST, manifest)
    except OSError as err:
        raise ConfigError(f"cannot write the feature store in {out_dir}: "
                          f"{err.strerror or err}") from err
    return False


def shard_key(unit: int, batch: int) -> str:
    """Name (without suffix) of the shard of batch ``batch`` of work unit ``unit``."""
    return f"{unit:06d}-{batch:06d}"


def _name(batch_id: int | str) -> str:
    return f"{batch_id:06d}" if isinstance(batch_id, int) else str(batch_id)


def shard_path(out_dir: Path, batch_id: int | str) -> Path:
    return Path(out_dir) / SHARDS / f"{_name(batch_id)}.npz"


def marker_path(out_dir: Path, batch_id: int | str) -> Path:
    return Path(out_dir) / SHARDS / f"{_name(batch_id)}.ok"


def unit_marker_path(out_dir: Path, unit: int) -> Path:
    return Path(out_dir) / SHARDS / f"{unit:06d}.done"


def write_unit_marker(out_dir: Path, unit: int, info: dict) -> None:
    """Mark work unit ``unit`` finished (atomic JSON, written after its last shard)."""
    write_json_atomic(unit_marker_path(out_dir, unit), info, indent=1)


def read_unit_marker(out_dir: Path, unit: int) -> dict | None:
    """The marker of finished unit ``unit``, or None (unfinished, or a damaged marker: then
    the unit is run again, keeping its verified shards)."""
    try:
        out = json.loads(unit_marker_path(out_dir, unit).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return out if isinstance(out, dict) and "n_batches" in out else None


def unit_projection(out_dir: Path, markers: Sequence[dict | None]) -> str | None:
    """The projection digest of the finished units (``markers``, None for an unfinished one),
    None when there are none; :class:`StoreMismatchError` when they disagree."""
    digests = {m["projection_sha256"] for m in markers if m is not None}
    if len(digests) > 1:
        raise StoreMismatchError(
            f"units of {out_dir} were computed with different projection matrices "
            f"({', '.join(sorted(d[:12] for d in digests))}); rebuild it with --overwrite")
    return next(iter(digests), None)


def finding_dict(f: Finding) -> dict:
    """A finding as the manifest (and a unit marker) records it."""
    return {"source": f.source, "line": f.line, "message": f.message,
            "code": getattr(f, "code", "invalid"), "index": getattr(f, "index", None)}


def finding_from_dict(d: dict) -> Finding:
    """The finding :func:`finding_dict` recorded."""
    return Finding(str(d.get("source", "")), int(d.get("line", 0)), str(d.get("message", "")),
                   code=str(d.get("code", "invalid")), index=d.get("index"))


#: arrays every shard holds (a shard lacking one is recomputed): results, then the examples'
#: token metadata (the assembled table and token profiles come from shards only)
SHARD_KEYS = ("positions", "features", "input_factors", "output_factors", "energy",
              "grad_norm", "loss", "token_nll", "token_rank", "token_counts",
              "token_nll_noinput", "loss_noinput", "plan_sha256", "n_tokens", "n_input_tokens",
              "n_target_tokens", "n_truncated", "template", "target_ids", "target_pieces")


def shard_arrays(positions: np.ndarray, plan: np.ndarray, batch: Sequence[Encoded],
                 res: BatchResult) -> dict[str, np.ndarray]:
    """Everything the store keeps of one batch (:data:`SHARD_KEYS`).

    Parameters
    ----------
    positions : (B,) int64
        Each row's position among the examples given to ``extract``.
    plan : (32,) uint8
        The unit's plan digest (sha256 bytes).
    batch : B tokenised examples, in row order
    res : their :class:`~constraintlab.encode.gradients.BatchResult`
    """
    return {
        "positions": positions, "plan_sha256": plan,
        "features": res.features.astype(np.float32),
        "input_factors": res.input_factors.astype(np.float32),
        "output_factors": res.output_factors.astype(np.float32),
        "energy": res.energy, "grad_norm": res.grad_norm, "loss": res.loss,
        "token_nll": res.token_nll.astype(np.float32),
        "token_rank": res.token_rank.astype(np.int32),
        "token_counts": res.token_counts,
        "token_nll_noinput": res.token_nll_noinput.astype(np.float32),
        "loss_noinput": res.loss_noinput,
        "n_tokens": np.asarray([e.n_tokens for e in batch], dtype=np.int64),
        "n_input_tokens": np.asarray([e.n_input_tokens for e in batch], dtype=np.int64),
        "n_target_tokens": np.asarray([e.n_target_tokens for e in batch], dtype=np.int64),
        "n_truncated": np.asarray([e.n_truncated for e in batch], dtype=np.int64),
        "template": np.asarray([e.template for e in batch], dtype=str),
        "target_ids": np.concatenate(
            [e.input_ids[e.predicted_targets()] for e in batch]).astype(np.int32),
        # one JSON list per example (JSON escapes control characters, so NumPy's unicode
        # arrays, which drop trailing NULs, keep every piece)
        "target_pieces": np.asarray(
            [json.dumps(e.target_pieces(), ensure_ascii=False) for e in batch], dtype=str),
    }


def write_shard(out_dir: Path, batch_id: int | str, arrays: dict[str, np.ndarray]) -> None:
    """Write one batch's arrays: temp file, fsync, rename; then its marker (size, sha256,
    array names), written the same way. A shard without a matching marker is never used."""
    final = shard_path(out_dir, batch_id)
    marker = marker_path(out_dir, batch_id)
    marker.unlink(missing_ok=True)
    tmp = final.with_name(f".{final.stem}.{os.getpid()}.tmp.npz")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    _fsync_dir(final.parent)
    write_json_atomic(marker, {"size": final.stat().st_size, "sha256": file_sha256(final),
                               "arrays": sorted(arrays)})


def verify_shard(out_dir: Path, batch_id: int | str) -> bool:
    """True when shard ``batch_id`` exists and matches its marker (size and sha256)."""
    path, marker = shard_path(out_dir, batch_id), marker_path(out_dir, batch_id)
    if not path.is_file():
        return False
    why = None
    try:
        meta = json.loads(marker.read_text(encoding="utf-8"))
        if not isinstance(meta, dict):
            why = "its marker is not a JSON object"
        elif meta.get("size") != path.stat().st_size:
            why = f"{path.stat().st_size} bytes, its marker says {meta.get('size')}"
        elif meta.get("sha256") != file_sha256(path):
            why = "its content does not match the sha256 in its marker"
    except FileNotFoundError:
        why = "it has no marker (the run stopped while writing it)"
    except (OSError, UnicodeDecodeError, ValueError) as err:
        why = f"its marker cannot be read ({type(err).__name__})"
    if why is not None:
        logger.warning("shard %s of %s is incomplete or damaged (%s); recomputing it",
                       _name(batch_id), out_dir, why)
        return False
    return True


def read_shard(out_dir: Path, batch_id: int | str, keys: Sequence[str] = ()
               ) -> dict[str, np.ndarray] | None:
    """The shard's arrays, or None if it is missing, fails :func:`verify_shard`, cannot be
    parsed or lacks one of ``keys`` (then it is recomputed)."""
    if not verify_shard(out_dir, batch_id):
        return None
    try:
        with np.load(shard_path(out_dir, batch_id)) as z:
            out = {key: z[key] for key in z.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        logger.warning("shard %s of %s cannot be read (%s); recomputing it", _name(batch_id),
                       out_dir, type(err).__name__)
        return None
    missing = [k for k in keys if k not in out]
    if missing:
        logger.warning("shard %s of %s lacks %s; recomputing it", _name(batch_id), out_dir,
                       ", ".join(missing))
        return None
    return out


def assemble(out_dir: Path, manifest: dict, given: Sequence[Example],
             markers: Sequence[dict | None], stats: dict) -> None:
    """Turn the finished units' shards into the complete store (the files of the module
    docstring), write its manifest, complete, and remove ``shards/``.

    Parameters
    ----------
    out_dir : the store directory
    manifest : the manifest written when the store was opened (:func:`new_manifest`)
    given : everything given to ``extract`` (shard ``positions`` index it; rows are the usable
        examples, in this order)
    markers : each unit's marker (:func:`read_unit_marker`); every unit must be finished
    stats : the run's statistics, recorded under the manifest's ``stats``

    Raises
    ------
    ConfigError
        A unit is unfinished, or a shard is missing or damaged (its unit's marker is removed,
        so the same command recomputes it).
    InputError
        Every example was skipped.
    StoreMismatchError
        The units were computed with different projection matrices.
    """
    out_dir = Path(out_dir)
    missing = [u for u, m in enumerate(markers) if m is None]
    if missing:
        raise ConfigError(f"{len(missing)} work unit(s) of {out_dir} are unfinished (first: "
                          f"{missing[0]}); run the same extract command again")
    projection = unit_projection(out_dir, markers)
    skipped = [finding_from_dict(f) for m in markers for f in m.get("skipped", [])]
    skipped_pos = {p for m in markers for p in m.get("skipped_positions", [])}
    row_of = np.full(len(given), -1, dtype=np.int64)
    kept = [p for p in range(len(given)) if p not in skipped_pos]
    row_of[kept] = np.arange(len(kept))
    if not kept:
        raise InputError(skipped)
    if skipped:
        logger.warning("skipped %d of %d example(s) the encoder cannot use (e.g. %s)",
                       len(skipped), len(given), skipped[0])
    examples = [given[p] for p in kept]
    manifest = dict(manifest)
    n = len(examples)
    tmp = {name: out_dir / f"{name}.npy.tmp" for name in
           ("features", "input_factors", "output_factors")}
    shapes = {"features": (n, manifest["dim"]), "input_factors": (n, manifest["d_model"]),
              "output_factors": (n, manifest["d_model"])}
    rows = _gather(out_dir, markers, row_of, tmp, shapes, len(manifest["modules"]))
    rows.tokens.save(out_dir, suffix=".tmp")
    table = _examples_table(examples, rows, manifest["modules"])
    table.to_csv(out_dir / "examples.csv.tmp", index=False, float_format="%.17g")
    for name, path in tmp.items():
        os.replace(path, out_dir / f"{name}.npy")
    TokenProfiles.commit(out_dir, suffix=".tmp")
    os.replace(out_dir / "examples.csv.tmp", out_dir / "examples.csv")
    n_trunc = int(table["truncated"].sum())
    if n_trunc:
        logger.warning("%d of %d examples were truncated to max_length, or to the model's "
                       "positions where those are fewer (%d tokens dropped)",
                       n_trunc, n, int(table["n_truncated"].sum()))
    manifest["n_rows"] = n
    manifest["skipped"] = [finding_dict(f) for f in skipped]
    manifest["n_batches"] = sum(m["n_batches"] for m in markers)
    manifest["plan_sha256"] = json_sha256([m["plan_sha256"] for m in markers])
    manifest["projection_sha256"] = projection
    manifest["stats"] = {
        **stats,
        # what each run (this one and any interrupted one before it) computed, by its units
        "runs": _runs(markers),
        "n_truncated_examples": n_trunc,
        "n_truncated_tokens": int(table["n_truncated"].sum()),
        "n_target_tokens": int(table["n_target_tokens"].sum()),
        "n_tokens": int(table["n_tokens"].sum()),
    }
    manifest["complete"] = True
    write_json_atomic(out_dir / MANIFEST, manifest)
    shutil.rmtree(out_dir / SHARDS, ignore_errors=True)


#: per-example numbers of a shard that become columns of ``examples.csv`` as they are
_COUNTS = ("n_tokens", "n_input_tokens", "n_target_tokens", "n_truncated")


@dataclass
class _Rows:
    """The per-example results of every shard, in row order (what :func:`_gather` collects)."""

    energy: np.ndarray          # (N, M) float64
    grad_norm: np.ndarray       # (N,) float64
    loss: np.ndarray            # (N,) float64
    loss_noinput: np.ndarray    # (N,) float64
    counts: dict[str, np.ndarray]   # _COUNTS, each (N,) int64
    template: list[str]
    tokens: TokenProfiles


def _gather(out_dir: Path, markers: Sequence[dict], row_of: np.ndarray,
            tmp: dict[str, Path], shapes: dict[str, tuple[int, int]], n_sites: int) -> _Rows:
    """Read every unit's shards in order: the (N, k) and (N, d) arrays go straight into the
    memory-mapped files ``tmp`` (flushed and closed here), the rest is returned.

    ``row_of`` : (len(given),) int64, each position's row (-1: skipped).
    """
    n = shapes["features"][0]
    big = {name: np.lib.format.open_memmap(path, mode="w+", dtype=np.float32,
                                           shape=shapes[name]) for name, path in tmp.items()}
    energy = np.zeros((n, n_sites))
    grad_norm, loss, loss_noinput = np.zeros(n), np.zeros(n), np.zeros(n)
    counts = {name: np.zeros(n, dtype=np.int64) for name in _COUNTS}
    template: list[str] = [""] * n
    tok: dict[str, list] = {name: [None] * n for name in ("nll", "rank", "ids", "noinput")}
    lines: list[str] = ["[]"] * n
    for u, marker in enumerate(markers):
        for j in range(marker["n_batches"]):
            shard = read_shard(out_dir, shard_key(u, j), SHARD_KEYS)
            if shard is None:
                unit_marker_path(out_dir, u).unlink(missing_ok=True)   # recompute the unit
                raise ConfigError(f"shard {shard_key(u, j)} of {out_dir} is missing or "
                                  "damaged; run the same extract command again (it "
                                  "recomputes that batch)")
            rows = row_of[shard["positions"]]
            for name, arr in big.items():
                arr[rows] = shard[name]
            energy[rows] = shard["energy"]
            grad_norm[rows] = shard["grad_norm"]
            loss[rows] = shard["loss"]
            loss_noinput[rows] = shard["loss_noinput"]
            for name, arr in counts.items():
                arr[rows] = shard[name]
            bounds = np.concatenate([[0], np.cumsum(shard["token_counts"])])
            for i, r in enumerate(rows.tolist()):
                sl = slice(bounds[i], bounds[i + 1])
                tok["nll"][r] = shard["token_nll"][sl]
                tok["rank"][r] = shard["token_rank"][sl]
                tok["ids"][r] = shard["target_ids"][sl]
                tok["noinput"][r] = shard["token_nll_noinput"][sl]
                lines[r] = str(shard["target_pieces"][i])
                template[r] = str(shard["template"][i])
    for mm in big.values():
        mm.flush()
    del big, mm                                 # close the maps before they are renamed
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in tok["nll"]])]).astype(np.int64)

    def cat(parts: list, dtype) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

    tokens = TokenProfiles(offsets, cat(tok["nll"], np.float32), cat(tok["rank"], np.int32),
                           cat(tok["ids"], np.int32), lines, cat(tok["noinput"], np.float32))
    return _Rows(energy=energy, grad_norm=grad_norm, loss=loss, loss_noinput=loss_noinput,
                 counts=counts, template=template, tokens=tokens)


def _examples_table(examples: Sequence[Example], rows: _Rows,
                    sites: list[dict[str, Any]]) -> pd.DataFrame:
    """``examples.csv``: one row per example (the columns of the module docstring)."""
    loss, loss_noinput, counts = rows.loss, rows.loss_noinput, rows.counts
    with np.errstate(divide="ignore", invalid="ignore"):
        ifd = np.where(loss_noinput > 0, loss / loss_noinput, np.nan)
    table = pd.DataFrame({
        "index": [ex.index for ex in examples],
        "line": [ex.line for ex in examples],
        "schema": [ex.schema for ex in examples],
        "template": rows.template,
        "n_tokens": counts["n_tokens"],
        "n_input_tokens": counts["n_input_tokens"],
        "n_target_tokens": counts["n_target_tokens"],
        "n_truncated": counts["n_truncated"],
        "truncated": counts["n_truncated"] > 0,
        "loss": loss,
        "nll_noinput": loss_noinput,
        "input_gain": loss_noinput - loss,
        "ifd": ifd,
        "grad_norm": rows.grad_norm,
    })
    for j, site in enumerate(sites):
        table[site["column"]] = rows.energy[:, j]
    return table


def _runs(markers: Sequence[dict]) -> list[dict[str, Any]]:
    """What each run computed, by the units' markers, in the order the runs finished."""
    runs: dict[str, dict] = {}
    for m in markers:
        r = runs.setdefault(m["run"], {"run": m["run"], "mode": m["mode"], "units": 0,
                                       "examples_computed": 0, "worker_seconds": 0.0,
                                       "finished": m["finished"]})
        r["units"] += 1
        r["examples_computed"] += m["examples_computed"]
        r["worker_seconds"] = round(r["worker_seconds"] + m["seconds"], 3)
        r["finished"] = max(r["finished"], m["finished"])
    return sorted(runs.values(), key=lambda r: r["finished"])


# ---- reading (and the profiles' own files) -----------------------------------------------

class TokenProfiles:
    """Per-token profiles of the target tokens of N examples (ragged, concatenated).

    Parameters
    ----------
    offsets : (N + 1,) int64
        Tokens of example (row) n are ``offsets[n]:offsets[n + 1]``.
    nll : (T,) float32
        ``-log p(y_t | context)`` of each predicted target token.
    rank : (T,) int32
        Vocabulary entries with a strictly larger logit than the target (0 = top-1).
    ids : (T,) int32
        Token ids.
    lines : list of N str
        One JSON list per example: the text piece of each token.
    nll_noinput : (T,) float32 or None
        ``-log p(y_t | context without the input)``: the same token scored with the example's
        input removed (:mod:`constraintlab.encode.tokenize`); NaN where it is not scored without
        input. ``nll_noinput - nll`` is how much the input explains each token. None for
        profiles saved before store format 3.
    """

    NPZ, JSONL = "tokens.npz", "tokens.jsonl"

    def __init__(self, offsets: np.ndarray, nll: np.ndarray, rank: np.ndarray, ids: np.ndarray,
                 lines: list[str], nll_noinput: np.ndarray | None = None) -> None:
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.nll = np.asarray(nll, dtype=np.float32)
        self.rank = np.asarray(rank, dtype=np.int32)
        self.ids = np.asarray(ids, dtype=np.int32)
        self.lines = lines
        self.nll_noinput = (None if nll_noinput is None
                            else np.asarray(nll_noinput, dtype=np.float32))
        if len(lines) != len(self.offsets) - 1 or self.offsets[-1] != len(self.nll) or (
                self.nll_noinput is not None and len(self.nll_noinput) != len(self.nll)):
            raise StoreMismatchError("token profiles are inconsistent (offsets vs arrays)")

    @classmethod
    def from_lists(cls, nll: list, rank: list, ids: list, pieces: list[list[str]],
                   nll_noinput: list | None = None) -> TokenProfiles:
        """From one array (or list) per example."""
        counts = [len(x) for x in nll]
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

        def cat(parts: list, dtype) -> np.ndarray:
            return (np.concatenate([np.asarray(p, dtype=dtype) for p in parts]) if parts
                    else np.zeros(0, dtype))

        lines = [json.dumps(list(p), ensure_ascii=False) for p in pieces]
        return cls(offsets, cat(nll, np.float32), cat(rank, np.int32), cat(ids, np.int32),
                   lines, None if nll_noinput is None else cat(nll_noinput, np.float32))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def counts(self) -> np.ndarray:
        """(N,) int64 target tokens per example."""
        return np.diff(self.offsets)

    def pieces(self, row: int) -> list[str]:
        """The text pieces of example ``row``'s target tokens."""
        return json.loads(self.lines[row])

    def profile(self, row: int) -> pd.DataFrame:
        """One row per target token of example ``row``: ``token`` (text), ``id``, ``nll``,
        ``rank``, and with input dependence ``nll_noinput`` and ``input_gain``
        (``nll_noinput - nll``)."""
        a, b = self.offsets[row], self.offsets[row + 1]
        out = pd.DataFrame({"token": self.pieces(row), "id": self.ids[a:b],
                            "nll": self.nll[a:b].astype(np.float64), "rank": self.rank[a:b]})
        if self.nll_noinput is not None:
            out["nll_noinput"] = self.nll_noinput[a:b].astype(np.float64)
            out["input_gain"] = out["nll_noinput"] - out["nll"]
        return out

    def subset(self, rows: np.ndarray | list[int]) -> TokenProfiles:
        """The profiles of ``rows`` only, in that order."""
        rows = [int(r) for r in rows]
        sl = [slice(self.offsets[r], self.offsets[r + 1]) for r in rows]
        noinput = (None if self.nll_noinput is None
                   else [self.nll_noinput[s] for s in sl])
        return TokenProfiles.from_lists([self.nll[s] for s in sl], [self.rank[s] for s in sl],
                                        [self.ids[s] for s in sl],
                                        [self.pieces(r) for r in rows], noinput)

    def save(self, directory: str | os.PathLike, suffix: str = "") -> None:
        """Write ``tokens.npz`` and ``tokens.jsonl`` (each name + ``suffix``)."""
        d = Path(directory)
        arrays = {"offsets": self.offsets, "nll": self.nll, "rank": self.rank, "ids": self.ids}
        if self.nll_noinput is not None:
            arrays["nll_noinput"] = self.nll_noinput
        with open(d / (self.NPZ + suffix), "wb") as fh:
            np.savez(fh, **arrays)
        with open(d / (self.JSONL + suffix), "w", encoding="utf-8") as fh:
            fh.writelines(line + "\n" for line in self.lines)

    @classmethod
    def commit(cls, directory: str | os.PathLike, suffix: str) -> None:
        """Rename files written with ``save(..., suffix)`` to their final names."""
        d = Path(directory)
        for name in (cls.NPZ, cls.JSONL):
            os.replace(d / (name + suffix), d / name)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> TokenProfiles | None:
        """The profiles saved in ``directory``, or None when there are none."""
        d = Path(directory)
        if not (d / cls.NPZ).exists() or not (d / cls.JSONL).exists():
            return None
        with np.load(d / cls.NPZ) as z:
            arrays = {k: z[k] for k in ("offsets", "nll", "rank", "ids", "nll_noinput")
                      if k in z.files}
        # split on "\n" only: JSON escapes it, but U+2028 and friends stay raw in the strings
        lines = (d / cls.JSONL).read_text(encoding="utf-8").split("\n")[:-1]
        return cls(lines=lines, **arrays)


class FeatureStore:
    """A complete feature store, opened read-only.

    Attributes
    ----------
    path : Path
    manifest : dict
    features : (N, k) float32 memmap
    input_factors : (N, d) float32 memmap
    output_factors : (N, d) float32 memmap
    tokens : TokenProfiles
        Per-token NLL (``tokens.nll``), NLL with the input removed (``tokens.nll_noinput``),
        rank, id and text piece of every predicted target token.
    table : pandas.DataFrame
        One row per example (see module docstring for the columns; input dependence:
        ``loss`` = mean NLL with the input, ``nll_noinput``, ``input_gain``, ``ifd``).
    n_params : int
        P, the number of trainable LoRA parameters.
    modules : pandas.DataFrame
        One row per LoRA site: ``name``, ``layer``, ``kind``, ``n_params``, ``column``.
    skipped : list of Finding
        Records the encoder left out (``--on-invalid skip``), each with ``source``, ``line``,
        ``message``, ``code`` and ``index``; not rows of the store.
    """

    def __init__(self, path: Path, manifest: dict) -> None:
        self.path = Path(path)
        self.manifest = manifest
        try:
            self.features = np.load(self.path / "features.npy", mmap_mode="r")
            self.input_factors = np.load(self.path / "input_factors.npy", mmap_mode="r")
            self.output_factors = np.load(self.path / "output_factors.npy", mmap_mode="r")
            self.table = pd.read_csv(self.path / "examples.csv", float_precision="round_trip")
            self.n_params = int(manifest["n_params"])
            self.modules = pd.DataFrame(manifest["modules"])
            self.tokens = TokenProfiles.load(self.path)
        except (OSError, ValueError, EOFError, KeyError, TypeError, zipfile.BadZipFile,
                pd.errors.ParserError) as err:
            raise StoreMismatchError(
                f"{self.path} is damaged ({type(err).__name__}: {err}); rebuild it with "
                "--overwrite (deletes this store) or choose another --out") from err
        n = len(self.table)
        if not (self.features.shape[0] == self.input_factors.shape[0]
                == self.output_factors.shape[0] == n) or (
                self.tokens is not None and len(self.tokens) != n):
            raise StoreMismatchError(
                f"{self.path} is damaged (its files hold different numbers of examples); "
                "rebuild it with --overwrite or choose another --out")
        self.skipped = [finding_from_dict(f) for f in manifest.get("skipped", [])
                        if isinstance(f, dict)]

    @classmethod
    def open(cls, path: str | os.PathLike) -> FeatureStore:
        """Open a store written by ``extract``; refuses an incomplete or damaged one
        (:class:`~constraintlab.errors.StoreMismatchError`)."""
        path = Path(path)
        manifest = read_manifest(path)
        if not manifest.get("complete"):
            raise StoreMismatchError(
                f"{path} is an unfinished extraction; run the same extract command again to "
                "resume it")
        return cls(path, manifest)

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def select_examples(self, examples: Sequence) -> list:
        """The examples of this store's rows, in row order: ``examples`` (what was given to
        ``extract``) without the records the encoder skipped (:attr:`skipped`).

        Raises
        ------
        StoreMismatchError
            When a row's example is not among ``examples``.
        """
        by_index = {ex.index: ex for ex in examples}
        try:
            return [by_index[int(i)] for i in self.table["index"]]
        except KeyError as err:
            raise StoreMismatchError(
                f"example {err.args[0]} of the store {self.path} is not among the examples "
                "given") from err

    @property
    def energy(self) -> np.ndarray:
        """(N, M) float64 per-site gradient energy, columns in ``modules`` order."""
        return self.table[list(self.modules["column"])].to_numpy(dtype=np.float64)

    def energy_by(self, level: str = "layer") -> pd.DataFrame:
        """Per-example energy summed by ``"layer"`` or by ``"kind"`` (module type).

        Returns
        -------
        DataFrame (N, groups), index = example ``index``.
        """
        if level not in ("layer", "kind"):
            raise ValueError("level must be 'layer' or 'kind'")
        e = pd.DataFrame(self.energy, columns=pd.Index(self.modules[level]),
                         index=self.table["index"])
        return e.T.groupby(level=0).sum().T


def parse_energy_column(column: str) -> tuple[int, str] | None:
    """``"energy:3:self_attn.q_proj"`` -> ``(3, "self_attn.q_proj")``; None for other columns."""
    m = re.fullmatch(r"energy:(-?\d+):(.+)", column)
    return (int(m.group(1)), m.group(2)) if m else None


def store_key(config, content_hash: str) -> str:
    """Name of the feature store of these encoder settings and data: 16 hex digits.

    ``config`` is an :class:`~constraintlab.encode.EncodeConfig`.
    """
    return json_sha256({"config": config.to_dict(), "data": content_hash, "v": __version__})[:16]


def open_matching_store(directory: str | os.PathLike, config, content_hash: str,
                        n_examples: int) -> FeatureStore | None:
    """The complete store in ``directory`` if it was built from these settings and data.

    Checked without loading the model (``extract`` itself would load it to compute the full
    fingerprint): same encoder settings, same dataset hash and size, same tool version, and for
    a local model directory the same weights digest. None when anything differs or no complete
    store is there.
    """
    from constraintlab.encode.model import resolve_model, weights_digest

    try:
        store = FeatureStore.open(directory)
    except StoreMismatchError:
        return None
    m = store.manifest
    dataset = m.get("dataset") if isinstance(m.get("dataset"), dict) else {}
    same = (m.get("format") == STORE_FORMAT and m.get("config") == config.to_dict()
            and m.get("tool_version") == __version__
            and dataset.get("content_hash") == content_hash
            and dataset.get("n_examples") == n_examples)
    if same and Path(resolve_model(config.model)).is_dir():
        model = m.get("model") if isinstance(m.get("model"), dict) else {}
        same = model.get("weights") == weights_digest(resolve_model(config.model))
    return store if same else None
