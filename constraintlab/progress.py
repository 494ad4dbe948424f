"""The one progress helper: every long loop in constraintlab goes through :func:`progress`.

Bars go to stderr and only appear on a terminal, so logs and CI output stay clean.
``set_progress(False)`` (the CLI's ``--quiet``) turns them off everywhere.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from typing import TypeVar

if importlib.util.find_spec("ipywidgets") is not None:
    from tqdm.auto import tqdm  # a widget bar in notebooks, text elsewhere
else:  # tqdm.auto without ipywidgets warns (IProgress not found)
    from tqdm import tqdm

T = TypeVar("T")

_enabled: bool | None = None  # None: show on a terminal only (tqdm's own rule)


def set_progress(enabled: bool | None) -> None:
    """Force progress bars on (True), off (False), or back to "terminal only" (None)."""
    global _enabled
    _enabled = enabled


def progress(
    iterable: Iterable[T] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    leave: bool = False,
) -> tqdm:
    """Wrap ``iterable`` (or make a manual bar with ``total``) in a progress bar.

    Returns a tqdm object: iterate over it, or call ``.update(n)`` on a manual bar.
    """
    disable = None if _enabled is None else not _enabled
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, disable=disable,
                dynamic_ncols=True)

