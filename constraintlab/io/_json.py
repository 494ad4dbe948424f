"""Wording shared by the readers' error messages."""

from __future__ import annotations

from typing import Any

_NAMES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
          int: "a number", float: "a number", type(None): "null"}


def type_name(value: Any) -> str:
    """How a JSON value's type is named in messages: ``an object``, ``a string``, ``null``..."""
    return _NAMES.get(type(value), type(value).__name__)


def key_list(record: dict) -> str:
    """The record's keys, sorted, at most eight: ``a, b, c`` (``none`` when empty)."""
    keys = sorted(map(str, record))
    if not keys:
        return "none"
    return ", ".join(keys[:8]) + (", ..." if len(keys) > 8 else "")
