"""The public :func:`extract`: one entry for both ways of running the same work units.

In this process (:func:`constraintlab.encode.extraction.extract_local`) or on Ray
(:func:`constraintlab.encode.distributed.extract_on_ray`). Both write the same store byte for
byte; this module only chooses, so neither of the two imports the other.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from constraintlab.encode.config import EncodeConfig
from constraintlab.encode.store import FeatureStore

__all__ = ["extract"]


def extract(examples: Iterable, config: EncodeConfig | None = None,
            out_dir: str | os.PathLike = "features", *, dataset_source: str | None = None,
            content_hash: str | None = None, overwrite: bool = False, encoder=None,
            on_invalid: str | None = None, ray=None, workers: int | None = None,
            gpus_per_worker: float | None = None,
            cpus_per_worker: float | None = None) -> FeatureStore:
    """Build (or resume, or reuse) the feature store of ``examples`` in ``out_dir``.

    Parameters
    ----------
    examples, config, out_dir, dataset_source, content_hash, overwrite, encoder, on_invalid
        As :func:`constraintlab.encode.extraction.extract_local` (an unfinished store of the
        same settings and data is resumed whoever started it, in this process or on Ray).
    ray : None (this process), or compute the units on Ray: ``"auto"`` (the running cluster,
        else a new local one), ``"local"`` (a new local one), a cluster address, or a
        :class:`~constraintlab.encode.distributed.RayOptions`. Needs ``constraintlab[ray]``.
    workers, gpus_per_worker, cpus_per_worker : the Ray actor pool (see
        :class:`~constraintlab.encode.distributed.RayOptions`); only with ``ray``. No Ray
        setting enters the store: it is byte-identical for any of them and without Ray.

    Returns
    -------
    FeatureStore
        Row n is the n-th usable example.
    """
    from constraintlab.encode.distributed import extract_on_ray, ray_options

    options = ray_options(ray, workers=workers, gpus_per_worker=gpus_per_worker,
                          cpus_per_worker=cpus_per_worker)
    if options is not None:
        return extract_on_ray(examples, config, out_dir, options=options,
                              dataset_source=dataset_source, content_hash=content_hash,
                              overwrite=overwrite, encoder=encoder, on_invalid=on_invalid)
    from constraintlab.encode.extraction import extract_local

    return extract_local(examples, config, out_dir, dataset_source=dataset_source,
                         content_hash=content_hash, overwrite=overwrite, encoder=encoder,
                         on_invalid=on_invalid)
