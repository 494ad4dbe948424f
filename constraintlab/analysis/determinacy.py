"""The determinacy verdict on the whole system: how its directions grow with the data, and
whether it is consistent (:func:`determinacy_verdict` has the rules).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from constraintlab.analysis.config import AnalysisConfig
from constraintlab.analysis.registry import Analyzer, Metric
from constraintlab.analysis.result import AnalyzerResult

__all__ = ["DeterminacyResult", "analyze_determinacy", "determinacy_verdict"]


@dataclass
class DeterminacyResult(AnalyzerResult):
    """The determinacy verdict (:func:`analyze_determinacy`): its summary is
    :func:`determinacy_verdict`'s dict; no per-example columns.

    Attributes
    ----------
    verdict : str
        The growth verdict (``saturating``, ``still_growing``, ``slowing``,
        ``limited_by_sketch``, ``limited_by_adapter``, ``too_few_examples``).
    inconsistent : bool
        Contradictions only (same or equivalent input, incompatible targets).
    """

    verdict: str = ""
    inconsistent: bool = False


def analyze_determinacy(
    spectrum: AnalyzerResult,
    *,
    growth: AnalyzerResult,
    contradictions: AnalyzerResult | None = None,
    interference: AnalyzerResult | None = None,
    config: AnalysisConfig | None = None,
) -> DeterminacyResult:
    """The verdict on the whole system: how its directions grow with the data (the growth
    curve, :mod:`constraintlab.analysis.growth`) and whether it is consistent (contradictions
    only); :func:`determinacy_verdict` has the rules.

    Parameters
    ----------
    spectrum : SpectrumResult
    growth : AnalyzerResult
        :func:`constraintlab.analysis.growth.analyze_growth` on the same rows.
    contradictions : ContradictionsResult, optional
        For the consistency rule (``count``).
    interference : InterferenceResult, optional
        Named in the sentence (interference is about the optimisation path, never about
        consistency).
    config : AnalysisConfig

    Returns
    -------
    DeterminacyResult
        ``name="determinacy"``; summary: see :func:`determinacy_verdict`; an empty table
        (index = the ids).
    """
    verdict = determinacy_verdict(
        growth.summary, n=int(spectrum.summary["n_equations"]),
        n_contradictions=(contradictions.summary["count"]
                          if contradictions is not None else None),
        interference_summary=interference.summary if interference is not None else None,
        config=config)
    table = pd.DataFrame(index=spectrum.table.index.copy())
    return DeterminacyResult("determinacy", table, verdict, verdict=verdict["determinacy"],
                             inconsistent=verdict["consistency"] == "inconsistent")


def determinacy_verdict(
    growth_summary: dict,
    *,
    n: int,
    n_contradictions: int | None = None,
    interference_summary: dict | None = None,
    config: AnalysisConfig | None = None,
) -> dict:
    """The determinacy verdict (from the growth curve) and the consistency verdict (from the
    contradictions), every rule with its numbers and whether it fired.

    Determinacy: the growth verdict (:data:`constraintlab.analysis.growth.GROWTH_VERDICTS`:
    ``too_few_examples``, ``limited_by_sketch``, ``limited_by_adapter``, ``saturating``,
    ``still_growing``, ``slowing``; rules in :func:`constraintlab.analysis.growth.
    growth_verdict`). "N < P" is no rule: in LoRA fine-tuning it almost always holds.

    Consistency: ``inconsistent`` only when the contradiction analyzer finds pairs with the same
    (or an equivalent) input and incompatible targets: at least
    ``max(1, inconsistent_contradiction_share * N)`` pairs. Equations no model can satisfy
    together. Gradient conflict never makes a system inconsistent: it is *interference*
    (:mod:`constraintlab.analysis.interference`), reported beside it.

    Returns
    -------
    dict
        ``determinacy`` (the growth verdict), ``rule`` (the growth rule's sentence with its
        numbers), ``consistency`` (``consistent`` / ``inconsistent`` / ``unknown`` without a
        contradiction analysis), ``inconsistent_reasons``,
        ``interference`` (``above_null``, ``excess`` or None), ``sentence`` (what the terminal
        prints: the verdict, its rule and numbers, consistency and interference), ``rules``
        (the growth rules then ``inconsistent``), ``caveats``, ``slope_per_100``,
        ``elasticity``.
    """
    config = config if config is not None else AnalysisConfig()
    g = growth_summary
    rules = [dict(r) for r in g["rules"]]
    incons = []
    need = max(1.0, config.inconsistent_contradiction_share * n)
    if n_contradictions is not None and n_contradictions >= need:
        incons.append(f"{n_contradictions} contradiction pairs (same or equivalent input, "
                      f"incompatible targets; >= {need:g})")
    rules.append({
        "rule": "inconsistent",
        "condition": "contradiction pairs >= max(1, inconsistent_contradiction_share * N)",
        "values": {"contradictions": n_contradictions, "N": n,
                   "inconsistent_contradiction_share": config.inconsistent_contradiction_share},
        "fired": bool(incons),
    })
    consistency = ("unknown" if n_contradictions is None
                   else "inconsistent" if incons else "consistent")
    inter = None
    if interference_summary is not None:
        inter = {"above_null": bool(interference_summary["interference_above_null"]),
                 "excess": interference_summary["interference_excess"],
                 "n_zones": interference_summary.get("n_zones", 2)}
    sentence = f"{g['verdict'].replace('_', ' ')}: {g['reason']}."
    if consistency == "inconsistent":
        sentence += f" Inconsistent: {'; '.join(incons)}."
    elif consistency == "consistent":
        sentence += (f" Consistent: {n_contradictions} contradiction pair"
                     f"{'' if n_contradictions == 1 else 's'} (< {need:g}).")
    if inter is not None and inter["n_zones"] < 2:
        sentence += " Interference: fewer than two zones, nothing to compare."
    elif inter is not None:
        ex = inter["excess"]  # None when the null's interference is 0 (no ratio)
        sentence += (" Interference "
                     + (f"{ex:.2f}x its null (" if ex is not None else "above a null of 0 (")
                     + ("above" if inter["above_null"] else "near") + " the data's own "
                     "baseline).")
    return {
        "determinacy": g["verdict"],
        "rule": g["reason"],
        "consistency": consistency,
        "inconsistent_reasons": incons,
        "interference": inter,
        "sentence": sentence,
        "rules": rules,
        "caveats": list(g.get("caveats", [])),
        "slope_per_100": g.get("slope_per_100"),
        "elasticity": g.get("elasticity"),
    }


def _run_determinacy(system, results, config: AnalysisConfig) -> DeterminacyResult | None:
    if results.spectrum is None or results.growth is None:
        return None
    return analyze_determinacy(results.spectrum, growth=results.growth,
                               contradictions=results.contradictions,
                               interference=results.interference, config=config)


ANALYZER = Analyzer(
    name="determinacy", run=_run_determinacy, section="system",
    after=("spectrum", "growth", "contradictions", "interference"),
    metrics={"determinacy": Metric("determinacy", "how the directions grow with the data: "
                                   "saturating, slowing, still_growing, limited_by_sketch, "
                                   "limited_by_adapter or too_few_examples"),
             "consistency": Metric("consistency", "consistent, inconsistent (contradiction "
                                   "pairs: same input, incompatible targets) or unknown")})
