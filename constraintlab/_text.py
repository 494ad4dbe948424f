"""Text from the data, made safe for where it is shown: a terminal, JSON on stdout, Markdown, a
spreadsheet. Every place that prints or writes a path, a record's text or a name taken from the
data goes through one of these (the CLI summaries, ``inspect``, the gate's summaries,
``examples.csv``).

- :func:`visible` (terminal): control characters are shown as escapes (``ESC`` as ``\\x1b``), so
  a record cannot retitle, clear or recolour the user's terminal, move the cursor, or hide text
  with a carriage return or a bidirectional override. Shown escaped: C0 controls (``\\n`` and
  ``\\t`` only where ``keep_newlines``), DEL, C1 controls, the Unicode line and paragraph
  separators, the bidi marks, embeddings, overrides and isolates, and lone surrogates.
- :func:`json_visible`: the same characters as JSON escapes (``\\u001b`` for ESC) in JSON
  text (still the same JSON value when parsed).
- :func:`markdown_escape`: one line of plain text for Markdown that CI renders as HTML: the
  characters above are shown as escapes and every ASCII punctuation character is
  backslash-escaped (CommonMark), so no heading, list, link, image, HTML tag, code span or
  table cell can start from the data (``<img>`` and ``[x](javascript:...)`` stay text).
- :func:`markdown_code`: the same text as an inert code span (a condition in a table cell).
- :func:`csv_escape_frame` / :func:`csv_unescape_frame` (spreadsheets): the OWASP advice on CSV
  injection: a text cell beginning with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
  gets a leading single quote (``'``), so a spreadsheet shows it as text instead of running it
  as a formula. A text cell that already begins with ``'`` gets one too, which makes the
  escape reversible: reading back drops one leading ``'`` from every text cell that has one.
  Numbers (numeric columns, e.g. a negative score) are never changed.

This module is a leaf: it imports only the standard library and pandas (lazily).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

_UNSAFE = ("\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e"
           "\u2066-\u2069\ud800-\udfff")
_CONTROL = re.compile(f"[{_UNSAFE}]")
_CONTROL_ALL = re.compile(f"[{_UNSAFE}\t\n]")
_ASCII_PUNCT = re.compile(r"([!-/:-@\[-`{-~])")

#: First characters that make a spreadsheet read a CSV cell as a formula (OWASP), and the quote
#: that marks an escaped cell.
CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
CSV_QUOTE = "'"


def _escape(match: re.Match) -> str:
    c = match.group()
    code = ord(c)
    if c == "\n":
        return "\\n"
    if c == "\t":
        return "\\t"
    if c == "\r":
        return "\\r"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: object, *, keep_newlines: bool = False) -> str:
    """``text`` with its control characters shown as escapes (``"\\x1b[2J"`` for ESC [2J).

    Parameters
    ----------
    text : str (anything else is ``str()``-ed first)
    keep_newlines : bool
        Keep ``\\n`` and ``\\t`` as they are (multi-line record text); otherwise they are shown
        as ``\\n`` and ``\\t`` too (one-line fields: paths, names, messages).
    """
    text = text if isinstance(text, str) else str(text)
    return (_CONTROL if keep_newlines else _CONTROL_ALL).sub(_escape, text)


def json_visible(json_text: str) -> str:
    """JSON text with the characters :func:`visible` escapes written as ``\\u001b``-style (they can
    only occur inside JSON strings, so the parsed value is unchanged)."""
    return _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", json_text)


def markdown_escape(text: object) -> str:
    """``text`` as inert Markdown inline text on one line (see the module docstring)."""
    return _ASCII_PUNCT.sub(r"\\\1", visible(text))


def markdown_code(text: object) -> str:
    """``text`` as a Markdown code span on one line, safe in a GFM table cell: nothing inside a
    code span is parsed (no HTML, no links); control characters are shown as escapes, ``|`` is
    written ``\\|`` (GFM reads the cell's pipes before the code span) and the fence is one
    backtick longer than the longest run of backticks in the text."""
    body = visible(text).replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall("`+", body)), default=0) + 1)
    pad = " " if body.startswith(("`", " ")) or body.endswith(("`", " ")) else ""
    return f"{fence}{pad}{body}{pad}{fence}"


def _is_formula(value: object) -> bool:
    return isinstance(value, str) and value[:1] in (*CSV_FORMULA_START, CSV_QUOTE)


def _is_text_column(col: pd.Series) -> bool:
    """Object or string dtype (pandas 3 reads text as ``str``); numeric columns never."""
    import pandas as pd

    return pd.api.types.is_object_dtype(col.dtype) or pd.api.types.is_string_dtype(col.dtype)


def csv_escape_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells are escaped against CSV injection (a leading ``'``
    on cells that begin with a :data:`CSV_FORMULA_START` character or with ``'``); only text
    (object/string) columns are touched."""
    out = frame.copy()
    for name in out.columns:
        col = out[name]
        if _is_text_column(col):
            mask = col.map(_is_formula).astype(bool)
            if mask.any():
                out[name] = col.where(~mask, CSV_QUOTE + col[mask].astype(str))
    return out


def csv_unescape_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Undo :func:`csv_escape_frame` on a frame read back from CSV (in place; returned)."""
    for name in frame.columns:
        col = frame[name]
        if _is_text_column(col):
            mask = col.map(lambda v: isinstance(v, str) and v.startswith(CSV_QUOTE)).astype(bool)
            if mask.any():
                frame[name] = col.where(~mask, col[mask].str[1:])
    return frame


def cut(text: str, limit: int = 300) -> str:
    """``text`` cut to about ``limit`` characters (messages quoting a library's error)."""
    return text if len(text) <= limit else text[:limit] + " ..."


#: how :func:`type_name` names a value's type: TOML's words, and JSON's where they differ
_TOML_TYPES = {dict: "a table", list: "an array", str: "a string", bool: "a boolean",
               int: "an integer", float: "a float"}
_JSON_TYPES = {**_TOML_TYPES, dict: "an object", int: "a number", float: "a number"}


def type_name(value: Any, *, json: bool = False) -> str:
    """A value's type in words, in the words of the document it came from, for messages.

    TOML (configuration): ``a table``, ``an integer``, ``a float``; ``json`` (records, a
    report): ``an object``, ``a number``; both: ``an array``, ``a string``, ``a boolean``,
    ``null``; any other type by its Python name.
    """
    if value is None:
        return "null"
    return (_JSON_TYPES if json else _TOML_TYPES).get(type(value), type(value).__name__)
