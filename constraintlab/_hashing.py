"""The two hashes constraintlab takes, each written once.

- :func:`file_sha256`: sha256 of a file's bytes (a dataset file, a shard, the reference
  model's weights), read in chunks so no file is held whole.
- :func:`json_sha256`: sha256 of a JSON value written with sorted keys (the digests of
  settings, plans and selections that name a feature store or a dataset reading).

Hashes built incrementally over many pieces (the examples' content, a model's weight files
with their names, projection matrices) keep their own ``hashlib`` object where they are built.

This module is a leaf: it imports only the standard library.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import IO, Any

__all__ = ["file_sha256", "json_sha256"]

#: bytes read at a time
CHUNK = 1 << 22


def file_sha256(source: str | os.PathLike | IO[bytes]) -> str:
    """Hex sha256 of a file's bytes.

    Parameters
    ----------
    source : path, or a binary file object (hashed from its current position to the end)

    Returns
    -------
    str
        64 hex digits.
    """
    h = hashlib.sha256()
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as fh:
            while chunk := fh.read(CHUNK):
                h.update(chunk)
    else:
        while chunk := source.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def json_sha256(obj: Any) -> str:
    """Hex sha256 of ``json.dumps(obj, sort_keys=True)`` (ASCII, Python's default separators).

    Parameters
    ----------
    obj : a JSON-ready value (dicts, lists, str, numbers, bool, None)

    Returns
    -------
    str
        64 hex digits.
    """
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()
