"""Formatting helpers every presentation shares: HTML escaping (:func:`_e`), clipped cells,
numbers, embedded figures, example texts, word diffs and record links. Formats only."""

from __future__ import annotations

import base64
import difflib
import html
import re
from typing import Any

import pandas as pd


def _e(text: Any) -> str:
    """``text`` escaped for HTML (quotes too): every piece of dataset text goes through it."""
    return html.escape(str(text), quote=True)


def _clip(text: Any, limit: int = 160) -> str:
    """Escaped ``text``; longer than ``limit`` characters: its start, expandable to the whole
    (``<details>``), so a long cell does not wrap to a wall of lines."""
    text = str(text)
    if len(text) <= limit:
        return _e(text)
    return (f"<details class='clip'><summary>{_e(text[:limit])}</summary>{_e(text)}"
            "</details>")


def record_links(text: str) -> tuple[str, list[int]]:
    """``text`` escaped, with the record ids it names (``record 5``, ``records 3, 17 and 4
    more``, ``records 8 & 298, 9 & 300``) linked to their rows in "Records named above"
    (``#record-5``); returns the HTML and the ids in order of appearance."""
    found: list[int] = []

    def link_ids(match: re.Match) -> str:
        def one(m: re.Match) -> str:
            found.append(int(m.group(0)))
            return f"<a href='#record-{m.group(0)}'>{m.group(0)}</a>"
        return match.group(1) + re.sub(r"\d+", one, match.group(2))

    escaped = _e(text)
    ids = r"(\d+(?:(?: &amp; |, )\d+(?![.\d]| (?:records?|examples?)\b))*)"
    linked = re.sub(r"(\brecords? )" + ids, link_ids, escaped)
    return linked, list(dict.fromkeys(found))


def _num(value: Any, digits: int = 4) -> str:
    """A number for a table cell (``–`` for None, ``digits`` significant digits for floats)."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return _e(value)
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return _e(value)


def _img(png: bytes | None, alt: str) -> str:
    """An ``<img>`` with the PNG embedded (base64); "" without one."""
    if not png:
        return ""
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _text(examples: pd.DataFrame, idx: int, column: str, limit: int = 3000) -> str:
    """Example ``idx``'s ``column`` text (not escaped), cut at ``limit`` characters."""
    value = str(examples.at[idx, column]) if idx in examples.index else ""
    return value if len(value) <= limit else value[:limit] + f" [... {len(value) - limit} more]"


def _diff(a: str, b: str) -> tuple[str, str]:
    """Word-level diff of two texts, escaped, with <del>/<ins> marks."""
    wa, wb = a.split(" "), b.split(" ")
    left, right = [], []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, wa, wb, autojunk=False).get_opcodes():
        ta, tb = _e(" ".join(wa[i1:i2])), _e(" ".join(wb[j1:j2]))
        if op == "equal":
            left.append(ta)
            right.append(tb)
        else:
            if ta:
                left.append(f"<del>{ta}</del>")
            if tb:
                right.append(f"<ins>{tb}</ins>")
    return " ".join(left), " ".join(right)


def number_line(label: str, value: str, text: str) -> str:
    """A line of the terminal summary's numbers: ``label`` from column 2, ``value``
    right-aligned to column 29 (a wider one pushes on), three spaces, ``text``."""
    return f"  {label:<17}{value:>10}   {text}"
