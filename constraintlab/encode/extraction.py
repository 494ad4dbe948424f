"""Examples -> feature store: work units, tokenise, bucket, batched per-example gradients.

What is written, and where, is :mod:`.store`'s alone (the manifest, shard layout, unit markers
and the assembly of the finished store, all described in its docstring): this module computes
and calls its writers.

The examples are cut into work units of ``EncodeConfig.unit_size`` consecutive examples
(:func:`plan_units`; nothing is tokenised to plan them). A unit is tokenised, packed into
batches inside the unit (:func:`plan_batches`), computed batch by batch into verified shards and
closed by a marker (:func:`run_unit`); :class:`Extraction` assembles the store once every unit
has its marker. One process (:func:`extract`) and many Ray workers
(:mod:`constraintlab.encode.distributed`, ``extract(..., ray=...)``) run the very same units, so
they write the same bytes, and either resumes a store the other started.

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
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from constraintlab._hashing import json_sha256
from constraintlab.encode.budget import CPU_BATCH_TOKENS, Batching, resolve_batching
from constraintlab.encode.config import EncodeConfig
from constraintlab.encode.estimate import log_estimate
from constraintlab.encode.gradients import BatchResult, GradientEngine
from constraintlab.encode.model import LoadedModel, load_model
from constraintlab.encode.projection import Projector
from constraintlab.encode.store import (
    SHARD_KEYS,
    FeatureStore,
    assemble,
    check_out_dir,
    finding_dict,
    new_manifest,
    prepare_dir,
    read_shard,
    read_unit_marker,
    shard_arrays,
    shard_key,
    unit_projection,
    write_shard,
    write_unit_marker,
)
from constraintlab.encode.tokenize import Encoded, Renderer
from constraintlab.errors import ConfigError, Finding, InputError, StoreMismatchError
from constraintlab.io.example import Example
from constraintlab.progress import progress

logger = logging.getLogger(__name__)


def plan_batches(lengths: Sequence[int], batch_size: int | None, max_batch_tokens: int | None
                 ) -> list[list[int]]:
    """Group positions into length buckets.

    Sorts by length (longest first, ties by position) and fills a batch while
    ``rows * longest <= max_batch_tokens`` and ``rows <= batch_size``. None: no row limit /
    the CPU default of :mod:`.budget` (an :class:`Encoder` resolves both for its device).

    Returns
    -------
    list of batches, each a list of positions into ``lengths``.
    """
    if batch_size is None:
        batch_size = len(lengths) + 1
    if max_batch_tokens is None:
        max_batch_tokens = max(CPU_BATCH_TOKENS, max(lengths, default=0))
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


def plan_units(n_examples: int, unit_size: int) -> list[tuple[int, int]]:
    """Work units: ranges ``[start, stop)`` of ``unit_size`` consecutive examples (the last may
    be shorter). Depends on the two numbers only: no example is tokenised to plan them."""
    return [(a, min(a + unit_size, n_examples)) for a in range(0, n_examples, unit_size)]


def _message_record(message) -> list:
    """``[role, content]``, then the rest of :meth:`Message.as_chat` (tool calls, call id,
    name) when there is any: what the chat template sees, so datasets that differ only in
    tool calls differ here (plain turns hash as before)."""
    chat = message.as_chat()
    role, content = chat.pop("role"), chat.pop("content")
    return [role, content, chat] if chat else [role, content]


def examples_digest(examples: Sequence[Example]) -> str:
    """sha256 of the examples' content, every message as the chat template sees it
    (:meth:`Message.as_chat`, tool calls included); used when the reader gave no content
    hash."""
    h = hashlib.sha256()
    for ex in examples:
        rec = [ex.index, ex.schema, ex.chat, list(ex.targets),
               [_message_record(m) for m in ex.messages]]
        h.update(json.dumps(rec, ensure_ascii=False, sort_keys=True, default=str)
                 .encode("utf-8", "surrogatepass"))
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
        self.renderer = Renderer(tok, max_length=self.loaded.max_length(config.max_length),
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
        self.batching: Batching = resolve_batching(config, self.engine, len(tok))
        self.engine.set_checkpointing(self.batching.checkpointing)

    @property
    def batch_size(self) -> int | None:
        """Most examples a batch on this device (``config.batch_size`` or the device's)."""
        return self.batching.batch_size

    @property
    def max_batch_tokens(self) -> int:
        """Most padded tokens a batch on this device (``config.max_batch_tokens`` or chosen
        from the free memory, :mod:`.budget`)."""
        return self.batching.max_batch_tokens

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
        return plan_batches([e.n_tokens for e in encoded], self.batch_size,
                            self.max_batch_tokens)

    def compute(self, batch: Sequence[Encoded]) -> BatchResult:
        """Per-example results for one batch (rows in ``batch`` order)."""
        return self.engine.run(list(batch))

    def projection_sha256(self) -> str:
        """sha256 of every projection matrix this encoder applies, as it holds them (device
        tensors, drawn now if not yet): two encoders with equal digests project identically.
        ``projection="none"`` gives the digest of ``b"none"``."""
        h = hashlib.sha256()
        if self.projector is None:
            h.update(b"none")
            return h.hexdigest()
        for site in self.loaded.sites:
            factors = [("B", site.out_features, site.r)]
            if site.trained:
                factors.append(("A", site.r, site.in_features))
            for factor, p, q in factors:
                left, right = self.projector.matrices(site.name, factor, p, q)
                h.update(f"{site.name}:{factor}:{p}x{q}:{left.dtype}".encode())
                for m in (left, right):
                    h.update(m.detach().to("cpu").contiguous().numpy().tobytes())
        return h.hexdigest()


def _unpack(examples) -> tuple[list[Example], str | None, str | None, str | None]:
    if hasattr(examples, "examples"):
        return (list(examples.examples), getattr(examples, "source", None),
                getattr(examples, "content_hash", None),
                getattr(getattr(examples, "config", None), "on_invalid", None))
    return list(examples), None, None, None


def _write_error(out_dir: Path, err: OSError) -> ConfigError:
    return ConfigError(
        f"cannot write to the feature store {out_dir}: {err.strerror or err}; the batches "
        "written so far are kept: fix it and run the same command again to resume")


# ---- work units ---------------------------------------------------------------------------------

@dataclass
class UnitOutcome:
    """What :func:`run_unit` did with one work unit.

    Attributes
    ----------
    unit, start, stop : int
        The unit and its examples ``[start, stop)``.
    done : bool
        The unit's marker is written.
    examples_computed, batches_computed : int
        Work done in this call (verified shards are kept, not recomputed).
    seconds : float
    problems : list of Finding
        With ``on_invalid="error"``: the unit's examples the encoder cannot use (then nothing
        is computed and no marker is written).
    """

    unit: int
    start: int
    stop: int
    done: bool = False
    examples_computed: int = 0
    batches_computed: int = 0
    seconds: float = 0.0
    problems: list[Finding] = field(default_factory=list)


def run_unit(enc: Encoder, examples: Sequence[Example], unit: int, start: int,
             out_dir: str | os.PathLike, *, projection_sha256: str, run: str,
             mode: str = "local", on_invalid: str = "error", compute: bool = True,
             on_batch: Callable[[int, int, int, bool], None] | None = None) -> UnitOutcome:
    """Tokenise, plan, compute and store one work unit; write its marker last.

    Parameters
    ----------
    enc : Encoder
    examples : the unit's examples (``examples[start:stop]`` of everything given to extract)
    unit, start : the unit's number and the position of its first example
    out_dir : the store directory (prepared by :func:`prepare_extraction`)
    projection_sha256 : ``enc.projection_sha256()``, recorded in the marker
    run, mode : who computes it (recorded in the marker and in the store's ``stats.runs``)
    on_invalid : ``"error"``: unusable examples are returned as ``problems`` and nothing is
        computed; ``"skip"``: they are left out and listed in the marker
    compute : False only tokenises (to list problems)
    on_batch : called as ``on_batch(unit, batch, n_examples, computed)`` once each batch's
        shard is on disk, in batch order (``computed`` False for a batch whose verified shard
        was already there): a batch reported is a batch a crash will not lose

    Returns
    -------
    UnitOutcome
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    outcome = UnitOutcome(unit=unit, start=start, stop=start + len(examples))
    encoded, findings = enc.encode_some(list(examples))
    if findings and on_invalid == "error":
        outcome.problems = findings
        return outcome
    if not compute:
        return outcome
    bad = {f.index for f in findings}
    usable = [start + i for i, ex in enumerate(examples) if ex.index not in bad]
    lengths = [e.n_tokens for e in encoded]
    batches = plan_batches(lengths, enc.batch_size, enc.max_batch_tokens)
    plan = json_sha256([start, usable, batches, lengths])
    plan_bytes = np.frombuffer(bytes.fromhex(plan), dtype=np.uint8)
    # shards are written by one background thread while the next batch computes (the device
    # does not wait for fsync and hashing); at most one write is in flight, errors surface at
    # the next batch or before the marker; on_batch hears of a batch once its shard is written
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="constraintlab-shard")
    in_flight: list[tuple[Future, int, int]] = []

    def drain() -> None:
        while in_flight:
            future, j_done, n_done = in_flight.pop()
            future.result()
            if on_batch is not None:
                on_batch(unit, j_done, n_done, True)

    try:
        for j, local in enumerate(batches):
            key = shard_key(unit, j)
            positions = np.asarray([usable[p] for p in local], dtype=np.int64)
            old = read_shard(out_dir, key, SHARD_KEYS)
            if (old is not None and np.array_equal(old["plan_sha256"], plan_bytes)
                    and np.array_equal(old["positions"], positions)):
                drain()
                if on_batch is not None:
                    on_batch(unit, j, len(local), False)
                continue
            batch = [encoded[p] for p in local]
            result = enc.compute(batch)
            drain()
            in_flight.append((writer.submit(
                lambda key=key, positions=positions, batch=batch, result=result: write_shard(
                    out_dir, key, shard_arrays(positions, plan_bytes, batch, result))),
                j, len(local)))
            outcome.examples_computed += len(local)
            outcome.batches_computed += 1
        drain()
        outcome.seconds = time.perf_counter() - t0
        write_unit_marker(out_dir, unit, {
            "unit": unit, "start": start, "stop": outcome.stop, "n_batches": len(batches),
            "plan_sha256": plan, "projection_sha256": projection_sha256,
            "skipped": [finding_dict(f) for f in findings],
            "skipped_positions": [start + i for i, ex in enumerate(examples) if ex.index in bad],
            "run": run, "mode": mode, "examples_computed": outcome.examples_computed,
            "batches_computed": outcome.batches_computed, "seconds": round(outcome.seconds, 3),
            "finished": time.time(), "device": str(enc.engine.device),
            "host": socket.gethostname(), "pid": os.getpid(),
            "torch_threads": torch.get_num_threads()})
    except OSError as err:
        raise _write_error(out_dir, err) from err
    finally:
        writer.shutdown(wait=True)
    outcome.done = True
    return outcome


def new_run_id() -> str:
    """A fresh id for one extract call (recorded in the unit markers it writes)."""
    return uuid.uuid4().hex[:12]


# ---- the store around the units ------------------------------------------------------------

@dataclass
class Extraction:
    """A prepared store directory and its work units (made by :func:`prepare_extraction`).

    Attributes
    ----------
    out_dir : Path
    manifest : dict
        The manifest as written while unfinished (``complete`` False).
    examples : list of Example
        Everything given to extract (rows are the usable ones).
    units : list of (start, stop)
    complete : bool
        The directory already holds this finished store (nothing to do).
    created : bool
        This call created the directory.
    """

    out_dir: Path
    manifest: dict
    examples: list[Example]
    units: list[tuple[int, int]]
    complete: bool = False
    created: bool = False

    def markers(self) -> list[dict | None]:
        """Each unit's marker (None for an unfinished unit)."""
        return [read_unit_marker(self.out_dir, u) for u in range(len(self.units))]

    def todo(self) -> list[int]:
        """The units without a marker."""
        return [u for u, m in enumerate(self.markers()) if m is None]

    def stored_projection(self) -> str | None:
        """The projection digest of the finished units (None when there are none); raises
        :class:`StoreMismatchError` when they disagree."""
        return unit_projection(self.out_dir, self.markers())

    def check_projection(self, digest: str) -> None:
        """Refuse to add units drawn with other projection matrices than the finished ones."""
        stored = self.stored_projection()
        if stored is not None and stored != digest:
            raise StoreMismatchError(
                f"this machine draws other projection matrices ({digest[:12]}) than the ones "
                f"the finished units of {self.out_dir} were computed with ({stored[:12]}); "
                "check that NumPy and torch match, or rebuild with --overwrite")

    def fail(self, problems: list[Finding]) -> InputError:
        """The error for unusable examples; a directory this call created and that holds no
        finished unit is removed (nothing was written)."""
        if self.created and all(m is None for m in self.markers()):
            shutil.rmtree(self.out_dir, ignore_errors=True)
        return InputError(problems)

    def finish(self, stats: dict) -> FeatureStore:
        """Assemble the store from the units' shards (every unit must have its marker)."""
        try:
            assemble(self.out_dir, self.manifest, self.examples, self.markers(), stats)
        except OSError as err:
            raise ConfigError(
                f"cannot write to the feature store {self.out_dir}: {err.strerror or err}; the "
                "batches are kept: fix it and run the same command again to finish") from err
        return FeatureStore.open(self.out_dir)


def _model_shape(loaded: LoadedModel) -> tuple[int | None, int]:
    head = loaded.model.get_base_model().get_output_embeddings()
    if head is None:
        return None, len(loaded.tokenizer)
    return int(head.weight.shape[1]), int(head.weight.shape[0])


def prepare_extraction(examples: list[Example], config: EncodeConfig,
                       out_dir: str | os.PathLike, *, loaded: LoadedModel, dim: int,
                       dataset_source: str, content_hash: str,
                       overwrite: bool = False) -> Extraction:
    """Plan the units and create, resume or reuse the store directory (nothing is tokenised).

    Raises :class:`StoreMismatchError` when ``out_dir`` holds anything built otherwise.
    """
    out_dir = Path(out_dir)
    created = not out_dir.exists() or overwrite
    info, sites = loaded.info, loaded.sites
    units = plan_units(len(examples), config.unit_size)
    d_model, vocab_size = _model_shape(loaded)
    manifest = new_manifest(
        config, info, n_params=loaded.n_params, dim=dim, d_model=d_model,
        vocab_size=vocab_size, n_units=len(units), dataset_source=dataset_source,
        content_hash=content_hash, n_examples=len(examples),
        modules=[{"name": s.name, "layer": s.layer, "kind": s.kind, "n_params": s.n_params,
                  "column": s.column} for s in sites])
    complete = prepare_dir(out_dir, manifest, overwrite=overwrite)
    return Extraction(out_dir=out_dir, manifest=manifest, examples=examples, units=units,
                      complete=complete, created=created and not complete)


def resolve_request(examples, config: EncodeConfig | None, out_dir, *, encoder=None,
                    on_invalid: str | None = None, dataset_source: str | None = None,
                    content_hash: str | None = None):
    """The arguments of an extraction, checked and defaulted once (before any model loads);
    shared by :func:`extract_local` and the Ray driver.

    Returns
    -------
    config, examples (list of Example), on_invalid, dataset_source, content_hash, out_dir
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
    return config, examples, on_invalid, dataset_source, content_hash, check_out_dir(out_dir)


def extract_local(examples: Iterable[Example], config: EncodeConfig | None = None,
                  out_dir: str | os.PathLike = "features", *, dataset_source: str | None = None,
                  content_hash: str | None = None, overwrite: bool = False,
                  encoder: Encoder | None = None, on_invalid: str | None = None
                  ) -> FeatureStore:
    """Build (or resume, or reuse) the feature store of ``examples`` in ``out_dir``, in this
    process (:func:`constraintlab.encode.dispatch.extract` is the public entry, with Ray).

    Parameters
    ----------
    examples : sequence of Example, or an ``ExampleSet`` (its source, content hash and
        ``config.on_invalid`` are used)
    config : EncodeConfig, default ``EncodeConfig()``
    out_dir : directory of the store. An unfinished store built with the same settings and
        data is resumed, whoever started it (finished units and verified batches are kept, a
        damaged or half-written shard is recomputed); a finished one is returned as is; one
        built otherwise raises :class:`~constraintlab.errors.StoreMismatchError`.
    dataset_source : path recorded in the manifest.
    content_hash : sha256 of the dataset file; default: a hash of the examples' content.
    overwrite : delete an existing store in ``out_dir`` first.
    encoder : reuse a loaded :class:`Encoder` (built with ``config``).
    on_invalid : {"error", "skip"}, optional
        What to do with an example the encoder cannot use (target truncated away by
        ``max_length``, template error): ``"error"`` raises :class:`InputError` listing them
        (units already finished are kept; every unit is still tokenised so that all are
        listed); ``"skip"`` leaves them out (``FeatureStore.skipped``). Default: the
        ExampleSet's ``config.on_invalid``, else ``"error"``.
    Returns
    -------
    FeatureStore
        Row n is the n-th usable example.
    """
    config, examples, on_invalid, dataset_source, content_hash, out_dir = resolve_request(
        examples, config, out_dir, encoder=encoder, on_invalid=on_invalid,
        dataset_source=dataset_source, content_hash=content_hash)
    enc = encoder or Encoder(config)
    job = prepare_extraction(examples, config, out_dir, loaded=enc.loaded, dim=enc.dim,
                             dataset_source=dataset_source, content_hash=content_hash,
                             overwrite=overwrite)
    if job.complete:
        logger.info("%s already holds this extraction; reusing it", out_dir)
        return FeatureStore.open(out_dir)
    todo = job.todo()
    projection = enc.projection_sha256()
    job.check_projection(projection)
    n_done = len(examples) - sum(job.units[u][1] - job.units[u][0] for u in todo)
    if n_done:
        logger.info("resuming: %d of %d units already done", len(job.units) - len(todo),
                    len(job.units))
    log_estimate([ex for u in todo for ex in examples[job.units[u][0]:job.units[u][1]]],
                 enc.renderer, enc.loaded.model, k=enc.dim,
                 max_batch_tokens=config.max_batch_tokens)
    run = new_run_id()
    bar = progress(total=len(examples), desc="extract", unit="ex")
    bar.update(n_done)
    start, n_new, problems = time.perf_counter(), 0, []
    try:
        for u in todo:
            a, b = job.units[u]
            outcome = run_unit(enc, examples[a:b], u, a, out_dir, projection_sha256=projection,
                               run=run, mode="local", on_invalid=on_invalid,
                               compute=not problems,
                               on_batch=lambda _u, _j, n, _c: bar.update(n))
            if outcome.problems or not outcome.done:
                problems += outcome.problems     # then only tokenise the rest, to list all
                bar.update(b - a)
            n_new += outcome.examples_computed
    finally:
        bar.close()
    if problems:
        raise job.fail(problems)
    elapsed = time.perf_counter() - start
    return job.finish({"seconds": round(elapsed, 3), "examples_computed": n_new,
                       "examples_per_s": round(n_new / elapsed, 3) if elapsed > 0 else None,
                       "units_computed": len(todo), "mode": "local", "workers": 1})
