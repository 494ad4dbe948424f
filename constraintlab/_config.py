"""Declarative settings: each field declared once (default, check, one-line doc), one loop.

Every settings class (``io.ReadConfig``, ``encode.EncodeConfig``, ``analysis.AnalysisConfig``,
``probe.ProbeConfig``, ``analysis.cleaning.CleanConfig``, ``analysis.selection.SelectConfig``)
is a :func:`settings_class`: a frozen dataclass whose every field is a :func:`setting`
(kronfluence's ``field(metadata=...)``)::

    top_m: int = setting(10, Interval(1, None), "neighbours kept per example")

A field declared without a check or a doc is refused when the class is defined (as
scikit-learn refuses parameters without a declared constraint); the class docstring's
``Attributes`` section is generated from the declarations. What a field may hold is said
twice, each once:

- its **declared type** (``typing.get_type_hints``: ``int``, ``float``, ``bool``, ``str``,
  ``tuple[float, float]``, ``tuple[str, ...]``, ``X | None``) gives the kind of value. The loop
  normalises what clearly fits (an ``int`` or NumPy number for a ``float`` field becomes a
  ``float``; a NumPy integer for an ``int`` field an ``int``; a list for a tuple field a tuple;
  an ``os.PathLike`` for a ``str`` field its path) and refuses the rest (``21.0`` for an
  ``int`` field, ``1`` for a ``bool`` field);
- its **check** (:class:`Interval`, :class:`Options`, :class:`Pattern` or :data:`TYPE_ONLY`,
  scikit-learn's ``_parameter_constraints``) gives the valid values; for a tuple field it
  applies to each element; ``None`` passes wherever the type allows it.

Rules between fields (``tau_min <= tau_max``) stay a few explicit lines in the config's
``__post_init__``. :func:`coerce` turns command-line text (``--set lsh_bands=21``) into a
value of the declared type; :meth:`Settings.from_dict` rebuilds a config from a saved dict and
refuses keys it does not know.

This module is a leaf: it imports only the standard library and :mod:`constraintlab.errors`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import os
import re
import textwrap
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

try:                                    # Python >= 3.11: type checkers see the fields
    from typing import dataclass_transform
except ImportError:                     # pragma: no cover - Python 3.10
    def dataclass_transform(**_kwargs: Any) -> Any:
        return lambda decorated: decorated

from constraintlab.errors import ConfigError

__all__ = ["TYPE_ONLY", "Interval", "Options", "Pattern", "Settings", "base_type", "check_fields",
           "coerce", "field_types", "setting", "settings_class"]

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_NONE = ("none", "null")

S = TypeVar("S", bound="Settings")


@dataclass(frozen=True)
class Interval:
    """Numbers between ``low`` and ``high`` (either may be None: unbounded).

    Attributes
    ----------
    low, high : float or None
    closed : {"both", "left", "right", "neither"}
        Which ends belong to the interval.
    finite : bool
        Also refuse ``inf`` (NaN never passes a bound).
    """

    low: float | None = None
    high: float | None = None
    closed: str = "both"
    finite: bool = False

    def __contains__(self, value: Any) -> bool:
        if self.finite and not math.isfinite(value):
            return False
        if self.low is not None:
            if not (value >= self.low if self.closed in ("both", "left") else value > self.low):
                return False
        if self.high is not None:
            if not (value <= self.high if self.closed in ("both", "right")
                    else value < self.high):
                return False
        if self.low is None and self.high is None and value != value:
            return False
        return True

    def describe(self, kind: type) -> str:
        """``a positive integer``, ``a number in (0, 1]``, ``a finite number >= 0``..."""
        left_closed = self.closed in ("both", "left")
        right_closed = self.closed in ("both", "right")
        if kind is int and self.high is None and left_closed and self.low in (0, 1):
            return "a positive integer" if self.low == 1 else "a non-negative integer"
        noun = "an integer" if kind is int else ("a finite number" if self.finite
                                                  else "a number")
        if self.low is not None and self.high is not None:
            return (f"{noun} in {'[' if left_closed else '('}{self.low:g}, {self.high:g}"
                    f"{']' if right_closed else ')'}")
        if self.low is not None:
            return f"{noun} {'>=' if left_closed else '>'} {self.low:g}"
        if self.high is not None:
            return f"{noun} {'<=' if right_closed else '<'} {self.high:g}"
        return noun


@dataclass(frozen=True)
class Options:
    """One of a fixed set of values (``projection`` in ``("rademacher", "gaussian", "none")``)."""

    values: tuple

    def __contains__(self, value: Any) -> bool:
        return value in self.values

    def describe(self, kind: type) -> str:
        return "one of " + ", ".join(map(str, self.values))


@dataclass(frozen=True)
class Pattern:
    """A string that matches ``regex`` in full (``device``: ``cpu|cuda(:\\d+)?|mps``).

    Attributes
    ----------
    regex : str
    words : str
        How the valid values are named in messages (``"cpu, cuda, cuda:N or mps"``).
    """

    regex: str
    words: str

    def __contains__(self, value: Any) -> bool:
        return isinstance(value, str) and re.fullmatch(self.regex, value) is not None

    def describe(self, kind: type) -> str:
        return self.words


@dataclass(frozen=True)
class TypeOnly:
    """The declared type is the whole check (a bool, a free name or path)."""

    def __contains__(self, value: Any) -> bool:
        return True

    def describe(self, kind: type) -> str:
        return _type_words(kind)


#: The check of a field whose declared type says all (``trust_remote_code: bool``).
TYPE_ONLY = TypeOnly()

Constraint = Interval | Options | Pattern | TypeOnly


def setting(default: Any, check: Constraint, doc: str) -> Any:
    """Declare a settings field once: its default, its check and a one-line doc.

    Parameters
    ----------
    default : immutable value
    check : Interval, Options, Pattern or TYPE_ONLY
        The valid values (of each element for a tuple field; None passes where the type
        allows it). Rules between fields stay in the class's ``__post_init__``.
    doc : str
        One line, shown by ``help()`` (generated ``Attributes``) and as the CLI flag's help.

    Returns
    -------
    dataclasses.Field
    """
    return dataclasses.field(default=default, metadata={"check": check, "doc": doc})


def _doc_type(hint: Any) -> str:
    """numpydoc words for a declared type: ``float or None``, ``tuple of 4 float``."""
    if _is_union(hint):
        args = typing.get_args(hint)
        return " or ".join(_doc_type(a) for a in args if a is not type(None)) + (
            " or None" if type(None) in args else "")
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"tuple of {_doc_type(args[0])}"
        return f"tuple of {len(args)} {_doc_type(args[0])}"
    return getattr(hint, "__name__", str(hint))


def _field_doc(f: dataclasses.Field, hint: Any) -> str:
    """The numpydoc entry of one declared field (type, default, doc, valid values)."""
    check = f.metadata["check"]
    text = f.metadata["doc"]
    if not isinstance(check, TypeOnly):
        text += f" Valid: {check.describe(base_type(hint))}."
    body = textwrap.fill(text, 92, initial_indent="    ", subsequent_indent="    ")
    return f"{f.name} : {_doc_type(hint)}, default {f.default!r}\n{body}"


@dataclass_transform(frozen_default=True, field_specifiers=(setting, dataclasses.field))
def settings_class(cls: type[S]) -> type[S]:
    """Make ``cls`` (a :class:`Settings` subclass) a frozen dataclass of declared settings.

    Refuses, when the class is defined, a field not declared with :func:`setting` (no check,
    or no one-line doc), and appends the ``Attributes`` section generated from the
    declarations to the class docstring.

    Raises
    ------
    TypeError
        ``<Config>.<field>: declare it with setting(default, check, doc)``.
    """
    if not issubclass(cls, Settings):
        raise TypeError(f"{cls.__name__}: a settings class must subclass Settings")
    cls = dataclass(frozen=True)(cls)
    hints = field_types(cls)
    docs = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        check, doc = f.metadata.get("check"), f.metadata.get("doc")
        if not isinstance(check, Constraint) or not isinstance(doc, str) or not doc.strip() \
                or "\n" in doc or f.default is dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{f.name}: declare it with setting(default, check, "
                            "doc): a default, an Interval/Options/Pattern/TYPE_ONLY check and "
                            "a one-line doc")
        docs.append(_field_doc(f, hints[f.name]))
    cls.__doc__ = ((cls.__doc__ or cls.__name__).rstrip() + "\n\n    Attributes\n    ----------\n"
                   + "\n".join("    " + d.replace("\n", "\n    ") for d in docs) + "\n")
    return cls


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """``{field name: declared type}`` of a dataclass (annotations resolved)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _type_words(hint: Any) -> str:
    """How a declared type is named in messages."""
    if _is_union(hint):
        args = typing.get_args(hint)
        words = [_type_words(a) for a in args if a is not type(None)]
        return " or ".join(words) + (" or None" if type(None) in args else "")
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_type_words(args[0]).split(' ', 1)[1]}s"
        return f"{len(args)} {_type_words(args[0]).split(' ', 1)[1]}s"
    return {bool: "true or false", int: "an integer", float: "a number",
            str: "a string"}.get(hint, getattr(hint, "__name__", str(hint)))


class _Misfit(Exception):
    pass


def _conform(value: Any, hint: Any) -> Any:
    """``value`` normalised to the declared type ``hint``; raises :class:`_Misfit`."""
    if _is_union(hint):
        args = typing.get_args(hint)
        if value is None:
            if type(None) in args:
                return None
            raise _Misfit
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _conform(value, arg)
            except _Misfit:
                continue
        raise _Misfit
    if typing.get_origin(hint) is tuple:
        if getattr(value, "ndim", None) == 1 and hasattr(value, "tolist"):   # a NumPy vector
            value = value.tolist()
        if not isinstance(value, list | tuple):
            raise _Misfit
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_conform(v, args[0]) for v in value)
        if len(value) != len(args):
            raise _Misfit
        return tuple(_conform(v, a) for v, a in zip(value, args, strict=True))
    if hint is bool:
        if isinstance(value, bool) or type(value).__name__ == "bool_":
            return bool(value)
        raise _Misfit
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        raise _Misfit                                   # never a number, never a string
    if hint is int:
        if isinstance(value, numbers.Integral):
            return int(value)
        raise _Misfit
    if hint is float:
        if isinstance(value, numbers.Real):
            return float(value)
        raise _Misfit
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        raise _Misfit
    if hint is Any or isinstance(value, hint):
        return value
    raise _Misfit


def base_type(hint: Any) -> type:
    """``int`` for ``int | None``, ``float`` for ``tuple[float, ...]``..."""
    if _is_union(hint):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is tuple:
        hint = typing.get_args(hint)[0]
    return hint


def check_fields(config: Any) -> None:
    """Normalise every field of ``config`` to its declared type and check its declared check.

    Parameters
    ----------
    config : Settings instance (a :func:`settings_class`)
        Normalised values are written back (``object.__setattr__``).

    Raises
    ------
    ConfigError
        ``<Config>: <field> must be <what>, got <value>`` for the first field that does not fit.
    """
    cls = type(config)
    name_of = cls.__name__
    checks = {f.name: f.metadata["check"] for f in dataclasses.fields(cls)}
    for name, hint in field_types(cls).items():
        value = getattr(config, name)
        try:
            fitted = _conform(value, hint)
        except _Misfit:
            raise ConfigError(f"{name_of}: {name} must be {_type_words(hint)}, got "
                              f"{value!r}") from None
        if fitted is not value:
            object.__setattr__(config, name, fitted)
        rule = checks[name]
        if fitted is None:
            continue
        items = fitted if isinstance(fitted, tuple) else (fitted,)
        if not all(v in rule for v in items):
            what = rule.describe(base_type(hint))
            if isinstance(fitted, tuple):
                what = f"{_type_words(hint)}, each {what}"
            raise ConfigError(f"{name_of}: {name} must be {what}, got {value!r}")


def _parse(text: str, hint: Any) -> Any:
    """Command-line text -> a value of ``hint``; raises :class:`_Misfit`."""
    word = text.strip()
    if _is_union(hint):
        args = typing.get_args(hint)
        if word.lower() in _NONE and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _parse(text, arg)
            except _Misfit:
                continue
        raise _Misfit
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        parts = [p for p in word.split(",")] if word else []
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_parse(p, args[0]) for p in parts)
        if len(parts) != len(args):
            raise _Misfit
        return tuple(_parse(p, a) for p, a in zip(parts, args, strict=True))
    try:
        if hint is bool:
            if word.lower() in _TRUE:
                return True
            if word.lower() in _FALSE:
                return False
            raise _Misfit
        if hint is int:
            return int(word)
        if hint is float:
            return float(word)
    except ValueError:
        raise _Misfit from None
    if hint is str:
        return text
    raise _Misfit


def coerce(cls: type, name: str, text: str) -> Any:
    """``text`` (from the command line) as a value of field ``name``'s declared type.

    ``"21"`` -> ``21`` for ``int | None``; ``"none"``/``"null"`` -> None where allowed;
    ``true/false/yes/no/on/off/1/0`` for ``bool``; comma-separated for tuples
    (``"1,1,0.5,1"``). Ranges are checked when the config is built.

    Raises
    ------
    ConfigError
        Unknown field, or text that is not a value of the type (``"21.5"`` for an ``int``).
    """
    hints = field_types(cls)
    if name not in hints:
        raise ConfigError(f"{cls.__name__} has no setting {name!r}; valid settings: "
                          + ", ".join(sorted(hints)))
    try:
        return _parse(text, hints[name])
    except _Misfit:
        raise ConfigError(f"{name} = {text!r}: not {_type_words(hints[name])}") from None


class Settings:
    """Mixin of the stage configs: :meth:`from_dict` (strict) and :meth:`to_dict`.

    Subclasses are :func:`settings_class` es whose ``__post_init__`` calls :func:`check_fields`
    (then checks the rules between fields).
    """

    @classmethod
    def from_dict(cls: type[S], values: Mapping[str, Any]) -> S:
        """The config described by ``values`` (e.g. a report's ``analysis_config``).

        Lists become tuples where the field is a tuple; missing keys take their defaults.

        Raises
        ------
        ConfigError
            When ``values`` has a key that is not a field (a report written by another version,
            a typo): nothing is dropped silently.
        """
        if not isinstance(values, Mapping):
            raise ConfigError(f"{cls.__name__}: expected a mapping of settings, got "
                              f"{type(values).__name__}")
        names = field_types(cls)
        unknown = sorted(k for k in values if k not in names)
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown setting(s) {', '.join(map(str, unknown))}"
                              f"; valid settings: {', '.join(sorted(names))}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field (tuples as lists)."""
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out
