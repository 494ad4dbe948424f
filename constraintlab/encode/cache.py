"""The shared feature-store cache: where a store lives when its key is the content of the
examples, the model's weights and the encoder settings (not an output folder), so the same rows
reuse one store whatever form they came in and whatever ``--out`` they go to."""

from __future__ import annotations

import os
from pathlib import Path

from constraintlab._hashing import json_sha256
from constraintlab.encode.extraction import examples_digest
from constraintlab.encode.model import resolve_model, weights_digest
from constraintlab.encode.store import store_key

#: Environment variable naming the shared feature-store cache (see :func:`cache_dir`).
CACHE_ENV = "CONSTRAINTLAB_CACHE"


def cache_dir(cache: str | os.PathLike | bool | None = None) -> Path | None:
    """The shared feature-store cache: ``cache`` when it is a path; None (no shared cache)
    when it is False; else ``$CONSTRAINTLAB_CACHE``, else ``$XDG_CACHE_HOME/constraintlab``,
    else ``~/.cache/constraintlab``. Stores are never evicted: delete the folder to free it."""
    if cache is False:
        return None
    if cache is not None and cache is not True:
        return Path(cache).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "constraintlab"


def cache_key(config, examples) -> tuple[str, str]:
    """Where these examples' store lives in the shared cache, whatever form they came in.

    Parameters
    ----------
    config : EncodeConfig
    examples : sequence of Example

    Returns
    -------
    key : str
        16 hex digits: :func:`store_key` of ``config`` and ``data``.
    data : str
        sha256 of the examples as the encoder sees them (index, schema, targets, messages:
        :func:`~constraintlab.encode.extraction.examples_digest`) and of the model's weight
        files when ``config.model`` is a local directory, so the same rows from a file, a list
        or a ``datasets.Dataset`` share one store, and retrained weights under the same path
        do not.
    """
    weights = weights_digest(resolve_model(config.model))
    data = json_sha256({"examples": examples_digest(examples), "weights": weights})
    return store_key(config, data), data
