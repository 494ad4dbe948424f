"""Every setting of every settings class is declared once, with a check that refuses a bad
value by name: one invalid value per field, derived from its declared check (outside the
interval, not among the options, not matching the pattern, the wrong type), must raise a
ConfigError naming the field; the default passes."""

from __future__ import annotations

import dataclasses
import importlib
import math
import pkgutil
import typing

import pytest

import constraintlab
from constraintlab._config import (
    TYPE_ONLY,
    Interval,
    Options,
    Pattern,
    Settings,
    TypeOnly,
    base_type,
    field_types,
    setting,
    settings_class,
)
from constraintlab.errors import ConfigError

#: Optional extras a module may need (``constraintlab[ray]``): such a module is not walked here.
OPTIONAL = ("ray",)


def _all_settings_classes() -> list[type]:
    for info in pkgutil.walk_packages(constraintlab.__path__, "constraintlab."):
        if info.name.endswith("__main__"):      # runs the CLI when imported
            continue
        try:
            importlib.import_module(info.name)
        except ModuleNotFoundError as err:
            if (err.name or "").split(".")[0] not in OPTIONAL:
                raise
    found, todo = [], list(Settings.__subclasses__())
    while todo:
        cls = todo.pop()
        if cls.__module__.startswith("constraintlab."):
            found.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted(set(found), key=lambda c: c.__qualname__)


CLASSES = _all_settings_classes()
FIELDS = [(cls, f.name) for cls in CLASSES for f in dataclasses.fields(cls)]


def test_the_walk_finds_every_stage_config() -> None:
    names = {c.__name__ for c in CLASSES}
    assert {"AnalysisConfig", "EncodeConfig", "ReadConfig", "ProbeConfig", "CleanConfig",
            "SelectConfig"} <= names, names


def _base(hint: typing.Any) -> typing.Any:
    if typing.get_origin(hint) in (typing.Union, __import__("types").UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def _outside(check: typing.Any, kind: type) -> list[typing.Any]:
    """Values of ``kind`` that ``check`` refuses (none for TYPE_ONLY)."""
    out: list[typing.Any] = []
    if isinstance(check, Interval):
        step = 1 if kind is int else 0.5
        if check.low is not None:
            closed = check.closed in ("both", "left")
            out.append(kind(check.low - step) if closed else kind(check.low))
        if check.high is not None:
            closed = check.closed in ("both", "right")
            out.append(kind(check.high + step) if closed else kind(check.high))
        if kind is float and (check.finite or check.high is not None):
            out.append(math.inf)
        if kind is float:
            out.append(math.nan)
    elif isinstance(check, Options):
        out.append("no-such-option" if kind is str else
                   max(v for v in check.values) + 1)
    elif isinstance(check, Pattern):
        out.extend(v for v in ("", " ", "\n", "no such value!") if v not in check)
    else:
        assert isinstance(check, TypeOnly)
    assert all(v not in check for v in out), (check, out)
    return out


def _as_field_value(value: typing.Any, hint: typing.Any, default: typing.Any) -> typing.Any:
    """``value`` in the field's shape: a tuple field gets it as one element."""
    if typing.get_origin(_base(hint)) is tuple:
        base = default if isinstance(default, tuple) and default else ("x",)
        return (value, *base[1:])
    return value


@pytest.mark.parametrize(("cls", "name"), FIELDS,
                         ids=[f"{c.__name__}.{n}" for c, n in FIELDS])
def test_every_field_is_declared_and_refuses_what_its_check_refuses(cls, name) -> None:
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    check, doc = f.metadata.get("check"), f.metadata.get("doc")
    assert check is not None and isinstance(doc, str) and doc.strip() and "\n" not in doc
    assert name in (cls.__doc__ or ""), "the generated docstring documents every field"
    hint = field_types(cls)[name]
    cls(**{name: f.default})                              # the default passes on its own
    bad = [object()]                                      # the wrong type, always
    bad += [_as_field_value(v, hint, f.default) for v in _outside(check, base_type(hint))]
    if base_type(hint) in (int, float):
        bad.append(_as_field_value("1", hint, f.default))  # a numeric string is not a number
    if base_type(hint) is int:
        bad.append(_as_field_value(1.5, hint, f.default))
    for value in bad:
        with pytest.raises(ConfigError) as info:
            cls(**{name: value})
        assert name in str(info.value), (value, str(info.value))


def test_a_field_without_a_check_is_refused_when_the_class_is_defined() -> None:
    with pytest.raises(TypeError, match=r"Undeclared\.plain"):
        @settings_class
        class Undeclared(Settings):
            declared: int = setting(1, Interval(0, None), "fine")
            plain: int = 3

    with pytest.raises(TypeError, match=r"NoDoc\.x"):
        @settings_class
        class NoDoc(Settings):
            x: bool = setting(True, TYPE_ONLY, "")

    with pytest.raises(TypeError, match=r"TwoLines\.x"):
        @settings_class
        class TwoLines(Settings):
            x: bool = setting(True, TYPE_ONLY, "one\ntwo")


def test_check_fields_reads_the_declarations() -> None:
    @settings_class
    class Tiny(Settings):
        share: float = setting(0.5, Interval(0, 1, "right"), "a share")
        pick: str = setting("a", Options(("a", "b")), "a pick")

        def __post_init__(self) -> None:
            from constraintlab._config import check_fields
            check_fields(self)

    assert Tiny(share=1).share == 1.0 and isinstance(Tiny(share=1).share, float)
    with pytest.raises(ConfigError, match=r"Tiny: share must be a number in \(0, 1\], got 0"):
        Tiny(share=0)
    with pytest.raises(ConfigError, match="Tiny: pick must be one of a, b, got 'c'"):
        Tiny(pick="c")
    assert "share : float, default 0.5\n        a share Valid: a number in (0, 1]." in Tiny.__doc__
