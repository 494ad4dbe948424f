r"""Suspect examples: which targets are probably wrong, with reasons, and what the model can judge.

Signals (measured by ``benchmarks/bench_suspects.py`` on planted corruptions; only those that
carried information on two seeds and both corruption rates are in the score)

``input_dependence``
    Nats of the target that its input explains, summed over the target tokens scored both ways:
    :math:`d_i = \sum_t (l^{noinput}_{i,t} - l_{i,t})` (the pointwise mutual information of the
    two sides, in total; Cherry-LLM's IFD is the ratio of the means). A target the input does not
    help predict (taken from another example, an off-topic reply) has :math:`d_i \approx 0`.
    The total, not the mean per token: a long target whose input explains nothing is stronger
    evidence than a short one (on the planted sets the total ranked swapped targets better than
    the mean, IFD or the sum over the tokens the input shares with the target). Examples
    without an input (plain text, ``nll_noinput == nll`` on every token) have no value.
``ending_surprise``
    The largest NLL among the tokens of the target's last line (the tokens after the last line
    break before the closing token, at most ``suspect_ending_tokens``) and the closing token
    (end of sequence / end of turn). A model that follows the data predicts how a target ends:
    the stated final answer of a worked solution (copied from the solution), the end of
    sequence after a complete reply. A changed final answer, a cut-off target, a reply in
    another language or format all end unpredictably. Not available for an example the
    encoder cut at ``max_length`` (its own ending was not scored; the ``truncated`` note
    says so instead). Taken as ``log(x + floor)``
    (``suspect_ending_floor`` nats: differences among well-predicted endings are noise).

``target_surprise``
    The mean NLL of the target (nats/token, the example's ``loss``), taken as its log. A reply
    in another language or an off-topic reply reads unlike the data from its first line; the
    ending alone missed some of them when 30 % of the rows were planted wrong.

Each signal is standardised against the data's own bulk, robustly and one-sided (low input
dependence, high surprise): centre = median, scale = 1.4826 x the median distance to it of
the values on the bulk's side (:func:`robust_z`; the corruptions sit on the other side, so the
scale grows far less with them than the two-sided MAD: with 30 % planted, the two-sided MAD
shrank the z of every planted row until some replies in another language ranked below clean
rows). One-sided p-values :math:`p_{i,c} = \Phi(-z_{i,c})`. Two questions are combined:
does the input explain the target (``input_dependence``), and does the target read like the
data: the stronger of ``ending_surprise`` and ``target_surprise``, Sidak-corrected,
:math:`p_{surprise} = 1 - (1 - \min(p_{end}, p_{target}))^2` (the ending catches a changed
final answer that the mean hides; the whole catches a reply that is foreign from the start).
Fisher's method over the ``m_i`` of the two available for the example:
:math:`X_i = -2 \sum_c \ln p_{i,c}` follows :math:`\chi^2_{2 m_i}` for an example whose
signals follow the bulk independently, so :math:`p_i = P(\chi^2_{2m_i} \ge X_i)` is its
model p-value. Fisher, not the maximum: a reply in another language or an off-topic reply
shows in both at once, a swapped target in one; on the planted GSM8K sets of
``bench_suspects`` Fisher ranked the two-signal kinds above the maximum (which ranked some
clean rows with a rule hit above them) and the swapped targets as well as it. Adding the
whole-target surprise as a third Fisher term instead diluted the swapped targets' evidence
(their AUROC fell from 0.93 to 0.88-0.91 on the three seeds); inside the Sidak pair it did not
(0.93).

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

Notes (listed among the reasons, no evidence of a wrong target, never flagged on their own)

``contradiction``
    The example is in a contradiction pair (same input, another target): one of the two is
    wrong, and the pair does not say which. The pair is listed to resolve
    (``contradiction_pairs``); a side is a suspect only by its own evidence (issue 22: on the
    shipped sample, 6 of 18 suspects carried the correct answer and were flagged only because
    a planted twin contradicted them).

``truncated``
    The encoder cut the example at ``max_length`` (its loss covers part of the target only;
    its ending was not scored). Once a rule, it flagged only clean rows on the planted sets
    (long GSM8K problems cut at 512 tokens, 0-2 per 1,000 rows) and ranked them above planted
    replies in another language: a setting cuts the example, the target is not wrong.
    ``n_truncated`` in examples.csv counts the tokens dropped.

Calibration (what the threshold means)
    .. math::

        suspect\_score_i = 1 - p_i\,(p_{rule} \text{ if a rule fired else } 1)

    :math:`p_i` is the probability that an example whose ``m`` signals follow the bulk's
    robust normal fit (independently) shows combined evidence at least :math:`X_i`.
    ``is_suspect`` when ``suspect_score >= 1 - suspect_alpha``: a clean example is
    flagged with probability about ``suspect_alpha`` (1 %) under that fit. A rule hit multiplies
    the p-value by ``suspect_rule_p`` (0.001, of the order of how often a clean example trips
    a rule: none of the 1,319 clean GSM8K test rows trips the two text rules), so
    every rule hit is flagged and weighs as much as model evidence alone of p = 0.001. The
    benchmark reports the false-positive rate actually measured on clean rows (heavier tails
    than normal and clean rows that trip a rule raise it). ``suspect_evidence`` is the same
    p-value on a log scale, :math:`-\log_{10}(1 - suspect\_score)`, computed without
    rounding: it orders examples whose scores round to 1 (it is the ranking key; a rule hit
    adds 3, a strong signal can add more).

Model capability (``summary["capability"]``, :func:`capability`)
    The model-based signals are only as good as the model's grip on the data. Stated, each
    against a yardstick of the data itself: the mean target NLL against the entropy of the
    data's own target-token unigram distribution (``nll_ratio``); how much of the target the
    input explains (``relative_input_gain`` = nats explained / nats without the input, over
    the tokens ``input_dependence`` sums) with the distribution of the per-example input
    dependence (median; share of examples below ``capability_near_zero`` nats/token); and,
    where the targets write out calculations, how well the model predicts the digits of the
    computed results (``arithmetic``). Below ``capability_min_gain`` the model barely
    conditions on the input: swapped and off-topic targets are out of its reach; above
    ``capability_max_nll_ratio`` it hardly predicts the targets: surprise-based checks are
    out of reach; above ``capability_max_result_nll`` nats/digit it does not compute, so a
    changed result that no written calculation contradicts is out of reach (a stated bound,
    not a calibration: no model that computes runs offline here; the reference model's
    signals find changed intermediate results at chance, AUROC 0.49-0.57, consistent with
    its 1.6 nats/digit). The other thresholds sit between the reference model on GSM8K test
    rows (its domain) and on Alpaca rows (out of it), measured by
    ``benchmarks/bench_suspects.py`` (numbers in the
    :class:`~constraintlab.analysis.config.AnalysisConfig` docstring). A signal out of reach
    is left out of the score and the flags (``suspect_gate``): out of its domain the
    reference model ranks off-topic replies as *less* surprising than the data and flags
    clean rows far above ``suspect_alpha``, so its verdicts there would mislead; the columns
    are still filled and the summary says which signals were left out.

Settings: the ``suspect_*`` and ``capability_*`` fields of
:class:`~constraintlab.analysis.config.AnalysisConfig` (defaults documented there).
"""

from __future__ import annotations

import ast
import logging
import math
import operator
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import log_ndtr, ndtri

from constraintlab.analysis.config import AnalysisConfig
from constraintlab.analysis.registry import Analyzer, Metric
from constraintlab.analysis.result import AnalyzerResult
from constraintlab.analysis.text import final_answer, numbers

logger = logging.getLogger(__name__)

__all__ = [
    "NOTES", "REASONS", "REASON_TEXT", "RULES", "SIGNALS", "SIGNAL_REASONS", "SuspectsResult",
    "analyze_suspects", "capability", "ending_surprise", "false_arithmetic",
    "false_calculations", "input_dependence",
    "result_positions", "robust_z", "scored_tokens", "target_surprise",
    "unsupported_final_answer",
]

SIGNALS: tuple[str, ...] = ("input_dependence", "ending_surprise", "target_surprise")
#: the reason code of each signal, in :data:`SIGNALS` order
SIGNAL_REASONS: tuple[str, ...] = ("input_unexplained", "surprising_ending",
                                   "surprising_target")
RULES: tuple[str, ...] = ("false_arithmetic", "unsupported_final_answer")
#: facts listed among the reasons that are no evidence of a wrong target (module docstring)
NOTES: tuple[str, ...] = ("truncated", "contradiction")
#: reason codes in ``suspect_reasons`` (signal reasons first, then rules, then notes)
REASONS: tuple[str, ...] = (*SIGNAL_REASONS, *RULES, *NOTES)
#: what each reason code says, for a reader of the report
REASON_TEXT: dict[str, str] = {
    "input_unexplained": "the input barely helps the model predict the target (it may answer "
                         "another input)",
    "surprising_ending": "the target ends unlike the data (a changed final answer, a cut-off "
                         "or foreign ending)",
    "surprising_target": "the whole target reads unlike the data (another language, format or "
                         "task)",
    "false_arithmetic": "a calculation written in the target is false",
    "unsupported_final_answer": "the stated final answer appears nowhere in the worked target",
    "contradiction": "note: another example has the same input and another target; one of the "
                     "two is wrong, the pair does not say which (resolve the pair); not "
                     "evidence against this side on its own",
    "truncated": "note: cut at max_length (its ending was not scored); not evidence on its own",
}


def _settings(config: Any) -> AnalysisConfig:
    """The settings to use: ``config`` (an :class:`AnalysisConfig`, whose ``suspect_*`` and
    ``capability_*`` fields are read) or the defaults."""
    return config if config is not None else AnalysisConfig()


@dataclass
class SuspectsResult(AnalyzerResult):
    r"""What :func:`analyze_suspects` found.

    Attributes
    ----------
    score : (N,) float64
        ``suspect_score`` in [0, 1].
    is_suspect : (N,) bool
    evidence : (N,) float64
        ``suspect_evidence``: :math:`-\log_{10}` of the combined p-value (``1 -
        suspect_score`` without rounding; module docstring): the ranking key.
    z : (N, 3) float64
        Robust z of each signal in :data:`SIGNALS` order (NaN where not available).
    reasons : list of N tuple of str
        Reason codes (:data:`REASONS`).
    """

    score: np.ndarray | None = field(default=None, repr=False)
    is_suspect: np.ndarray | None = field(default=None, repr=False)
    evidence: np.ndarray | None = field(default=None, repr=False)
    z: np.ndarray | None = field(default=None, repr=False)
    reasons: list | None = field(default=None, repr=False)


# ------------------------------------------------------------------------------- signals
def scored_tokens(offsets: np.ndarray, gain: np.ndarray, skip_first: bool = True
                  ) -> np.ndarray:
    """(T,) bool: the target tokens that :func:`input_dependence` sums (scored both ways; each
    target's first token left out with ``skip_first`` unless it is the only one)."""
    ok = np.isfinite(gain)
    if skip_first:
        firsts = offsets[:-1][np.diff(offsets) > 1]     # one-token targets keep their token
        ok[firsts] = False
    return ok


def input_dependence(offsets: np.ndarray, nll: np.ndarray, nll_noinput: np.ndarray,
                     skip_first: bool = True) -> np.ndarray:
    """Nats of each target that its input explains (sum over tokens scored both ways).

    Parameters
    ----------
    offsets : (N + 1,) int64
    nll, nll_noinput : (T,) float
        Per-token NLL with and without the input; NaN in ``nll_noinput`` = not scored.
    skip_first : bool
        Leave each target's first token out: its gain measures the frame more than the input
        (the separator or assistant header that announces the target, against a bare start
        token): about 6 nats on every GSM8K example with the reference model, whatever the
        target. Leaving it out ranked swapped targets better on both planted seeds.

    Returns
    -------
    (N,) float64
        :math:`\\sum_t (l^{noinput}_t - l_t)`; NaN for an example with no token scored both
        ways or no input at all (both NLLs equal on every token).
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    nll = np.asarray(nll, dtype=np.float64)
    ni = np.asarray(nll_noinput, dtype=np.float64)
    gain = ni - nll
    ok = scored_tokens(offsets, gain, skip_first)
    starts = offsets[:-1]
    counts = np.diff(offsets)
    nonempty = counts > 0
    total = np.zeros(len(counts))
    scored = np.zeros(len(counts))
    differs = np.zeros(len(counts))
    if nonempty.any():
        s = starts[nonempty]
        total[nonempty] = np.add.reduceat(np.where(ok, gain, 0.0), s)
        scored[nonempty] = np.add.reduceat(ok.astype(np.float64), s)
        differs[nonempty] = np.add.reduceat((ok & (ni != nll)).astype(np.float64), s)
    # reduceat on a non-empty example after an empty one is right; empty examples stay 0
    out = np.where((scored > 0) & (differs > 0), total, np.nan)
    return out


def _last_line_start(pieces: list[str], max_tokens: int) -> int:
    """Index of the first token of the target's last line (module docstring)."""
    end = len(pieces) - 1
    while end > 0 and not pieces[end].strip():       # trailing whitespace tokens
        end -= 1
    j = end
    while j > 0 and "\n" not in pieces[j - 1]:
        j -= 1
    # the closing token(s) follow ``end``; the line before them, at most max_tokens
    return max(j, end - max_tokens + 1, 0)


def ending_surprise(offsets: np.ndarray, nll: np.ndarray, pieces: list[list[str]],
                    max_tokens: int = 32) -> np.ndarray:
    """Largest NLL over each target's last line and closing token(s).

    Parameters
    ----------
    offsets : (N + 1,) int64
    nll : (T,) float
    pieces : list of N list of str
        The text piece of each target token.
    max_tokens : int
        Most tokens of the last line read (its end).

    Returns
    -------
    (N,) float64 (NaN for an example without tokens)
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    nll = np.asarray(nll, dtype=np.float64)
    out = np.full(len(offsets) - 1, np.nan)
    for i in range(len(out)):
        a, b = int(offsets[i]), int(offsets[i + 1])
        if b <= a:
            continue
        p = pieces[i]
        j = _last_line_start(p, max_tokens) if len(p) == b - a else max(0, b - a - max_tokens)
        out[i] = nll[a + j:b].max()
    return out


def target_surprise(offsets: np.ndarray, nll: np.ndarray) -> np.ndarray:
    """Mean NLL of each target's tokens (nats/token; the example's ``loss``).

    Parameters
    ----------
    offsets : (N + 1,) int64
    nll : (T,) float

    Returns
    -------
    (N,) float64 (NaN for an example without tokens)
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    nll = np.asarray(nll, dtype=np.float64)
    counts = np.diff(offsets)
    out = np.full(len(counts), np.nan)
    has = counts > 0
    if has.any():
        out[has] = np.add.reduceat(nll, offsets[:-1][has]) / counts[has]
    return out


# --------------------------------------------------------------------------------- rules
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


# ----------------------------------------------------------------------------- statistics
def _available(log_p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, C) float64 log p-values, which are finite, and how many per row."""
    log_p = np.asarray(log_p, dtype=np.float64)
    ok = np.isfinite(log_p)
    return log_p, ok, ok.sum(axis=1)


def _log_p_fisher(log_p: np.ndarray) -> np.ndarray:
    """ln of Fisher's combined p-value of each row's finite one-sided log p-values:
    ``P(chi2_{2m} >= X)``, ``X = -2 sum ln p``, in closed form for even degrees of freedom
    (``exp(-X/2) sum_{j<m} (X/2)^j / j!``), exact far into the tail; 0 for a row without any.

    Parameters
    ----------
    log_p : (N, C) float (NaN = signal not available)

    Returns
    -------
    (N,) float64
    """
    log_p, ok, m = _available(log_p)
    half = -np.where(ok, log_p, 0.0).sum(axis=1)   # X / 2
    terms = np.zeros(len(log_p))
    term = np.ones(len(log_p))
    for j in range(int(m.max()) if len(m) else 0):
        if j:
            term = term * half / j
        terms += np.where(j < m, term, 0.0)
    return np.where(m > 0, -half + np.log(np.where(m > 0, terms, 1.0)), 0.0)


def _log_p_one_sided(z: np.ndarray) -> np.ndarray:
    """ln Phi(-z) (NaN stays NaN)."""
    z = np.asarray(z, dtype=np.float64)
    ok = np.isfinite(z)
    return np.where(ok, log_ndtr(-np.where(ok, z, 0.0)), np.nan)


def _log_p_sidak(log_p: np.ndarray) -> np.ndarray:
    """ln of the Sidak-corrected smallest p-value of each row's finite log p-values:
    ``1 - (1 - p_min)^m`` (for m = 2, ``p_min (2 - p_min)``); NaN for a row without any.

    Parameters
    ----------
    log_p : (N, C) float

    Returns
    -------
    (N,) float64
    """
    log_p, ok, m = _available(log_p)
    lo = np.min(np.where(ok, log_p, np.inf), axis=1)
    lo = np.where(m > 0, lo, -1.0)          # rows without any: any value, NaN below
    # ln(1 - (1 - p)^m) = ln(-expm1(m log1p(-p))); below p = e^-30, ln(m p) (relative error
    # of order p)
    tiny = lo < -30.0
    with np.errstate(divide="ignore"):        # p = 1: log1p(-1) = -inf, the result 0 is right
        exact = np.log(-np.expm1(m * np.log1p(-np.exp(np.where(tiny, -30.0, lo)))))
    out = np.where(tiny, lo + np.log(np.maximum(m, 1)), exact)
    return np.where(m > 0, np.minimum(out, 0.0), np.nan)


def robust_z(x: np.ndarray, side: str = "high") -> tuple[np.ndarray, float, float]:
    """``(x - median) / scale`` over the finite values (NaN stays NaN); the scale is
    1.4826 x the median distance to the median of the values on the bulk's side (below the
    median for ``side="high"``, where large values are suspect; above it for ``"low"``).

    One-sided because the corruptions sit on one side: with 30 % of the rows planted wrong
    (``bench_suspects``), the two-sided MAD grew with them and shrank the z of every planted
    row (some replies in another language fell below clean rows); the clean side's spread grows
    far less with them (a known-answer test: less than half as much at 30 %). For symmetric
    clean data it equals the MAD.

    Parameters
    ----------
    x : (N,) float
    side : {"high", "low"}
        Which values are suspect.

    Returns
    -------
    z : (N,) float64; center, scale : float
        The scale falls back to the two-sided MAD, then to the standard deviation, when it is
        0; z is 0 where all are 0 (no spread, no evidence).
    """
    if side not in ("high", "low"):
        raise ValueError(f"side must be 'high' or 'low', got {side!r}")
    x = np.asarray(x, dtype=np.float64)
    ok = np.isfinite(x)
    if not ok.any():
        return np.full(x.shape, np.nan), math.nan, math.nan
    v = x[ok]
    center = float(np.median(v))
    bulk = v[v <= center] if side == "high" else v[v >= center]
    scale = 1.4826 * float(np.median(np.abs(bulk - center)))
    if scale <= 0:
        scale = 1.4826 * float(np.median(np.abs(v - center)))
    if scale <= 0:
        scale = float(np.std(v))
    z = np.full(x.shape, np.nan)
    z[ok] = (v - center) / scale if scale > 0 else 0.0
    return z, center, scale


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


def capability(offsets: np.ndarray, nll: np.ndarray, token_ids: np.ndarray,
               nll_noinput: np.ndarray | None, config: Any = None,
               pieces: list[list[str]] | None = None) -> dict:
    """How well the model predicts this data, and which checks that allows.

    Three measurements, each against a yardstick of the data itself, and one rule each:

    - **predicts the targets**: mean target NLL (nats/token) against the entropy of the
      data's own target-token unigram distribution (``nll_ratio``; a model that knows the
      text predicts far better than token frequencies). ``predicts_targets`` when
      ``nll_ratio <= capability_max_nll_ratio``; otherwise the surprise-based checks
      (``ending_surprise``) are out of reach.
    - **conditions on the input**: the share of the targets' no-input surprise that the inputs
      explain (``relative_input_gain``), with the distribution of the per-example input
      dependence (median in nats and per token; share of examples below
      ``capability_near_zero`` nats/token). ``conditions_on_input`` when
      ``relative_input_gain >= capability_min_gain``; otherwise targets that do not answer
      their input (swapped, off-topic) are out of reach.
    - **computes arithmetic** (targets with explicit calculations only): the mean NLL of the
      digits of computed results (right of ``=``, :func:`result_positions`) against that of
      the copied digits and of digit frequencies. ``computes_arithmetic`` when at most
      ``capability_max_result_nll`` nats/digit (the right digit at >= ~60 % probability,
      geometric mean); otherwise a changed result that no written calculation contradicts
      (a changed final answer, an intermediate result changed consistently) is out of reach;
      the rules ``false_arithmetic`` / ``unsupported_final_answer`` still check what is
      written.

    ``limited`` is True when the model does not condition on the input or does not predict the
    targets: the message then names the checks out of reach, with the numbers, and asks for
    ``--model`` naming the model that will be fine-tuned.

    Parameters
    ----------
    offsets : (N + 1,) int64
    nll : (T,) float
    token_ids : (T,) int
        Target token ids (for the data's unigram entropy).
    nll_noinput : (T,) float or None
    config : AnalysisConfig, optional
    pieces : list of N list of str, optional
        Token pieces per example (for the arithmetic measurement).

    Returns
    -------
    dict
        ``mean_target_nll``, ``unigram_entropy`` (nats, plug-in), ``nll_ratio``,
        ``relative_input_gain`` (None without input dependence), ``input_dependence``
        (``median`` nats per example, ``median_per_token``, ``share_near_zero``,
        ``near_zero``; None without), ``input_gain_per_token`` (p10/p50/p90),
        ``share_input_helps``, ``examples_with_input``, ``arithmetic`` (``result_digits``,
        ``result_nll``, ``copied_nll``, ``digit_entropy``; None without calculations),
        ``predicts_targets``, ``conditions_on_input`` (bool or None),
        ``computes_arithmetic`` (bool or None), ``limited``, ``out_of_reach`` (list of
        str), ``thresholds``, ``message``.
    """
    cfg = _settings(config)
    nll = np.asarray(nll, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.int64)
    ids = np.asarray(token_ids, dtype=np.int64)
    counts = np.bincount(ids) if len(ids) else np.zeros(1)
    p = counts[counts > 0] / max(counts.sum(), 1)
    entropy = float(-(p * np.log(p)).sum()) if len(p) else 0.0
    mean_nll = float(nll.mean()) if len(nll) else math.nan
    ratio = mean_nll / entropy if entropy > 0 else math.nan
    out: dict[str, Any] = {
        "mean_target_nll": mean_nll, "unigram_entropy": entropy, "nll_ratio": ratio,
        "relative_input_gain": None, "input_dependence": None, "input_gain_per_token": None,
        "share_input_helps": None, "examples_with_input": None, "arithmetic": None,
        "thresholds": {"capability_min_gain": cfg.capability_min_gain,
                       "capability_max_nll_ratio": cfg.capability_max_nll_ratio,
                       "capability_near_zero": cfg.capability_near_zero,
                       "capability_max_result_nll": cfg.capability_max_result_nll},
    }
    predicts = bool(ratio <= cfg.capability_max_nll_ratio) if math.isfinite(ratio) else False
    conditions = computes = None
    if nll_noinput is not None:
        ni = np.asarray(nll_noinput, dtype=np.float64)
        d = input_dependence(offsets, nll, ni)
        has = np.isfinite(d)
        out["examples_with_input"] = int(has.sum())
        if has.any():
            row = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
            # the tokens input_dependence sums (each target's first token, the frame, out)
            tok = has[row] & scored_tokens(offsets, ni - nll)
            gain = float((ni[tok] - nll[tok]).sum())
            base = float(ni[tok].sum())
            rel = gain / base if base > 0 else 0.0
            per_tok = d[has] / np.maximum(np.bincount(row[tok], minlength=len(d))[has], 1)
            out["relative_input_gain"] = rel
            out["input_dependence"] = {
                "median": float(np.median(d[has])), "median_per_token": float(
                    np.median(per_tok)),
                "share_near_zero": float((per_tok < cfg.capability_near_zero).mean()),
                "near_zero": cfg.capability_near_zero}
            out["input_gain_per_token"] = {f"p{q}": float(np.percentile(per_tok, q))
                                           for q in (10, 50, 90)}
            out["share_input_helps"] = float((d[has] > 0).mean())
            conditions = bool(rel >= cfg.capability_min_gain)
    if pieces is not None:
        res_t, copy_t, digit_t = [], [], []
        for i in range(len(offsets) - 1):
            a, b = int(offsets[i]), int(offsets[i + 1])
            pc = pieces[i]
            if len(pc) != b - a:
                continue
            r = result_positions(pc)
            res_t += [a + t for t in r]
            rs = set(r)
            digits = [t for t, x in enumerate(pc) if x.strip().isdigit()]
            digit_t += [a + t for t in digits]
            copy_t += [a + t for t in digits if t not in rs]
        if res_t:
            dig = ids[digit_t]
            _, c = np.unique(dig, return_counts=True)
            q = c / c.sum()
            arith = {"result_digits": len(res_t), "result_nll": float(nll[res_t].mean()),
                     "copied_nll": float(nll[copy_t].mean()) if copy_t else None,
                     "digit_entropy": float(-(q * np.log(q)).sum())}
            out["arithmetic"] = arith
            computes = bool(arith["result_nll"] <= cfg.capability_max_result_nll)
    out["predicts_targets"] = predicts
    out["conditions_on_input"] = conditions
    out["computes_arithmetic"] = computes
    limited = conditions is False or not predicts
    out["limited"] = limited
    reach = []
    if conditions is False:
        reach.append(f"targets that do not answer their input (taken from another example, "
                     f"off-topic replies): the inputs explain "
                     f"{100 * out['relative_input_gain']:.1f} % of the targets' surprise "
                     f"(< {100 * cfg.capability_min_gain:g} %)")
    if not predicts:
        reach.append(f"targets that end or read unlike the data (cut off, changed final "
                     f"answer, another language or format): mean target NLL {mean_nll:.2f} "
                     f"nats/token is {ratio:.2f} of the data's unigram entropy "
                     f"(> {cfg.capability_max_nll_ratio:g})")
    if computes is False:
        ar = out["arithmetic"]
        reach.append(f"arithmetic correctness beyond the written calculations (a changed final "
                     f"answer or intermediate result that no a op b = c in the target "
                     f"contradicts): the model predicts computed result digits at "
                     f"{ar['result_nll']:.2f} nats/digit (> {cfg.capability_max_result_nll:g}; "
                     f"digit frequencies: {ar['digit_entropy']:.2f}), i.e. it does not compute "
                     f"them")
    reach.append("content errors the model cannot know (wrong facts, wrong reasoning in "
                 "words)")
    out["out_of_reach"] = reach
    lines = [f"The model predicts the targets at {mean_nll:.2f} nats/token against "
             f"{entropy:.2f} for the data's own token frequencies (ratio {ratio:.2f}; "
             f"{'it knows this kind of text' if predicts else 'it barely knows this text'})."]
    if out["relative_input_gain"] is not None:
        how = "conditions" if conditions else "barely conditions"
        dep = out["input_dependence"]
        lines.append(f"The inputs explain {100 * out['relative_input_gain']:.1f} % of the "
                     f"targets' surprise (the model {how} on the input; median input "
                     f"dependence {dep['median']:.1f} nats per example, "
                     f"{dep['median_per_token']:.2f} per token; "
                     f"{100 * dep['share_near_zero']:.0f} % of the examples below "
                     f"{cfg.capability_near_zero:g} nats/token).")
    else:
        lines.append("Input dependence was not measured (no examples with an input, or a "
                     "store without it): swapped and off-topic targets are not checked.")
    lines.append("Out of this model's reach: " + "; ".join(reach) + ".")
    if limited or computes is False:
        lines.append("Pass --model naming the model that will be fine-tuned: the suspect "
                     "checks judge the data through that model.")
    out["message"] = " ".join(lines)
    return out


# ------------------------------------------------------------------------------ analyzer
def analyze_suspects(
    tokens: Any,
    *,
    targets: list[str] | None = None,
    ids: np.ndarray | None = None,
    contradictions: set[tuple[int, int]] | None = None,
    n_truncated: np.ndarray | None = None,
    config: Any = None,
) -> SuspectsResult:
    """Suspect score, flag and reasons of every example, and the model-capability statement.

    Parameters
    ----------
    tokens : TokenProfiles
        ``offsets`` (N + 1), ``nll`` (T,), ``ids`` (T,), ``pieces(row)``, and ``nll_noinput``
        (T,) or None (then ``input_dependence`` is not available and the capability statement
        says so).
    targets : list of N str, optional
        Target texts (for the rules ``false_arithmetic`` and ``unsupported_final_answer``).
    ids : (N,) int, optional
        Example ids (default ``0..N-1``).
    contradictions : set of (a, b), optional
        Contradiction pairs as row positions (``ContradictionsResult.positions``).
    n_truncated : (N,) int, optional
        Tokens the encoder dropped at ``max_length``.
    config : AnalysisConfig, optional
        Its ``suspect_*`` and ``capability_*`` fields.

    Returns
    -------
    SuspectsResult
        ``name="suspects"``. Table: ``suspect_score`` (float in [0, 1]), ``is_suspect``
        (bool), ``suspect_reasons`` (str, reason codes joined by ``";"``, "" when none),
        ``suspect_evidence`` (float), ``input_dependence`` (nats, NaN without input),
        ``ending_surprise`` (nats). Summary: ``n``, ``suspects`` (count), ``suspect_share``,
        ``alpha``, ``threshold``, ``formula``, ``calibration``, ``signals`` (per signal: center,
        scale, transform, direction, available, z threshold), ``reasons`` (count per reason
        code), ``capability`` (:func:`capability`), ``listed`` (the ``suspect_list`` most
        suspect: id, score, evidence, reasons, the signal values, ``tokens`` = the
        ``suspect_tokens`` target tokens the input explains least ranked by NLL, and
        ``ending`` = the most surprising token of the last line).
    """
    cfg = _settings(config)
    offsets = np.asarray(tokens.offsets, dtype=np.int64)
    n = len(offsets) - 1
    nll = np.asarray(tokens.nll, dtype=np.float64)
    ni = getattr(tokens, "nll_noinput", None)
    ni = None if ni is None else np.asarray(ni, dtype=np.float64)
    ids = np.arange(n) if ids is None else np.asarray(ids)
    if targets is not None and len(targets) != n:
        raise ValueError(f"{len(targets)} targets for {n} examples")
    pieces = [tokens.pieces(i) for i in range(n)]

    dep = input_dependence(offsets, nll, ni) if ni is not None else np.full(n, np.nan)
    end = ending_surprise(offsets, nll, pieces, cfg.suspect_ending_tokens)
    if n_truncated is not None:   # cut at max_length: the target's own ending was not scored
        end = np.where(np.asarray(n_truncated) > 0, np.nan, end)
    tgt = target_surprise(offsets, nll)
    z_dep, c_dep, s_dep = robust_z(-dep)                  # low dependence = suspect
    z_end, c_end, s_end = robust_z(np.log(end + cfg.suspect_ending_floor))
    z_tgt, c_tgt, s_tgt = robust_z(np.log(tgt))
    Z = np.column_stack([z_dep, z_end, z_tgt])
    cap = capability(offsets, nll, tokens.ids, ni, cfg, pieces=pieces)
    in_reach = {"input_dependence": cap["conditions_on_input"] is not False,
                "ending_surprise": bool(cap["predicts_targets"]),
                "target_surprise": bool(cap["predicts_targets"])}
    if not cfg.suspect_gate:
        in_reach = dict.fromkeys(in_reach, True)
    used = np.where(np.array([in_reach[s] for s in SIGNALS])[None, :], Z, np.nan)
    lp = _log_p_one_sided(used)
    # Fisher over two independent questions: does the input explain the target; does the
    # target read like the data (the stronger of its ending and its whole, Sidak-corrected)
    surprise = _log_p_sidak(lp[:, 1:])
    log_p = _log_p_fisher(np.column_stack([lp[:, 0], surprise]))   # 0 without signals

    rules = {r: np.zeros(n, dtype=bool) for r in RULES}
    details = [""] * n
    calcs: list[list[dict]] = [[] for _ in range(n)]
    if targets is not None:
        calcs = [false_calculations(t) for t in targets]
        rules["false_arithmetic"] = np.array([bool(c) for c in calcs], dtype=bool)
        rules["unsupported_final_answer"] = np.array(
            [unsupported_final_answer(t) for t in targets], dtype=bool)
        for i in range(n):
            said = [f"false: {c['calculation']}"
                    + (f" (is {c['computed']:g})" if c["computed"] is not None else "")
                    for c in calcs[i]]
            if rules["unsupported_final_answer"][i]:
                said.append(f"final answer {final_answer(targets[i])} appears nowhere in the "
                            "worked target")
            details[i] = "; ".join(said)
    notes = {"truncated": (np.asarray(n_truncated) > 0) if n_truncated is not None
             else np.zeros(n, dtype=bool), "contradiction": np.zeros(n, dtype=bool)}
    pairs_to_resolve = sorted((min(a, b), max(a, b)) for a, b in contradictions or ())
    for a, b in pairs_to_resolve:
        notes["contradiction"][[a, b]] = True
    hit = np.zeros(n, dtype=bool)
    for r in RULES:
        hit |= rules[r]
    alpha = cfg.suspect_alpha
    log_p = log_p + np.where(hit, math.log(cfg.suspect_rule_p), 0.0)
    score = np.clip(-np.expm1(log_p), 0.0, 1.0)
    evidence = -log_p / math.log(10.0)
    flagged = score >= 1.0 - alpha

    # a signal is a reason when it alone is significant at alpha (z >= Phi^-1(1 - alpha)); an
    # example flagged by the combination alone gets its strongest signal as the reason
    z_star = float(ndtri(1.0 - alpha))
    reasons: list[tuple[str, ...]] = []
    for i in range(n):
        zi = np.where(np.isfinite(used[i]), used[i], -np.inf)
        r = [SIGNAL_REASONS[c] for c in range(len(SIGNALS)) if zi[c] >= z_star]
        if not r and flagged[i] and not hit[i] and np.isfinite(zi.max()):
            r = [SIGNAL_REASONS[int(np.argmax(zi))]]
        r += [name for name in RULES if rules[name][i]]
        r += [name for name in NOTES if notes[name][i]]
        reasons.append(tuple(r))

    order = np.lexsort((np.arange(n), -evidence))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(1, n + 1)
    table = pd.DataFrame({
        "suspect_score": score, "is_suspect": flagged,
        "suspect_reasons": [";".join(r) for r in reasons],
        "suspect_detail": details,
        "suspect_evidence": evidence, "suspect_p": np.power(10.0, -evidence),
        "suspect_rank": rank, "input_dependence": dep, "ending_surprise": end,
    }, index=pd.Index(ids, name="index"))

    listed = [_listed(i, ids, score, evidence, reasons, dep, end, tgt, offsets, nll, ni, pieces,
                      cfg) | {"rank": int(rank[i]), "p_value": float(10.0 ** -evidence[i]),
                              "detail": details[i], "calculations": calcs[i]}
              for i in order[:cfg.suspect_list].tolist() if flagged[i]]
    # not measured: a model signal the capability statement rules out did not run
    measured = not (cfg.suspect_gate and not all(in_reach.values()))
    z1 = z_star
    summary = {
        "n": n, "suspects": int(flagged.sum()) if measured else None,
        "suspect_share": (float(flagged.mean()) if n else 0.0) if measured else None,
        "measured": measured, "flagged": int(flagged.sum()),
        "not_measured": None if measured else (
            "The checks the capability statement rules out did not run ("
            + ", ".join(k for k, v in in_reach.items() if not v) + "): the suspect count "
            "is not measured; 'flagged' counts what the other checks found"),
        "contradiction_pairs": [[int(ids[a]), int(ids[b])] for a, b in pairs_to_resolve],
        "alpha": alpha, "threshold": 1.0 - alpha,
        "formula": ("suspect_score = 1 - p * (rule_p if a rule fired else 1); p = Fisher's "
                    "combination of p_input = Phi(-z_input) and p_surprise = 1 - (1 - min("
                    "p_ending, p_target))^2 (Sidak), z = robust z of each signal (median, "
                    "1.4826 x the median distance of the bulk's side), signals out of the "
                    "model's reach left out"),
        "calibration": (f"is_suspect when suspect_score >= {1 - alpha:g}: an example whose "
                        f"signals follow the data's bulk (robust normal fit) is flagged with "
                        f"probability {alpha:g}; every rule hit is flagged; a note "
                        f"(truncated) is listed, never flagged on its own"),
        "signals": {
            "input_dependence": {"center": -c_dep if math.isfinite(c_dep) else None,
                                 "scale": s_dep if math.isfinite(s_dep) else None,
                                 "transform": "sum over tokens of nll_noinput - nll (nats)",
                                 "direction": "low", "available": int(np.isfinite(dep).sum()),
                                 "in_reach": in_reach["input_dependence"],
                                 "z_threshold": z1},
            "ending_surprise": {"center": c_end if math.isfinite(c_end) else None,
                                "scale": s_end if math.isfinite(s_end) else None,
                                "transform": f"log(max NLL of the last line + "
                                             f"{cfg.suspect_ending_floor:g})",
                                "direction": "high", "available": int(np.isfinite(end).sum()),
                                "in_reach": in_reach["ending_surprise"],
                                "z_threshold": z1},
            "target_surprise": {"center": c_tgt if math.isfinite(c_tgt) else None,
                                "scale": s_tgt if math.isfinite(s_tgt) else None,
                                "transform": "log(mean NLL of the target, nats/token)",
                                "direction": "high", "available": int(np.isfinite(tgt).sum()),
                                "in_reach": in_reach["target_surprise"],
                                "z_threshold": z1},
        },
        "reasons": {code: sum(code in r for r in reasons) for code in REASONS},
        "reason_codes": dict(REASON_TEXT),
        "capability": cap,
        "listed": listed,
    }
    logger.info("suspects: %d of %d examples flagged (%.1f %%)%s", summary["flagged"], n,
                100 * flagged.mean() if n else 0.0, "" if measured else ", not measured")
    return SuspectsResult("suspects", table, summary, score=score, is_suspect=flagged,
                          evidence=evidence, z=Z, reasons=reasons)


def _listed(i: int, ids, score, evidence, reasons, dep, end, tgt, offsets, nll, ni, pieces,
            cfg: AnalysisConfig) -> dict:
    a, b = int(offsets[i]), int(offsets[i + 1])
    tok_nll = nll[a:b]
    p = pieces[i]
    gain = (ni[a:b] - tok_nll) if ni is not None else np.full(b - a, np.nan)
    # the tokens the input explains least, most surprising first
    unexplained = np.flatnonzero(~(gain > 0.0))
    top = unexplained[np.lexsort((unexplained, -tok_nll[unexplained]))][:cfg.suspect_tokens]
    j = _last_line_start(p, cfg.suspect_ending_tokens) if len(p) == b - a else 0
    worst_end = j + int(np.argmax(tok_nll[j:])) if b > a else 0

    def tok(t: int) -> dict:
        return {"position": int(t), "text": p[t] if t < len(p) else "",
                "nll": float(tok_nll[t]),
                "nll_noinput": float(ni[a + t]) if ni is not None else None}

    return {
        "id": int(ids[i]), "score": float(score[i]),
        "evidence": float(evidence[i]),
        "reasons": list(reasons[i]),
        "input_dependence": float(dep[i]) if np.isfinite(dep[i]) else None,
        "ending_surprise": float(end[i]) if np.isfinite(end[i]) else None,
        "target_surprise": float(tgt[i]) if np.isfinite(tgt[i]) else None,
        "n_tokens": b - a,
        "tokens": [tok(t) for t in top.tolist()],
        "ending": tok(worst_end) if b > a else None,
    }


def _run(system, results, config: AnalysisConfig) -> SuspectsResult | None:
    if system.tokens is None:
        return None
    con = results.contradictions
    return analyze_suspects(
        system.tokens, ids=system.ids, n_truncated=system.n_truncated, config=config,
        targets=[ex.target_text for ex in system.examples]
        if system.examples is not None else None,
        contradictions=con.positions if con is not None else None)


ANALYZER = Analyzer(
    name="suspects", run=_run, section="suspects", after=("contradictions",),
    metrics={"suspects": Metric("suspects", "examples flagged is_suspect (suspect_score >= 1 - "
                                "suspect_alpha, or a rule fired); null (fails) when the "
                                "capability statement rules a check out"),
             "suspect_share": Metric("suspect_share", "suspects / N (null when not measured)"),
             "model_limited": Metric("capability.limited", "true when the model barely "
                                     "conditions on the input: checks named in "
                                     "capability.out_of_reach are beyond it")})
