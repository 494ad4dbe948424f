r"""The rules of a suspect target: facts read from its text that need no model.

Rules (facts that need no model; each sets the example suspect on its own)

``false_arithmetic``
    An explicit calculation in the target whose two sides differ: GSM8K-style annotations
    ``<<a*b=c>>`` or, in targets without them, plain ``a op b = c`` with numbers and
    ``+ - * / ×`` only (percentages, variables and implied products are skipped). Sides agree
    when equal to the decimals shown.
``unsupported_final_answer``
    A stated final answer (``#### x``, ``\boxed{x}``, ``the answer is x``) that is a number
    appearing nowhere else in a worked target (one with at least two other numbers).
Each rule hit names what it judged: ``suspect_detail`` (examples.csv) and the listed
suspect's ``calculations`` give every calculation found false with the value it computes to.

:func:`result_positions` reads the same calculations for the capability statement (which
target tokens state a computed result, :mod:`constraintlab.analysis.suspects.reach`).
"""

from __future__ import annotations

import ast
import math
import operator
import re
from decimal import Decimal

import numpy as np

from constraintlab.analysis.text import final_answer, numbers

__all__ = ["false_arithmetic", "false_calculations", "result_positions",
           "unsupported_final_answer"]

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
        ast.Div: operator.truediv}
_ANNOTATION = re.compile(r"<<([^<>=]+)=([^<>=]+)>>")
_TERM = r"\(?\$?\d[\d,]*(?:\.\d+)?%?\)?"
# a op b [op c ...] = d: not glued to a word, a variable or another operator before it, not the
# fraction of a mixed number (``1 1/2``); the result not followed by more digits, a fraction
# (``3 1/2``), a letter glued to it (an unknown: ``1.2Y``), an operator (a chain
# ``a = b * c``: the middle is not a result) or a digit group
_PLAIN = re.compile(r"(?<![\w.)*/+×^%-])(?<![*/+×^%x-] )(?<!\d )(" + _TERM + r"(?:\s*[-+*/×]\s*"
                    + _TERM + r")+)\s*=\s*\$?(\d[\d,]*(?:\.\d+)?%?)"
                    r"(?![\d/*(]|\.\d|[ ,]\d{3}\b| \d+/\d|[A-Za-z]|\s*[-+*/×^])")


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
            and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Div) and right == 0:
            raise ValueError("division by zero")
        return _OPS[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _evaluate(node.operand)
        return -v if isinstance(node.op, ast.USub) else v
    raise ValueError("not plain arithmetic")


def _close(got: float, v: str) -> bool:
    """``got`` equals the number ``v`` to the decimals ``v`` shows."""
    decimals = len(v.split(".")[1]) if "." in v else 0
    want = float(v)
    return abs(got - want) <= max(0.5 * 10.0 ** -decimals, 1e-6 * max(1.0, abs(got)))


def _value(expr: str) -> float | None:
    """The value of a plain arithmetic expression (numbers, ``+ - * /``, parentheses); None
    when it is not one."""
    if len(expr) > 200 or "**" in expr or not re.fullmatch(r"[\d.+\-*/() ]+", expr):
        return None
    try:
        got = _evaluate(ast.parse(expr, mode="eval").body)
    except (ValueError, SyntaxError, OverflowError, RecursionError):
        return None
    return got if math.isfinite(got) else None


def _holds(expr: str, value: str) -> bool | None:
    """Whether ``expr = value`` holds to the decimals shown; None when not checkable.

    Currency signs and digit-group commas are dropped; dollars on the left and a bare result
    may be cents (``$2.50 - $2.24 = 26 cents``, GSM8K train row 2429). A percent sign is read
    both ways, as a hundredth (``50 * 20% = 10``, ``50% * 50% = 25%``) and as a plain number
    (``0.2 * 100 = 20%``): the calculation holds when any reading does (solutions write
    percentages every way)."""
    dollars = "$" in expr and "$" not in value     # the result may be in cents
    e = expr.replace(",", "").replace("$", "").replace("×", "*").strip()
    v = value.replace(",", "").replace("$", "").strip()
    pct = "%" in e or v.endswith("%")
    v_plain = v.rstrip("%")
    if not re.fullmatch(r"-?\d+(?:\.\d+)?", v_plain):
        return None
    readings = [(e.replace("%", ""), v_plain)]
    if pct:
        readings.append((re.sub(r"(\d(?:[\d.]*\d)?)%", r"(\1/100)", e), v_plain))
    results = []
    for ex, val in readings:
        got = _value(ex)
        if got is None:
            continue
        results.append(_close(got, val) or ((v.endswith("%") or dollars)
                                            and _close(100.0 * got, val)))
    if not results:
        return None
    return any(results)


_MIXED = re.compile(r"(?<![\d./,])(\d+) (\d+)/(\d+)(?![\d/.,]|\s*[*/×])")


def _mixed_as_decimals(text: str) -> str:
    """Mixed numbers with a terminating decimal (``1 1/2`` -> ``1.5``, ``2 3/4`` -> ``2.75``)
    written as decimals, for the plain calculations; others (``1 1/3``) are left as they are
    (the calculation is then not read)."""
    def one(m: re.Match) -> str:
        whole, num, den = int(m.group(1)), int(m.group(2)), int(m.group(3))
        if den == 0 or num >= den:
            return m.group(0)
        d = den
        for f in (2, 5):
            while d % f == 0:
                d //= f
        if d != 1:
            return m.group(0)
        return format(Decimal(whole) + Decimal(num) / Decimal(den), "f")
    return _MIXED.sub(one, text)


def _calculations(text: str) -> list[tuple[str, str]]:
    """The explicit calculations of ``text`` as (expression, value): ``<<expr=value>>``
    annotations when it has any, else plain ``a op b = c`` (mixed numbers read as decimals)."""
    found = list(_ANNOTATION.finditer(text))
    if found:
        return [(m.group(1), m.group(2)) for m in found]
    return [(m.group(1), m.group(2)) for m in _PLAIN.finditer(_mixed_as_decimals(text))]


def false_calculations(text: str) -> list[dict]:
    """The explicit calculations of ``text`` that are false, as written: ``{"calculation":
    "a op b = c", "computed": value}`` each (``<<expr=value>>`` annotations when the text has
    any, else plain ``a op b = c``; see :func:`false_arithmetic`)."""
    pairs = _calculations(text)
    out = []
    for expr, value in pairs:
        if _holds(expr, value) is False:
            e = expr.replace(",", "").replace("$", "").replace("×", "*").replace("%", "")
            got = _value(e)
            out.append({"calculation": f"{expr.strip()} = {value.strip()}",
                        "computed": None if got is None else float(round(got, 6))})
    return out


def false_arithmetic(text: str) -> tuple[int, int]:
    """Explicit calculations in ``text`` that are false, and how many were checked.

    ``<<expr=value>>`` annotations when the text has any, else plain ``a op b = c`` (numbers,
    currency, percentages, mixed numbers with a terminating decimal (``2 + 1 1/2 = 3 1/2``) and
    ``+ - * / ×``). What it cannot read it leaves alone: other mixed numbers (``1 1/3``), an
    unknown (``192 / 1.2 = 1.2Y / 1.2``), a chain whose middle is no result (``2 * 3 = 3 * 2 =
    6``), words between the numbers.

    Returns
    -------
    n_false, n_checked : int
    """
    n_false = n_checked = 0
    for expr, value in _calculations(text):
        ok = _holds(expr, value)
        if ok is None:
            continue
        n_checked += 1
        n_false += not ok
    return n_false, n_checked


_SPACE_GROUPS = re.compile(r"(?<![\d.,])\d{1,3}(?: \d{3})+(?![\d,]|\.\d)")


def unsupported_final_answer(text: str) -> bool:
    """True when the stated final answer is a number that the worked target never derives:
    it appears once among the target's numbers, and the target has >= 2 other numbers.

    Derived also counts: the number written with spaces between digit groups (``$400 000``),
    as a word (``three days``; zero to twenty and the tens), or 100 times / a hundredth of a
    number of the text (a change of unit: $0.25 -> 25 cents, 0.4 -> 40 %). On the 1,319
    clean GSM8K test rows the rule fired on 4 rows without these (3 of them unit changes, one
    a number word), on none with them.
    """
    ans = final_answer(text)
    if ans is None or not re.fullmatch(r"-?\d+(?:\.\d+)?", ans):
        return False
    nums = numbers(text)
    if nums.count(ans) != 1 or len(nums) < 3:
        return False
    grouped = [numbers(m.group(0).replace(" ", "")) for m in _SPACE_GROUPS.finditer(text)]
    if ans in [g[0] for g in grouped if g]:
        return False
    words = {_NUMBER_WORDS[w] for w in re.findall(r"[a-z]+", text.lower()) if w in
             _NUMBER_WORDS}
    value = float(ans)
    if value in words:
        return False
    others = [float(x) for i, x in enumerate(nums) if not (x == ans and i == nums.index(ans))]
    return not any(math.isclose(value, 100.0 * x, rel_tol=1e-9, abs_tol=1e-9)
                   or math.isclose(value, x / 100.0, rel_tol=1e-9, abs_tol=1e-12)
                   for x in others)


_NUMBER_WORDS = {w: float(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty".split())}
_NUMBER_WORDS.update({"thirty": 30.0, "forty": 40.0, "fifty": 50.0, "sixty": 60.0,
                      "seventy": 70.0, "eighty": 80.0, "ninety": 90.0, "hundred": 100.0})



def result_positions(pieces: list[str]) -> list[int]:
    """Positions of the target tokens that state a *computed* result: the digits right of the
    ``=`` of an explicit calculation (``<<a*b=c>>`` annotations, else plain ``a op b = c``;
    the copy after ``>>`` is not one: it repeats the result).

    Parameters
    ----------
    pieces : list of str
        The text piece of each target token.

    Returns
    -------
    list of int
        Token positions (sorted) whose piece holds a digit of a computed result.
    """
    text = "".join(pieces)
    spans = [m.span(2) for m in _ANNOTATION.finditer(text)]
    if not spans:
        spans = [m.span(2) for m in _PLAIN.finditer(text)]
    if not spans:
        return []
    ends = np.cumsum([len(p) for p in pieces])
    starts = ends - np.array([len(p) for p in pieces])
    out = set()
    for a, b in spans:
        for t in np.flatnonzero((starts < b) & (ends > a)).tolist():
            if any(c.isdigit() for c in pieces[t]):
                out.add(t)
    return sorted(out)

