"""Each report section's presentation, in one module per ``report.json`` section.

A module here declares ``SECTION = Section(...)``: the section it presents (a ``report.json``
key) and the pieces a person sees of it, each a :class:`Part` placed in a slot of the page or
of the terminal summary at an order (smaller first), its figures, its "to fix" counts and the
:class:`~constraintlab.report.report.Report` accessors it adds (a table getter, a figure).
:func:`sections` imports every module of this package once and collects what they declare,
as :func:`constraintlab.analysis.registry.analyzers` does for the analyzers; the page
(:mod:`constraintlab.report.html`), the terminal summary (:mod:`constraintlab.report.terminal`)
and :class:`Report` only assemble what is declared here. Adding an analyzer's presentation is
one new module (DEVELOPERS.md, "How to add an analyzer").

Slots
-----
HTML (a part returns a list of HTML strings; every text from the data through ``_e``):
``verdict`` (inside the verdict box, after the verdict sentence), ``top`` (under the verdict
box), ``kpi`` (the cards), ``body`` (the sections of the page, each under its own ``<h2>``),
``end`` (after the sections).
Terminal (a part returns plain lines; every text from the data through ``visible``):
``head`` (under the "To fix" line), ``actions`` (what to do next), ``numbers`` (one line each),
``tail`` (after the numbers).
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["HTML_SLOTS", "TERMINAL_SLOTS", "Fix", "Part", "Section", "View", "install",
           "parts", "sections"]

HTML_SLOTS = ("verdict", "top", "kpi", "body", "end")
TERMINAL_SLOTS = ("head", "actions", "numbers", "tail")


@dataclass(frozen=True)
class View:
    """What a part reads: the report's content, never more.

    Attributes
    ----------
    data : dict
        The ``report.json`` content.
    examples : DataFrame
        ``examples.csv`` (index = example index; ``input``, ``target`` texts, flags, scores).
    metrics : dict
        ``Report.metrics()`` (the gate's flat numbers; ``nan`` = not measured).
    figures : dict name -> PNG bytes
        The page's figures (empty for the terminal).
    width : int
        Terminal width the lines wrap at.
    """

    data: Mapping[str, Any]
    examples: pd.DataFrame
    metrics: Mapping[str, Any] = field(default_factory=dict)
    figures: Mapping[str, bytes] = field(default_factory=dict)
    width: int = 100


@dataclass(frozen=True)
class Part:
    """One piece of a section's presentation: ``render(view)`` in ``slot`` at ``order``."""

    slot: str
    order: float
    render: Callable[[View], list[str]]

    def __post_init__(self) -> None:
        if self.slot not in HTML_SLOTS + TERMINAL_SLOTS:
            raise ValueError(f"unknown slot {self.slot!r}; one of "
                             f"{', '.join(HTML_SLOTS + TERMINAL_SLOTS)}")


@dataclass(frozen=True)
class Fix:
    """A count the terminal's "To fix" line names: ``metric`` as ``one``/``many`` things."""

    order: float
    metric: str
    one: str
    many: str


@dataclass(frozen=True)
class Section:
    """The presentation of one ``report.json`` section.

    Attributes
    ----------
    name : str
        The ``report.json`` key (an analyzer's ``section``, or one of the run's own sections:
        ``dataset``, ``pairs``).
    parts : sequence of Part
        Its pieces of the page and of the terminal summary.
    figures : mapping name -> callable ``(Report) -> Figure | None``
        Figures embedded in the page (``View.figures[name]``); None = not drawn.
    fixes : sequence of Fix
        Its counts in the "To fix" line.
    methods, properties : mapping name -> callable ``(Report, ...)``
        Accessors it adds to :class:`~constraintlab.report.report.Report` (a name must be new).
    kpi_links : mapping card label -> anchor
        The section a KPI card of its links to (the slug of that section's ``<h2>``).
    schema : mapping or None
        The JSON Schema of ``report.json[name]``: the section's contract, assembled into the
        whole report's by :func:`constraintlab.report.schema.report_schema` (``$ref`` may
        point into the frame's ``$defs``).
    """

    name: str
    parts: Sequence[Part] = ()
    figures: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)
    fixes: Sequence[Fix] = ()
    methods: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    properties: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)
    kpi_links: Mapping[str, str] = field(default_factory=dict)
    schema: Mapping[str, Any] | None = None


@functools.cache
def sections() -> tuple[Section, ...]:
    """Every ``SECTION`` declared in a module of this package, by module name.

    Raises
    ------
    ValueError
        Two modules present one section, or two declare one accessor.
    """
    found: dict[str, Section] = {}
    accessors: dict[str, str] = {}
    here = Path(__file__).resolve().parent
    for info in sorted(pkgutil.iter_modules([str(here)]), key=lambda m: m.name):
        module = importlib.import_module(f"{__package__}.{info.name}")
        section = getattr(module, "SECTION", None)
        if section is None:
            continue
        if section.name in found:
            raise ValueError(f"two modules present the report section {section.name!r}")
        found[section.name] = section
        for name in [*section.methods, *section.properties]:
            if name in accessors:
                raise ValueError(f"Report.{name} is declared by sections {accessors[name]!r} "
                                 f"and {section.name!r}")
            accessors[name] = section.name
    return tuple(found.values())


def parts(slot: str) -> list[Part]:
    """The parts of every section in ``slot``, by order (ties: by section name)."""
    ranked = [((p.order, s.name, i), p) for s in sections() for i, p in enumerate(s.parts)
              if p.slot == slot]
    return [p for _, p in sorted(ranked, key=lambda t: t[0])]


def render(slot: str, view: View) -> list[str]:
    """Every part of ``slot`` rendered on ``view``, concatenated in order."""
    return [line for p in parts(slot) for line in p.render(view)]


def install(cls: type) -> None:
    """Add every section's accessors to ``cls`` (methods as they are, properties as
    ``property``); a name ``cls`` already has is an error."""
    for s in sections():
        for name, fn in [*s.methods.items(), *s.properties.items()]:
            if name in vars(cls):
                raise ValueError(f"section {s.name!r} declares {cls.__name__}.{name}, which "
                                 "exists already")
            setattr(cls, name, property(fn) if name in s.properties else fn)
