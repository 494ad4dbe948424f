"""Comparing results computed along different paths: floats within a stated tolerance, all
else exactly (a test helper, like tiny_models)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

#: Default tolerance for float64 results of two summation orders (BLAS, block sizes).
REL, ABS = 1e-9, 1e-12


def assert_close_tree(a: Any, b: Any, *, rel: float = REL, abs_tol: float = ABS,
                      where: str = "") -> None:
    """``a`` equals ``b``: dicts with the same keys, lists/tuples/arrays of the same length,
    floats within ``rel``/``abs_tol`` (nan equals nan), everything else ``==``."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        assert set(a) == set(b), f"{where}: keys {sorted(set(a) ^ set(b))} differ"
        for key in a:
            assert_close_tree(a[key], b[key], rel=rel, abs_tol=abs_tol, where=f"{where}.{key}")
    elif isinstance(a, (list, tuple, np.ndarray)) and isinstance(b, (list, tuple, np.ndarray)):
        assert len(a) == len(b), f"{where}: lengths {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close_tree(x, y, rel=rel, abs_tol=abs_tol, where=f"{where}[{i}]")
    elif isinstance(a, (float, np.floating)) or isinstance(b, (float, np.floating)):
        x, y = float(a), float(b)
        assert (math.isnan(x) and math.isnan(y)) or math.isclose(
            x, y, rel_tol=rel, abs_tol=abs_tol), f"{where}: {x!r} != {y!r}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"
