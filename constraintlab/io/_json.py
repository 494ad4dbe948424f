"""Wording shared by the readers' error messages."""

from __future__ import annotations


def key_list(record: dict) -> str:
    """The record's keys, sorted, at most eight: ``a, b, c`` (``none`` when empty)."""
    keys = sorted(map(str, record))
    if not keys:
        return "none"
    return ", ".join(keys[:8]) + (", ..." if len(keys) > 8 else "")
