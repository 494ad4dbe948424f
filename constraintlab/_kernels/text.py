"""Byte-level text normalisation for ASCII text (the fast path of
:func:`constraintlab.analysis.text.normalize_many`).

One pass over the joined corpus (documents separated by 0x1E): letters to lower case,
apostrophes and backticks dropped, digit-group commas (``1,000``) dropped, every other byte that
is not a letter, a digit or the separator becomes a space; runs of spaces collapse to one and
spaces next to a separator or at either end disappear.
"""

from __future__ import annotations

import re

import numba as nb
import numpy as np

__all__ = ["ASCII_TABLE", "UTF8_TABLE", "normalize_ascii", "normalize_ascii_numpy"]

SEP = 0x1E
#: byte -> lower-case letter / digit / separator, or space for everything else
ASCII_TABLE = np.array(
    [c + 32 if 65 <= c <= 90 else c if (48 <= c <= 57 or 97 <= c <= 122 or c == SEP) else 32
     for c in range(256)], dtype=np.uint8)
#: the same, but bytes >= 0x80 (parts of non-ASCII word characters) are kept
UTF8_TABLE = ASCII_TABLE.copy()
UTF8_TABLE[128:] = np.arange(128, 256, dtype=np.uint8)


@nb.njit(cache=True, nogil=True, inline="always")
def _is_digit(b) -> bool:
    return 48 <= b <= 57


@nb.njit(cache=True, nogil=True)
def normalize_ascii(buf, table):
    """Normalise a joined ASCII corpus.

    Parameters
    ----------
    buf : (n,) uint8
        Documents separated by 0x1E.
    table : (256,) uint8
        :data:`ASCII_TABLE`.

    Returns
    -------
    (m,) uint8
        The normalised corpus, documents still separated by 0x1E.
    """
    n = buf.shape[0]
    out = np.empty(n, np.uint8)
    o = 0
    pending = False
    at_start = True
    for p in range(n):
        b = buf[p]
        if b == 39 or b == 96:  # ' `
            continue
        if b == 44 and p > 0 and _is_digit(buf[p - 1]) and p + 3 < n and \
                _is_digit(buf[p + 1]) and _is_digit(buf[p + 2]) and _is_digit(buf[p + 3]) and \
                (p + 4 >= n or not _is_digit(buf[p + 4])):
            continue
        c = table[b]
        if c == 32:
            if not at_start:
                pending = True
            continue
        if c == SEP:
            out[o] = c
            o += 1
            pending = False
            at_start = True
            continue
        if pending:
            out[o] = 32
            o += 1
            pending = False
        out[o] = c
        o += 1
        at_start = False
    return out[:o]


_DIGIT_COMMA = re.compile(rb"(?<=[0-9]),(?=[0-9]{3}(?![0-9]))")


def normalize_ascii_numpy(buf, table=ASCII_TABLE):
    """Twin of :func:`normalize_ascii` with bytes methods and a regex."""
    data = bytes(np.asarray(buf, dtype=np.uint8))
    data = _DIGIT_COMMA.sub(b"", data)
    data = data.translate(bytes(table), b"'`")
    parts = [b" ".join(doc.split()) for doc in data.split(bytes([SEP]))]
    return np.frombuffer(bytes([SEP]).join(parts), dtype=np.uint8)
