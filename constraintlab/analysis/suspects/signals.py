r"""The model signals of a suspect target: each a number per example from the per-token NLLs.

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

How the signals combine into a score: :mod:`constraintlab.analysis.suspects.stats`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ending_surprise", "input_dependence", "scored_tokens", "target_surprise"]


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

