"""The one JSON helper: anything constraintlab writes as JSON goes through :func:`plain` first.

The rule, once for every artifact (report.json, probe results, model info in manifests):

- dicts -> dicts with ``str`` keys; lists and tuples -> lists; sets -> lists sorted by ``str``;
- NumPy arrays -> (nested) lists; NumPy scalars -> ``bool`` / ``int`` / ``float``;
- **non-finite floats (NaN, +inf, -inf) -> None** (JSON ``null``: "not measured / undefined"),
  so the output is strict JSON (``json.dumps(..., allow_nan=False)`` never fails);
- ``None``, ``bool``, ``int``, ``float`` and ``str`` (and their subclasses, e.g. ``str``
  enums) stay as they are; anything else (``Path``, enums, dtypes...) becomes ``str(obj)``.

This module is a leaf: it imports only the standard library and NumPy.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

__all__ = ["dumps", "plain"]


def plain(obj: Any) -> Any:
    """``obj`` as plain JSON-ready Python types (the rule is in the module docstring).

    Parameters
    ----------
    obj : Any
        Nested dicts / lists / tuples / sets of scalars, NumPy arrays and NumPy scalars.

    Returns
    -------
    Any
        The same structure made of ``dict``, ``list``, ``str``, ``int``, ``float``, ``bool``
        and ``None`` only.
    """
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain(v) for v in obj]
    if isinstance(obj, set | frozenset):
        return sorted((plain(v) for v in obj), key=str)
    if isinstance(obj, np.ndarray):
        return plain(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    return str(obj)


def dumps(obj: Any, *, indent: int | None = 2, ensure_ascii: bool = True) -> str:
    """Strict JSON text of ``plain(obj)`` (never ``NaN`` / ``Infinity`` tokens)."""
    return json.dumps(plain(obj), indent=indent, ensure_ascii=ensure_ascii, allow_nan=False)
