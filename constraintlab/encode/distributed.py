"""Extraction on Ray: the work units of :mod:`.extraction` on an actor pool, the same store bit
for bit.

Ray only schedules; units, shards, markers and the assembled store are the single-process
path's own (:func:`~constraintlab.encode.extraction.run_unit`,
:class:`~constraintlab.encode.extraction.Extraction`), so a store is byte-identical whoever
computed it, and a store started in one mode is finished in the other.

- **Driver** (:func:`extract_on_ray`): loads the model on the CPU only to write the manifest
  (nothing is tokenised there), lists the units without a completion marker and hands them to
  ``ray.data.from_items(...).map_batches(UnitWorker, compute=ActorPoolStrategy(...))``, one
  unit per block and per call, at most one in flight per actor (a free actor takes the next
  unit: dynamic balance). It checks every worker's projection digest against the others and
  against the units already stored, counts progress as units finish and assembles the store
  at the end.
- **Workers** (:class:`UnitWorker`): one actor per ``num_gpus``/``num_cpus`` slot; each loads
  the model and adapter once, redraws the seeded projection itself and returns its digest with
  every unit, tokenises only its own unit, writes the unit's shards atomically and its marker
  last. The examples of a unit travel in its row (pickled), so workers need no access to the
  data file, only to the store directory (a shared filesystem on a cluster).
- **Faults**: resume comes from the markers on disk, never from Ray state. A driver killed
  with -9 loses the units in flight (their finished batches are kept); an actor that dies is
  restarted and its unit retried ``max_retries`` times, then the job stops with
  :class:`RayExtractionError` and a rerun resumes.

Ray is an optional dependency (``pip install 'constraintlab[ray]'``), imported only here and
only when asked for.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import socket
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from constraintlab.encode.config import EncodeConfig
from constraintlab.errors import ConfigError, ConstraintlabError, Finding, StoreMismatchError
from constraintlab.progress import progress

logger = logging.getLogger(__name__)

RAY_EXTRA = "pip install 'constraintlab[ray]'"
#: units queued per actor: the running one and the next (its rows fetched meanwhile)
IN_FLIGHT = 2


class RayExtractionError(ConstraintlabError):
    """The Ray job stopped (a worker kept dying, the cluster went away); the finished units are
    kept and the same command resumes."""


def import_ray():
    """The ``ray`` module with Ray Data, or a :class:`ConfigError` naming the extra."""
    try:
        import ray
        import ray.data
    except ImportError as err:
        raise ConfigError(f"--ray needs Ray with Ray Data, an optional dependency of "
                          f"constraintlab: {RAY_EXTRA} ({err})") from None
    return ray


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide extraction runs on Ray. None of these settings changes the store.

    Attributes
    ----------
    address : str, default ``"auto"``
        ``"auto"``: the cluster in ``RAY_ADDRESS`` or the latest one started on this machine
        (``ray start``), else a new local one; ``"local"``: always a new local one; otherwise
        a cluster address (``"10.0.0.5:6379"``, ``"ray://head:10001"``). A Ray already
        initialised in this process is used as it is.
    workers : int or None, default None
        Most actors (each loads the model once). None: as many as the cluster's GPUs allow
        (``GPU / gpus_per_worker``), on CPUs ``(CPU - 1) / cpus_per_worker`` (one CPU stays
        free for Ray Data), at least 1.
    gpus_per_worker : float or None, default None
        GPUs per actor; fractions share a GPU (0.5: two actors per GPU). None: 1 when the
        encoder's ``device`` is CUDA, else 0.
    cpus_per_worker : float or None, default None
        CPUs per actor (default 1); torch in the actor uses ``max(1, floor(cpus))`` threads.
        Leave at least one CPU of a node free, or use fractions: actors holding every CPU
        starve Ray Data's own tasks and the job hangs.
    max_retries : int, default 2
        Times a unit is started again after its worker died in it (Ray restarts the actor);
        then the job stops with :class:`RayExtractionError` (the finished units are kept).
    """

    address: str = "auto"
    workers: int | None = None
    gpus_per_worker: float | None = None
    cpus_per_worker: float | None = None
    max_retries: int = 2

    def __post_init__(self) -> None:
        problem = _pool_problem(self.address, self.workers, self.gpus_per_worker,
                                self.cpus_per_worker, self.max_retries, _argument)
        if problem is not None:
            raise ConfigError(problem)

    @classmethod
    def build(cls, ray: str | RayOptions, *, workers: int | None = None,
              gpus_per_worker: float | None = None,
              cpus_per_worker: float | None = None) -> RayOptions:
        """From ``extract``/``analyze`` arguments: an address or a RayOptions, plus overrides."""
        base = ray if isinstance(ray, RayOptions) else cls(address="auto" if ray is True
                                                           else ray)
        over = {k: v for k, v in (("workers", workers), ("gpus_per_worker", gpus_per_worker),
                                  ("cpus_per_worker", cpus_per_worker)) if v is not None}
        return replace(base, **over) if over else base

    def resources(self, config: EncodeConfig, cluster: dict[str, float]
                  ) -> tuple[int, float, float]:
        """``(workers, gpus, cpus)`` per actor for this encoder on a cluster with ``cluster``
        resources (``ray.cluster_resources()``)."""
        gpus = self.gpus_per_worker
        if gpus is None:
            gpus = 1.0 if config.device.startswith("cuda") else 0.0
        cpus = 1.0 if self.cpus_per_worker is None else float(self.cpus_per_worker)
        if gpus > 0 and cluster.get("GPU", 0) < gpus:
            raise ConfigError(f"each worker asks for {gpus:g} GPU but the Ray cluster has "
                              f"{cluster.get('GPU', 0):g}; lower --gpus-per-worker or use "
                              "--device cpu")
        if cpus > cluster.get("CPU", 0):
            raise ConfigError(f"each worker asks for {cpus:g} CPU but the Ray cluster has "
                              f"{cluster.get('CPU', 0):g}; lower --cpus-per-worker")
        workers = self.workers
        if workers is None:
            if gpus > 0:
                workers = int(cluster.get("GPU", 0) // gpus)
            else:
                workers = int(max(cluster.get("CPU", 0) - 1, 0) // cpus) if cpus else 1
            workers = max(1, workers)
        return workers, float(gpus), cpus


def _argument(name: str) -> str:
    return name


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _pool_problem(address: object, workers: object, gpus_per_worker: object,
                  cpus_per_worker: object, max_retries: object, name) -> str | None:
    """What is wrong with these :class:`RayOptions` values (None: nothing), each setting named
    by ``name(argument)`` (``ray``, ``workers``, ...): the checks, written once."""
    if not isinstance(address, str) or not address:
        return f"{name('ray')} must be 'auto', 'local' or a cluster address"
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool)
                                or workers < 1):
        return f"{name('workers')} must be a positive integer, got {workers!r}"
    for key, value in (("gpus_per_worker", gpus_per_worker),
                       ("cpus_per_worker", cpus_per_worker)):
        if value is not None and not (isinstance(value, (int, float)) and value >= 0):
            return f"{name(key)} must be a number >= 0, got {value!r}"
    if cpus_per_worker == 0 and not gpus_per_worker:
        return (f"a worker needs {name('cpus_per_worker')} > 0 or "
                f"{name('gpus_per_worker')} > 0")
    if not isinstance(max_retries, int) or max_retries < 0:
        return f"{name('max_retries')} must be an integer >= 0, got {max_retries!r}"
    return None


def ray_options(ray: str | bool | RayOptions | None, *, workers: int | None = None,
                gpus_per_worker: float | None = None, cpus_per_worker: float | None = None,
                flags: bool = False) -> RayOptions | None:
    """The :class:`RayOptions` that ``extract``/``analyze`` arguments, or the CLI's flags,
    describe; None: extract in this process. The one place they are checked.

    Parameters
    ----------
    ray : None (this process), ``"auto"``, ``"local"``, a cluster address or a RayOptions
    workers, gpus_per_worker, cpus_per_worker : the actor pool (only with ``ray``)
    flags : name the settings in messages as the CLI's flags (``--workers``) instead of as
        arguments (``workers``)

    Raises
    ------
    ConfigError
        A pool setting without ``ray``, or a value out of range.
    """
    name = _flag if flags else _argument
    pool = {"workers": workers, "gpus_per_worker": gpus_per_worker,
            "cpus_per_worker": cpus_per_worker}
    if ray is None:
        given = [name(k) for k, v in pool.items() if v is not None]
        if given:
            listed = " and ".join(given)
            enable = name("ray") if flags else "ray='auto'"
            raise ConfigError(f"{listed} only appl{'ies' if len(given) == 1 else 'y'} to "
                              f"extraction on Ray: add {enable} (needs {RAY_EXTRA}), or drop "
                              f"{listed} to extract in this process")
        return None
    # what build() will hold (the class holds the defaults), checked with the caller's names
    base = ray if isinstance(ray, RayOptions) else RayOptions
    address = ray.address if isinstance(ray, RayOptions) else ("auto" if ray is True else ray)
    values = [v if v is not None else getattr(base, k) for k, v in pool.items()]
    problem = _pool_problem(address, *values, base.max_retries, name)
    if problem is not None:
        raise ConfigError(problem)
    return RayOptions.build(ray, **pool)


def _threads(cpus: float) -> int:
    return max(1, math.floor(cpus))


class UnitWorker:
    """A Ray Data actor: loads the model once, computes whole work units into the store.

    Parameters
    ----------
    config : EncodeConfig
    out_dir : str
        The store directory (prepared by the driver; shared by every worker).
    expect : dict
        What the driver's manifest says the model is (``n_params``, ``sites``,
        ``adapter_weights_sha256``, ``weights``) and the projection digest of the units
        already stored (``projection_sha256``, may be None). A worker that differs refuses to
        write.
    threads : int
        torch threads in this actor.
    run : str
        The driver's run id (recorded in the unit markers).
    max_retries : int
        A unit started more than ``1 + max_retries`` times in this run (its workers died in
        it) is not started again: the worker returns ``"failed"`` and the driver stops. The
        count is kept on disk (``shards/UUUUUU.attempts``), as Ray restarts dead actors.
    on_invalid : {"error", "skip"}
        As for :func:`~constraintlab.encode.extract`.
    """

    def __init__(self, config: EncodeConfig, out_dir: str, expect: dict, threads: int,
                 run: str, max_retries: int = 2, on_invalid: str = "error") -> None:
        import torch

        torch.set_num_threads(threads)
        from constraintlab.encode.extraction import Encoder

        t0 = time.perf_counter()
        self.encoder = Encoder(config)
        self.projection_sha256 = self.encoder.projection_sha256()
        self.setup_seconds = time.perf_counter() - t0
        self.out_dir = Path(out_dir)
        self.run = run
        self.max_retries = max_retries
        self.on_invalid = on_invalid
        self.where = f"{socket.gethostname()}:{os.getpid()}"
        self.refusal = self._compare(expect)

    def _compare(self, expect: dict) -> str | None:
        info = self.encoder.loaded.info
        mine = {"n_params": self.encoder.loaded.n_params,
                "sites": [s.name for s in self.encoder.loaded.sites],
                "adapter_weights_sha256": info["adapter_weights_sha256"],
                "weights": info["weights"]}
        for key, value in mine.items():
            if expect.get(key) != value:
                return (f"worker {self.where} loaded another model or adapter than the driver "
                        f"({key}: {value!r} vs {expect.get(key)!r}); every node needs the same "
                        "model files")
        stored = expect.get("projection_sha256")
        if stored is not None and stored != self.projection_sha256:
            return (f"worker {self.where} draws other projection matrices "
                    f"({self.projection_sha256[:12]}) than the finished units of the store "
                    f"({stored[:12]}); check that NumPy and torch match on every node")
        return None

    def _attempt(self, unit: int) -> int:
        """Count one more start of ``unit`` in this run (durably); returns the count."""
        from constraintlab.encode.store import SHARDS, write_json_atomic

        path = self.out_dir / SHARDS / f"{unit:06d}.attempts"
        try:
            seen = json.loads(path.read_text())
        except (OSError, ValueError):
            seen = {}
        count = seen.get("count", 0) + 1 if seen.get("run") == self.run else 1
        write_json_atomic(path, {"run": self.run, "count": count, "worker": self.where})
        return count

    def on_batch(self, unit: int, batch: int, n_examples: int, computed: bool) -> None:
        """Called after each batch of a unit (a hook for subclasses; does nothing)."""

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from constraintlab.encode.extraction import run_unit
        from constraintlab.encode.store import finding_dict

        units, statuses, infos = [], [], []
        for unit, start, payload in zip(rows["unit"], rows["start"], rows["payload"],
                                        strict=True):
            unit, start = int(unit), int(start)
            info: dict[str, Any] = {"worker": self.where,
                                    "projection_sha256": self.projection_sha256,
                                    "setup_seconds": round(self.setup_seconds, 3)}
            attempt = 0 if self.refusal is not None else self._attempt(unit)
            if self.refusal is not None:
                status, info["message"] = "refused", self.refusal
            elif attempt > 1 + self.max_retries:
                status = "failed"
                info["message"] = (f"work unit {unit} was started {attempt - 1} times and its "
                                   f"worker died each time (last on {self.where}: see the Ray "
                                   "logs; out of memory?)")
            else:
                examples = pickle.loads(payload)
                outcome = run_unit(self.encoder, examples, unit, start, self.out_dir,
                                   projection_sha256=self.projection_sha256, run=self.run,
                                   mode="ray", on_invalid=self.on_invalid,
                                   on_batch=self.on_batch)
                status = "done" if outcome.done else "problems"
                info.update(examples=outcome.stop - outcome.start,
                            examples_computed=outcome.examples_computed,
                            seconds=round(outcome.seconds, 3),
                            problems=[finding_dict(p) for p in outcome.problems])
            units.append(unit)
            statuses.append(status)
            infos.append(json.dumps(info))
        return {"unit": np.asarray(units, dtype=np.int64), "status": np.asarray(statuses),
                "info": np.asarray(infos)}


def connect(ray, address: str) -> bool:
    """Initialise Ray for ``address`` unless it already is; True when this call started it."""
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "include_dashboard": False}
    try:
        if address == "auto":
            ray.init(**kwargs)
        else:
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise ConfigError(f"cannot connect to Ray at {address!r}: {err}") from err
    return True


def run_units(ray, rows: list[dict], worker_cls: type, constructor_kwargs: dict, *,
              workers: int, gpus: float, cpus: float, in_flight: int = IN_FLIGHT):
    """Stream the result rows of ``worker_cls`` over ``rows`` (one unit per block and call).

    A pool of ``workers`` actors (``num_gpus=gpus``, ``num_cpus=cpus`` each) holds at most
    ``in_flight`` units per actor (one running, the next one's rows already fetched), so a
    free actor takes the next unit and waits for nothing between units. Ray restarts an actor
    that dies and retries its unit (Ray Data's defaults); :class:`UnitWorker` itself gives up
    on a unit after ``max_retries``. Yields one dict per unit as it finishes.
    """
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ds = ray.data.from_items(rows, override_num_blocks=len(rows))
    ds = ds.map_batches(
        worker_cls, batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=workers,
                                           max_tasks_in_flight_per_actor=in_flight),
        fn_constructor_kwargs=constructor_kwargs, num_cpus=cpus,
        num_gpus=gpus if gpus > 0 else None)
    yield from ds.iter_rows()


def extract_on_ray(examples, config: EncodeConfig | None, out_dir: str | os.PathLike, *,
                   options: RayOptions, dataset_source: str | None = None,
                   content_hash: str | None = None, overwrite: bool = False,
                   encoder=None, on_invalid: str | None = None,
                   worker_cls: type = UnitWorker):
    """:func:`~constraintlab.encode.extract` with the units computed by Ray actors.

    Parameters
    ----------
    examples, config, out_dir, dataset_source, content_hash, overwrite, encoder, on_invalid
        As for :func:`~constraintlab.encode.extract` (``encoder`` only spares the driver
        its own model load).
    options : RayOptions
    worker_cls : the actor class (a subclass of :class:`UnitWorker`).

    Returns
    -------
    FeatureStore
        Byte-identical to the single-process store (manifest apart from ``stats``).
    """
    ray = import_ray()
    from constraintlab.encode.extraction import new_run_id, prepare_extraction, resolve_request
    from constraintlab.encode.model import load_model
    from constraintlab.encode.store import FeatureStore

    config, examples, on_invalid, dataset_source, content_hash, out_dir = resolve_request(
        examples, config, out_dir, encoder=encoder, on_invalid=on_invalid,
        dataset_source=dataset_source, content_hash=content_hash)
    # the driver needs the model's identity for the manifest, not a device
    loaded = encoder.loaded if encoder is not None else load_model(replace(config,
                                                                           device="cpu"))
    dim = loaded.n_params if config.projection == "none" else config.k
    job = prepare_extraction(examples, config, out_dir, loaded=loaded, dim=dim,
                             dataset_source=dataset_source, content_hash=content_hash,
                             overwrite=overwrite)
    if job.complete:
        logger.info("%s already holds this extraction; reusing it", job.out_dir)
        return FeatureStore.open(job.out_dir)
    expect = {"n_params": loaded.n_params, "sites": [s.name for s in loaded.sites],
              "adapter_weights_sha256": loaded.info["adapter_weights_sha256"],
              "weights": loaded.info["weights"],
              "projection_sha256": job.stored_projection()}
    del loaded
    todo = job.todo()
    run = new_run_id()
    t0 = time.perf_counter()
    n_new, problems, n_workers = 0, [], 0
    if todo:
        started = connect(ray, options.address)
        try:
            n_workers, gpus, cpus = options.resources(config, ray.cluster_resources())
            n_workers = min(n_workers, len(todo))
            logger.info("extracting %d of %d units on Ray: %d workers x (%g GPU, %g CPU)",
                        len(todo), len(job.units), n_workers, gpus, cpus)
            rows = [{"unit": u, "start": job.units[u][0],
                     "payload": pickle.dumps(examples[slice(*job.units[u])],
                                             protocol=pickle.HIGHEST_PROTOCOL)} for u in todo]
            kwargs = {"config": config, "out_dir": str(Path(out_dir).resolve()),
                      "expect": expect, "threads": _threads(cpus), "run": run,
                      "max_retries": options.max_retries, "on_invalid": on_invalid}
            n_new, problems = _drive(ray, job, rows, worker_cls, kwargs, expect,
                                     workers=n_workers, gpus=gpus, cpus=cpus)
        finally:
            if started:
                ray.shutdown()
    if problems:
        raise job.fail(problems)
    elapsed = time.perf_counter() - t0
    return job.finish({"seconds": round(elapsed, 3), "examples_computed": n_new,
                       "examples_per_s": round(n_new / elapsed, 3) if elapsed > 0 else None,
                       "units_computed": len(todo), "mode": "ray", "workers": n_workers})


def _drive(ray, job, rows, worker_cls, kwargs, expect, *, workers, gpus, cpus
           ) -> tuple[int, list[Finding]]:
    n_total = len(job.examples)
    n_todo = sum(job.units[r["unit"]][1] - job.units[r["unit"]][0] for r in rows)
    bar = progress(total=n_total, desc="extract (ray)", unit="ex")
    bar.update(n_total - n_todo)
    reference = expect.get("projection_sha256")
    n_new, problems, seen = 0, [], 0
    try:
        for row in run_units(ray, rows, worker_cls, kwargs, workers=workers, gpus=gpus,
                             cpus=cpus):
            info = json.loads(row["info"])
            unit = int(row["unit"])
            if row["status"] == "refused":
                raise StoreMismatchError(info["message"])
            if row["status"] == "failed":
                done = sum(m is not None for m in job.markers())
                raise RayExtractionError(
                    f"{info['message']}; {done} of {len(job.units)} work units are finished "
                    f"and kept in {job.out_dir}: run the same command again to resume")
            digest = info["projection_sha256"]
            if reference is None:
                reference = digest
            elif digest != reference:
                # this unit was drawn with other matrices: drop it before stopping
                from constraintlab.encode.store import unit_marker_path

                unit_marker_path(job.out_dir, unit).unlink(missing_ok=True)
                raise StoreMismatchError(
                    f"Ray workers draw different projection matrices ({reference[:12]} vs "
                    f"{digest[:12]} on {info['worker']}); check that NumPy and torch match "
                    "on every node")
            if row["status"] == "problems":
                from constraintlab.encode.store import finding_from_dict

                found = [finding_from_dict(p) for p in info["problems"]]
                logger.warning("unit %d: %d example(s) cannot be tokenised", unit, len(found))
                problems += found
            n_new += info.get("examples_computed", 0)
            seen += 1
            bar.update(info.get("examples", 0))
    except ConstraintlabError:
        raise
    except Exception as err:   # Ray's own errors: an actor kept dying, the cluster went away
        done = sum(m is not None for m in job.markers())
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RayExtractionError(
            f"the Ray job stopped ({type(err).__name__}: {first[:300]}); {done} of "
            f"{len(job.units)} work units are finished and kept in {job.out_dir}: run the same "
            "command again to resume") from err
    finally:
        bar.close()
    return n_new, problems
