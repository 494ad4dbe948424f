"""The one input of an analysis: the system of constraints, checked once.

:class:`ConstraintSystem` holds every array the analyzers read (constraint rows, the encoder's
two factors, per-token profiles, gradient norms, per-site energies), the examples, their ids and
the shared :class:`constraintlab.analysis.text.TextView`. :meth:`ConstraintSystem.build` checks
everything once, the way scikit-learn's ``check_array`` does at ``fit``: shapes agree, rows are
finite, ids are distinct. A problem raises :class:`constraintlab.errors.InputError`; the
analyzers downstream take the arrays as checked.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from constraintlab.analysis.config import AnalysisConfig
from constraintlab.analysis.text import TextView
from constraintlab.errors import InputError, Problem

logger = logging.getLogger(__name__)

__all__ = ["ConstraintSystem", "check_matrix"]


def check_matrix(name: str, M: Any, n: int | None) -> np.ndarray:
    """``M`` as a non-empty 2-D float array with ``n`` finite rows.

    Parameters
    ----------
    name : str
        How problems name the array (``<name>:row``).
    M : array-like (n, d)
        Cast to float32 unless already floating (a float32 memmap stays one: no copy).
    n : int or None
        Expected rows (None: any).

    Raises
    ------
    InputError
        Not 2-D or empty, the wrong number of rows, or rows with NaN/inf (one problem per row).
    """
    M = np.asarray(M)
    if M.ndim != 2 or M.shape[0] == 0 or M.shape[1] == 0:
        raise InputError([Problem(f"<{name}>", 1, f"{name} must be a non-empty 2-D array "
                                  f"(N, k), got shape {M.shape}")])
    if not np.issubdtype(M.dtype, np.floating):
        M = M.astype(np.float32)
    if n is not None and M.shape[0] != n:
        raise InputError([Problem(f"<{name}>", 1, f"{name} has {M.shape[0]} rows but there are "
                                  f"{n} examples")])
    bad = ~np.isfinite(M).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise InputError([Problem(f"<{name}>", int(r) + 1, "row has non-finite values "
                                  "(NaN or inf)") for r in rows])
    return M


def _problem(source: str, message: str) -> InputError:
    return InputError([Problem(source, 1, message)])


@dataclass(frozen=True, eq=False)
class ConstraintSystem:
    """N constraints and everything known about them, checked (build with :meth:`build` or
    :meth:`from_store`).

    Attributes
    ----------
    ids : (N,) int64
        Example ids in row order (``Example.index``; ``0..N-1`` without examples).
    features : (N, k) float or None
        Constraint rows (per-example projected LoRA gradients).
    input_factors, output_factors : (N, d_in), (N, d_out) float or None
        The encoder's pooled input-side representation and output-side error signal (both or
        neither).
    tokens : TokenProfiles or None
        Per-token NLL and rank of the target tokens (``len(tokens) == N``); with it
        ``grad_norm`` and ``vocab_size`` are set.
    grad_norm : (N,) float64 or None
        Norm of each example's full LoRA gradient.
    vocab_size : int or None
        The model's vocabulary size (>= 2).
    energy : (N, M) float or None
        Per-site gradient energy; with it ``modules`` (M rows: ``layer``, ``kind``,
        ``column``).
    modules : pandas.DataFrame or None
    n_params : int or None
        P, the trainable LoRA parameters (unknowns).
    n_truncated : (N,) int64 or None
        Tokens the encoder dropped from each example at ``max_length`` (0 = kept whole).
    examples : tuple of N Example or None
    text : TextView or None
        The examples' shared text view (None without examples).
    """

    ids: np.ndarray
    features: np.ndarray | None = None
    input_factors: np.ndarray | None = None
    output_factors: np.ndarray | None = None
    tokens: Any = None
    grad_norm: np.ndarray | None = None
    vocab_size: int | None = None
    energy: np.ndarray | None = None
    modules: pd.DataFrame | None = None
    n_params: int | None = None
    n_truncated: np.ndarray | None = None
    examples: tuple | None = None
    text: TextView | None = None

    @property
    def n(self) -> int:
        """N, the number of constraints (examples)."""
        return len(self.ids)

    @property
    def has_factors(self) -> bool:
        return self.input_factors is not None

    @property
    def has_layers(self) -> bool:
        return self.energy is not None and self.modules is not None

    @classmethod
    def build(
        cls,
        features: np.ndarray | None = None,
        *,
        examples: Sequence | None = None,
        input_factors: np.ndarray | None = None,
        output_factors: np.ndarray | None = None,
        n_params: int | None = None,
        ids: Sequence[int] | None = None,
        tokens: Any = None,
        grad_norm: np.ndarray | None = None,
        vocab_size: int | None = None,
        energy: np.ndarray | None = None,
        modules: pd.DataFrame | None = None,
        n_truncated: np.ndarray | None = None,
        config: AnalysisConfig | None = None,
    ) -> ConstraintSystem:
        """Check the inputs once and hold them.

        Parameters are the attributes (``features`` (N, k), ``examples`` N, ...); ``config``
        sets the text view's shingles and LSH thresholds. Energy without ``modules`` is
        checked and kept, but gives no layer map.

        Raises
        ------
        InputError
            Nothing to analyse; a matrix that is not 2-D, has the wrong number of rows or
            non-finite rows; one factor without the other; ids not N distinct integers; token
            profiles without ``grad_norm``/``vocab_size`` or of another length; ``grad_norm``
            not (N,); ``vocab_size < 2``; ``modules`` not one row per energy column;
            ``n_truncated`` not N non-negative integers.
        """
        config = config if config is not None else AnalysisConfig()
        if features is None and examples is None and input_factors is None:
            raise _problem("<analysis>", "nothing to analyse: give features, examples, or both")
        examples = tuple(examples) if examples is not None else None
        n = len(examples) if examples is not None else None
        if features is not None:
            features = check_matrix("features", features, n)
            n = features.shape[0]
        if input_factors is not None or output_factors is not None:
            if input_factors is None or output_factors is None:
                raise _problem("<factors>", "give both input_factors and output_factors, or "
                               "neither")
            input_factors = check_matrix("input_factors", input_factors, n)
            n = input_factors.shape[0]
            output_factors = check_matrix("output_factors", output_factors, n)
        assert n is not None
        if ids is None:
            ids_arr = (np.array([ex.index for ex in examples], dtype=np.int64)
                       if examples is not None else np.arange(n, dtype=np.int64))
        else:
            ids_arr = np.asarray(ids, dtype=np.int64)
            if ids_arr.shape != (n,) or len(np.unique(ids_arr)) != n:
                raise _problem("<ids>", f"ids must be {n} distinct integers")
        if tokens is not None:
            if grad_norm is None or vocab_size is None:
                raise _problem("<tokens>", "token volatility needs grad_norm and vocab_size "
                               "with the tokens")
            if len(tokens) != n:
                raise _problem("<tokens>", f"token profiles cover {len(tokens)} examples, "
                               f"there are {n}")
            grad_norm = np.asarray(grad_norm, dtype=np.float64)
            if grad_norm.shape != (n,):
                raise _problem("<grad_norm>", f"grad_norm has shape {grad_norm.shape}, "
                               f"expected ({n},)")
            if int(vocab_size) < 2:
                raise _problem("<tokens>", f"vocab_size must be >= 2, got {vocab_size}")
            vocab_size = int(vocab_size)
        if energy is not None:
            energy = check_matrix("energy", energy, n)
            if modules is not None and len(modules) != energy.shape[1]:
                raise _problem("<modules>", f"modules has {len(modules)} rows, energy has "
                               f"{energy.shape[1]} columns")
        if n_truncated is not None:
            n_truncated = np.asarray(n_truncated)
            if (n_truncated.shape != (n,) or not np.issubdtype(n_truncated.dtype, np.integer)
                    or (n_truncated < 0).any()):
                raise _problem("<n_truncated>", f"n_truncated must be {n} non-negative "
                               f"integers, got shape {n_truncated.shape}")
            n_truncated = n_truncated.astype(np.int64)
        return cls(ids=ids_arr, features=features, input_factors=input_factors,
                   output_factors=output_factors, tokens=tokens, grad_norm=grad_norm,
                   vocab_size=vocab_size, energy=energy, modules=modules,
                   n_params=int(n_params) if n_params is not None else None,
                   n_truncated=n_truncated, examples=examples,
                   text=TextView(examples, config) if examples is not None else None)

    @classmethod
    def from_store(
        cls,
        store: Any,
        *,
        examples: Sequence | None = None,
        config: AnalysisConfig | None = None,
    ) -> ConstraintSystem:
        """The system of a feature store written by ``extract``.

        Parameters
        ----------
        store : constraintlab.encode.store.FeatureStore
            Or anything with ``features`` (N, k) and optionally ``input_factors`` /
            ``output_factors`` (N, d), ``n_params``, a ``table`` whose ``index`` column holds
            the example ids (and ``grad_norm``, ``n_truncated`` and the per-site energy
            columns), ``tokens``,
            ``modules`` and a ``manifest`` with ``vocab_size``.
        examples : sequence of N Example, optional
            The examples in store row order (for the lexical analyses and zone labels).
        config : AnalysisConfig, optional

        Raises
        ------
        InputError
            The examples are not the store's (ids or order differ), or :meth:`build` refuses.
        """
        table = getattr(store, "table", None)
        ids = (table["index"].to_numpy() if table is not None and "index" in table.columns
               else None)
        if examples is not None and ids is not None:
            ex_ids = [ex.index for ex in examples]
            if len(ex_ids) != len(ids) or list(ids) != ex_ids:
                raise _problem("<store>", "the examples are not the ones of the store (ids or "
                               "order differ); read the dataset the store was extracted from")
        tokens = getattr(store, "tokens", None)
        modules = getattr(store, "modules", None)
        has_energy = bool(table is not None and modules is not None and len(modules)
                          and set(modules["column"]) <= set(table.columns))
        manifest = getattr(store, "manifest", {}) or {}
        return cls.build(
            store.features, examples=examples,
            input_factors=getattr(store, "input_factors", None),
            output_factors=getattr(store, "output_factors", None),
            n_params=getattr(store, "n_params", None), ids=ids,
            tokens=tokens,
            grad_norm=table["grad_norm"].to_numpy() if tokens is not None else None,
            vocab_size=manifest.get("vocab_size") if tokens is not None else None,
            energy=table[list(modules["column"])].to_numpy() if has_energy else None,
            modules=modules if has_energy else None,
            n_truncated=(table["n_truncated"].to_numpy()
                         if table is not None and "n_truncated" in table.columns else None),
            config=config)
