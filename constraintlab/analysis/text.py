"""Text normalisation shared by the lexical analyzers.

``normalize`` removes what is cosmetic: Unicode form (NFKC), case (casefold), punctuation
(replaced by a space; apostrophes and digit-group commas are dropped so ``don't`` -> ``dont``,
``1,000`` -> ``1000``) and whitespace (collapsed to single spaces). Two texts equal after it
differ only cosmetically.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import unicodedata
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

import numpy as np

from constraintlab._kernels.text import ASCII_TABLE, UTF8_TABLE, normalize_ascii

__all__ = [
    "corpus_bytes",
    "final_answer",
    "jaccard",
    "normalize",
    "normalize_many",
    "numbers",
    "short_diff",
    "text_hash",
    "tokens",
    "word_shingles",
]

_SEP = "\x1e"  # record separator: not punctuation, not whitespace for our regexes
_DIGIT_COMMA = re.compile(r"(?<=[0-9]),(?=[0-9]{3}(?![0-9]))")
_APOS = re.compile(r"['\u2019\u2018`]")
_PUNCT = re.compile(r"[^\w\s\x1e]|_")
_WS = re.compile(r"[^\S\x1e]+")
_SPACE_SEP = re.compile(r" ?\x1e ?")
_NUM = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w])|(?<![\w.])-?\.\d+(?![\w])")
_ANSWER_PATTERNS = (
    re.compile(r"####\s*([^\n]+)"),
    re.compile(r"\\boxed\{([^{}]*)\}"),
    re.compile(r"(?:final answer|the answer is|answer\s*:)\s*[:\-]?\s*([^\n]+)", re.IGNORECASE),
)


def normalize(text: str) -> str:
    """NFKC, casefold, drop apostrophes and digit-group commas, punctuation -> space, collapse
    whitespace, strip."""
    return normalize_many([text])[0]


def _normalize_regex(texts: Sequence[str]) -> list[str]:
    """Reference path: NFKC + casefold + one pass of each regex over the joined texts."""
    if not texts:
        return []
    joined = _SEP.join(t.replace(_SEP, " ") for t in texts)
    s = unicodedata.normalize("NFKC", joined).casefold()
    s = _DIGIT_COMMA.sub("", s)
    s = _APOS.sub("", s)
    s = _PUNCT.sub(" ", s)
    s = _WS.sub(" ", s)
    s = _SPACE_SEP.sub(_SEP, s).strip(" ")
    return s.split(_SEP)


def _normalize_ascii(texts: Sequence[str]) -> list[str]:
    data = _SEP.join(t.replace(_SEP, " ") for t in texts).encode("ascii")
    out = normalize_ascii(np.frombuffer(data, dtype=np.uint8), ASCII_TABLE)
    return out.tobytes().decode("ascii").split(_SEP)


def _normalize_unicode(texts: Sequence[str]) -> list[str]:
    """NFKC + casefold in C, then every non-ASCII character that is not a word character
    (``str.isalnum``) becomes a space (typographic apostrophes become ``'``), then the byte
    kernel with non-ASCII bytes kept."""
    s = unicodedata.normalize("NFKC", _SEP.join(t.replace(_SEP, " ") for t in texts)).casefold()
    other = [c for c in set(s) if ord(c) >= 128 and not c.isalnum()]
    apos = [c for c in other if c in "\u2019\u2018"]
    space = [c for c in other if c not in "\u2019\u2018"]
    for c in apos:
        s = s.replace(c, "'")
    if space:
        s = re.sub("[" + "".join(re.escape(c) for c in space) + "]", " ", s)
    out = normalize_ascii(np.frombuffer(s.encode("utf-8"), dtype=np.uint8), UTF8_TABLE)
    return out.tobytes().decode("utf-8").split(_SEP)


def normalize_many(texts: Sequence[str]) -> list[str]:
    """:func:`normalize` for many texts at once.

    One byte-level pass (:mod:`constraintlab._kernels.text`) over the joined texts; texts with
    non-ASCII characters first go through NFKC, casefold and a character table. The result
    equals the regex reference ``_normalize_regex`` (tested, also on random Unicode text).
    """
    texts = list(texts)
    if not texts:
        return []
    is_ascii = [t.isascii() for t in texts]
    if all(is_ascii):
        return _normalize_ascii(texts)
    out: list[str] = [""] * len(texts)
    asc = [i for i, a in enumerate(is_ascii) if a]
    uni = [i for i, a in enumerate(is_ascii) if not a]
    for idx, res in ((asc, _normalize_ascii([texts[i] for i in asc]) if asc else []),
                     (uni, _normalize_unicode([texts[i] for i in uni]))):
        for i, r in zip(idx, res, strict=True):
            out[i] = r
    return out


def corpus_bytes(normalized: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encode normalised texts as one UTF-8 buffer.

    Returns
    -------
    buf : (B,) uint8
    starts, ends : (n,) int64
        Byte range of each text.
    """
    data = _SEP.join(normalized).encode("utf-8")
    buf = np.frombuffer(data, dtype=np.uint8)
    seps = np.flatnonzero(buf == 0x1E)
    starts = np.concatenate([[0], seps + 1]).astype(np.int64)
    ends = np.concatenate([seps, [len(buf)]]).astype(np.int64)
    return buf, starts, ends


def text_hash(text: str) -> str:
    """Stable 128-bit hex digest of a string."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def word_shingles(text: str, size: int) -> set[tuple[str, ...]]:
    """Set of the word ``size``-grams of ``text`` (one shorter shingle for a shorter text)."""
    w = text.split()
    return {tuple(w[i:i + size]) for i in range(max(len(w) - size + 1, 1))}


def jaccard(a: set, b: set) -> float:
    """``|a & b| / |a | b|`` (1 for two empty sets)."""
    u = len(a | b)
    return 1.0 if u == 0 else len(a & b) / u


def tokens(normalized: str) -> list[str]:
    """Words of a normalised text."""
    return normalized.split()


def _canon_number(s: str) -> str:
    try:
        d = Decimal(s)
    except InvalidOperation:
        return s
    if d == d.to_integral_value():
        return str(int(d))
    return format(d.normalize(), "f")


def numbers(text: str) -> list[str]:
    """Numbers in ``text`` (after NFKC, digit-group commas removed), canonical, in order."""
    s = _DIGIT_COMMA.sub("", unicodedata.normalize("NFKC", text))
    return [_canon_number(m.group(0)) for m in _NUM.finditer(s)]


def final_answer(text: str) -> str | None:
    """The stated final answer (``#### x``, ``\\boxed{x}``, ``the answer is x``), normalised
    (a number is made canonical); None when the text states none."""
    s = unicodedata.normalize("NFKC", text)
    for pat in _ANSWER_PATTERNS:
        found = pat.findall(s)
        if found:
            ans = found[-1].strip()
            nums = numbers(ans)
            if len(nums) == 1 and re.fullmatch(r"[\s$€£%.\-\d,]*", ans):
                return nums[0]
            return normalize(ans) or None
    return None


def short_diff(a: str, b: str, width: int = 240) -> str:
    """A short word-level diff of ``a`` -> ``b``: ``[-removed-]`` / ``{+added+}`` with a few
    words of context, at most about ``width`` characters."""
    wa, wb = a.split(), b.split()
    sm = difflib.SequenceMatcher(a=wa, b=wb, autojunk=False)
    parts: list[str] = []
    for op, i1, i2, j1, j2 in sm.get_opcodes():
        if op == "equal":
            seg = wa[i1:i2]
            if len(seg) > 6:
                first = parts == []
                last = i2 == len(wa) and j2 == len(wb)
                if first:
                    seg = ["...", *seg[-3:]]
                elif last:
                    seg = [*seg[:3], "..."]
                else:
                    seg = [*seg[:3], "...", *seg[-3:]]
            parts.append(" ".join(seg))
        else:
            if i2 > i1:
                parts.append("[-" + " ".join(wa[i1:i2]) + "-]")
            if j2 > j1:
                parts.append("{+" + " ".join(wb[j1:j2]) + "+}")
    out = " ".join(p for p in parts if p)
    if len(out) > width:
        out = out[: width - 3] + "..."
    return out
