"""The text side of an analysis: normalisation, the shared :class:`TextView`, link groups.

``normalize`` removes what is cosmetic: Unicode form (NFKC), case (casefold), punctuation
(replaced by a space; apostrophes and digit-group commas are dropped so ``don't`` -> ``dont``,
``1,000`` -> ``1000``) and whitespace (collapsed to single spaces). Two texts equal after it
differ only cosmetically.

:class:`TextView` holds what the lexical analyzers (redundancy, contradictions, families) share:
each example's record / input / target text, normalised once, shingle sets computed once, and one
MinHash LSH pass per text kind at the lowest threshold any analyzer asks for (the higher ones are
filtered from it: every candidate is verified by exact Jaccard, so the filter is exact).
:func:`components` turns links into groups (duplicate sets, variant families).
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import re
import unicodedata
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from functools import cached_property

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from constraintlab._kernels.text import ASCII_TABLE, UTF8_TABLE, normalize_ascii
from constraintlab.analysis.config import AnalysisConfig
from constraintlab.analysis.lexical import bands_cover, corpus_bytes, near_duplicate_pairs

logger = logging.getLogger(__name__)

__all__ = [
    "TEXT_KINDS",
    "TextView",
    "components",
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


# --- groups of linked items --------------------------------------------------------------------

def components(n: int, a, b) -> list[list[int]]:
    """Groups of linked items: the connected components of the links ``a[i] -- b[i]``.

    Parameters
    ----------
    n : int
        Number of items (positions ``0..n-1``).
    a, b : (m,) int
        The links (any order, repeats allowed).

    Returns
    -------
    list of list of int
        One list per component that has a link (items without a link are left out), its
        members ascending; the groups sorted by their first member.
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    if not len(a) or n == 0:
        return []
    g = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    _, labels = connected_components(g, directed=False)
    linked = np.zeros(n, bool)
    linked[a] = True
    linked[b] = True
    nodes = np.flatnonzero(linked)
    lab = labels[nodes]
    order = np.argsort(lab, kind="stable")  # members stay ascending inside each component
    nodes, lab = nodes[order], lab[order]
    cuts = np.flatnonzero(np.diff(lab)) + 1
    groups = [g.tolist() for g in np.split(nodes, cuts)]
    groups.sort(key=lambda m: m[0])
    return groups


# --- the shared text view ---------------------------------------------------------------------

#: The texts of an example a :class:`TextView` holds: the whole record (``Example.text``), the
#: input (``Example.input_text``) and the target (``Example.target_text``).
TEXT_KINDS: tuple[str, ...] = ("record", "input", "target")


class TextView:
    """An analysis' text, prepared once and shared by the lexical analyzers.

    Everything is computed on first use and kept: the normalised texts (one
    :func:`normalize_many` pass per kind), shingle sets, and one MinHash LSH pass per kind.

    Parameters
    ----------
    examples : sequence of N Example
    config : AnalysisConfig, optional
        ``shingle_size`` (record shingles), ``input_shingle_size`` (input shingles),
        ``num_perm``, ``seed``, the LSH bands; the thresholds the analyzers ask for set the LSH
        pass of each kind (records: ``minhash_threshold`` and ``family_jaccard``; inputs and
        targets: none by default).
    thresholds : mapping of kind -> sequence of float, optional
        Override those thresholds (e.g. ``{"record": (0.8,)}``).

    Attributes
    ----------
    n : int
    record, input, target : list of N str
        The texts as written.
    norm_record, norm_input, norm_target : list of N str
        The same, normalised (:func:`normalize`).
    """

    def __init__(self, examples: Sequence, config: AnalysisConfig | None = None, *,
                 thresholds: Mapping[str, Sequence[float]] | None = None) -> None:
        self.examples = tuple(examples)
        self.config = config if config is not None else AnalysisConfig()
        self.n = len(self.examples)
        cfg = self.config
        self.thresholds: dict[str, set[float]] = {
            "record": {cfg.minhash_threshold, cfg.family_jaccard},
            "input": set(),
            "target": set(),
        }
        for kind, ts in (thresholds or {}).items():
            self._kind(kind)
            self.thresholds[kind] = set(ts)
        self._passes: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, dict]] = {}
        self._shingles: dict[tuple[str, int], dict[int, set]] = {}

    @staticmethod
    def _kind(on: str) -> str:
        if on not in TEXT_KINDS:
            raise ValueError(f"unknown text kind {on!r}; one of {TEXT_KINDS}")
        return on

    # texts as written
    @cached_property
    def record(self) -> list[str]:
        return [ex.text for ex in self.examples]

    @cached_property
    def input(self) -> list[str]:
        return [ex.input_text for ex in self.examples]

    @cached_property
    def target(self) -> list[str]:
        return [ex.target_text for ex in self.examples]

    # normalised: one pass each
    @cached_property
    def norm_record(self) -> list[str]:
        return normalize_many(self.record)

    @cached_property
    def norm_input(self) -> list[str]:
        return normalize_many(self.input)

    @cached_property
    def norm_target(self) -> list[str]:
        return normalize_many(self.target)

    def texts(self, on: str = "record", normalized: bool = True) -> list[str]:
        """The N texts of kind ``on`` (normalised or as written)."""
        self._kind(on)
        return getattr(self, f"norm_{on}" if normalized else on)

    def shingle_size(self, on: str) -> int:
        """Words per shingle for kind ``on`` (``input_shingle_size`` for inputs, else
        ``shingle_size``)."""
        return self.config.input_shingle_size if on == "input" else self.config.shingle_size

    def shingles(self, i: int, on: str = "record", size: int | None = None
                 ) -> set[tuple[str, ...]]:
        """Word ``size``-shingle set of text ``i`` of kind ``on`` (normalised), cached.

        ``size`` defaults to :meth:`shingle_size` of the kind.
        """
        size = self.shingle_size(on) if size is None else size
        cache = self._shingles.setdefault((on, size), {})
        sh = cache.get(i)
        if sh is None:
            sh = cache[i] = word_shingles(self.texts(on)[i], size)
        return sh

    def _pass(self, on: str, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        """The kind's LSH pass, run once at the lowest of its thresholds (again, lower, only
        when asked for a threshold below it or one its bands do not serve)."""
        ts = self.thresholds[on]
        done = self._passes.get(on)
        if done is not None:
            served = done[3]
            floor = served["threshold"]
            if threshold in ts and threshold >= floor:
                return done
            if threshold >= floor and bands_cover((served["bands"], served["rows"]),
                                                  self.config.bands_rows(threshold)):
                return done
            logger.debug("text view: %s LSH pass again for threshold %s", on, threshold)
        ts.add(threshold)
        floor = min(ts)
        self._passes[on] = near_duplicate_pairs(
            self.texts(on), self.config, threshold=floor, size=self.shingle_size(on),
            also=sorted(t for t in ts if t > floor))
        return self._passes[on]

    def pairs(self, threshold: float, on: str = "record"
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        """Pairs of texts of kind ``on`` whose normalised shingle sets have exact Jaccard
        ``>= threshold`` (:func:`constraintlab.analysis.lexical.near_duplicate_pairs`, filtered
        from the kind's one LSH pass).

        Returns
        -------
        a, b : (m,) int64
            Positions, ``a < b``, sorted; identical normalised texts included (Jaccard 1).
        jac : (m,) float64
        stats : dict
            The pass's statistics (``n_distinct``, ``n_candidates``, ``bands``, ``rows``,
            ``num_perm``, ``shingle_size``, ``lsh_threshold``: the threshold the pass ran at)
            with ``threshold`` the one asked for.
        """
        self._kind(on)
        a, b, jac, stats = self._pass(on, float(threshold))
        keep = jac >= threshold
        out = {**stats, "lsh_threshold": stats["threshold"], "threshold": float(threshold)}
        return a[keep], b[keep], jac[keep], out
