"""The analyzers of an analysis, found in their own modules, and the order they run in.

Every analyzer module declares, at module level, ``ANALYZER = Analyzer(...)`` (a tuple
``ANALYZERS`` only where one module must hold several, named with the reason in
``tests/test_registry.py``, where every other module of the package is listed as machinery):
its name (the attribute of :class:`~constraintlab.analysis.result.AnalysisResults` and of
:meth:`~constraintlab.analysis.result.AnalysisResults.summary`), the function that runs it on a
:class:`~constraintlab.analysis.system.ConstraintSystem`, the analyzers whose results it reads,
the ``report.json`` section its summary *is* (the summary's keys are the contract's names: the
report copies it, it does not rename), and the gate metrics it publishes (each a key of that
section). :func:`analyzers` imports every module of ``constraintlab.analysis`` once, collects
what they declare and orders it so that each analyzer runs after those it reads (ties broken by
name, so the order is the same on every machine). Adding an analyzer is one new module; nothing
else in this package has to learn its name (DEVELOPERS.md, "How to add an analyzer").
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Analyzer", "Metric", "analyzers", "metric_table", "order_analyzers"]


@dataclass(frozen=True)
class Metric:
    """A gate metric: a value of the analyzer's report section.

    Attributes
    ----------
    key : str
        Where the value is in the analyzer's section (dots walk into nested objects:
        ``"energy_directions.90"``).
    description : str
        One line for the README table and ``constraintlab gate --list``.
    """

    key: str
    description: str


@dataclass(frozen=True)
class Analyzer:
    """One analyzer as the pipeline sees it.

    Attributes
    ----------
    name : str
        ``AnalysisResults.<name>`` and the key of ``AnalysisResults.summary()``.
    run : callable ``(ConstraintSystem, AnalysisResults, AnalysisConfig) -> AnalyzerResult | None``
        Runs the analyzer on the checked system, reading earlier results from ``results``
        (``results.pairs``...); returns None when the system lacks what it needs (no features,
        no token profiles...).
    section : str or None
        The ``report.json`` section the result's summary goes into (several analyzers may
        share one: ``spectrum`` and ``determinacy`` both write ``system``); None = not reported.
    after : tuple of str
        Analyzers whose results ``run`` reads; it runs after them when they are present.
    metrics : mapping of str to Metric
        Gate metrics this analyzer publishes (``Report.metrics()``); a metric name is global.
    """

    name: str
    run: Callable[[Any, Any, Any], Any]
    section: str | None = None
    after: tuple[str, ...] = ()
    metrics: Mapping[str, Metric] = field(default_factory=dict)


def order_analyzers(found: list[Analyzer]) -> tuple[Analyzer, ...]:
    """``found`` in run order: every analyzer after the ones it names in ``after`` (when they
    are among ``found``), ties by name.

    Raises
    ------
    ValueError
        Two analyzers with one name, two publishing one metric, or a cycle of ``after``.
    """
    by_name: dict[str, Analyzer] = {}
    metric_owner: dict[str, str] = {}
    for a in found:
        if a.name in by_name:
            raise ValueError(f"two analyzers are named {a.name!r}")
        by_name[a.name] = a
        for m in a.metrics:
            if m in metric_owner:
                raise ValueError(f"metric {m!r} is published by {metric_owner[m]!r} and "
                                 f"{a.name!r}")
            metric_owner[m] = a.name
    waiting = {a.name: {d for d in a.after if d in by_name} for a in found}
    order: list[Analyzer] = []
    while waiting:
        ready = sorted(n for n, deps in waiting.items() if not deps)
        if not ready:
            raise ValueError(f"analyzers wait on each other: {sorted(waiting)}")
        name = ready[0]
        order.append(by_name[name])
        del waiting[name]
        for deps in waiting.values():
            deps.discard(name)
    return tuple(order)


@functools.cache
def analyzers() -> tuple[Analyzer, ...]:
    """Every analyzer declared in a module of ``constraintlab.analysis``, in run order."""
    found: list[Analyzer] = []
    here = Path(__file__).resolve().parent
    for info in sorted(pkgutil.iter_modules([str(here)]), key=lambda m: m.name):
        module = importlib.import_module(f"{__package__}.{info.name}")
        declared = getattr(module, "ANALYZERS", None) or ()
        single = getattr(module, "ANALYZER", None)
        found.extend([*declared, *([single] if single is not None else [])])
    return order_analyzers(found)


def metric_table() -> dict[str, tuple[str, Metric]]:
    """``{metric: (report section, Metric)}`` over every analyzer, in run order."""
    return {name: (a.section, m) for a in analyzers() if a.section
            for name, m in a.metrics.items()}


def lookup(section: Mapping[str, Any] | None, key: str) -> Any:
    """The value at dotted ``key`` inside ``section``; raises KeyError when absent."""
    value: Any = section
    for part in key.split("."):
        if not isinstance(value, Mapping):
            raise KeyError(key)
        value = value[part]
    return value
