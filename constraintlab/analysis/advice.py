"""What to do next: one sentence per finding that asks for action, most pressing first.

Read from the other analyzers' results (nothing new is measured here). Nothing rests on a
signal the capability statement rules out: with a model that barely conditions on the input,
interference above its null is said to restate the model's ignorance (no "separate adapters"),
and high volatility from a model that does not know the text is said to be that. The one
threshold of its
own, ``AnalysisConfig.volatility_advice_p99``, is documented there with its calibration. The
report shows the sentences as they are (``report.json`` section ``advice``, the HTML page's
"What to do next", ``Report.advice()``).
"""

from __future__ import annotations

import math

import pandas as pd

from constraintlab.analysis.config import AnalysisConfig
from constraintlab.analysis.registry import Analyzer
from constraintlab.analysis.result import AnalyzerResult

__all__ = ["advise", "family_reasons"]


def family_reasons(f: dict) -> str:
    """Why a family is incoherent, with its numbers (plain text), from one entry of the
    families summary's ``families``."""
    coh, out = f.get("coherence") or {}, []
    for reason in f["reasons"]:
        if reason == "contradiction":
            out.append(f"{f.get('contradicting_pairs', 0)} member pair(s) ask for different "
                       "answers to the same input")
        elif reason == "low_coherence":
            out.append(f"mean cosine of the members' constraints only "
                       f"{coh.get('mean_cos', math.nan):.2f}")
        elif reason == "opposing":
            out.append(f"{coh.get('opposing_pairs', 0)} member pair(s) pull in opposite "
                       "directions")
        else:
            out.append(reason)
    return ", ".join(out)


#: How many record ids an advice sentence names (then "... and N more").
NAMED = 6


def _ids(ids, limit: int = NAMED) -> str:
    """``records 3, 17, 42`` (the first ``limit``, then how many more)."""
    ids = [str(i) for i in ids]
    head = ", ".join(ids[:limit])
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return f"record{'s' if len(ids) != 1 else ''} {head}{more}"


def _flagged(result, column: str, exclude: str | None = None) -> list[int]:
    """Ids (table index) where ``column`` is true (and ``exclude`` false)."""
    t = result.table
    if column not in t.columns:
        return []
    mask = t[column].astype(bool)
    if exclude is not None and exclude in t.columns:
        mask &= ~t[exclude].astype(bool)
    return [int(i) for i in t.index[mask.to_numpy()]]


def advise(results, config: AnalysisConfig) -> list[str]:
    """The advice sentences for ``results`` (an :class:`AnalysisResults` so far)."""
    out: list[str] = []
    con, red, fam = results.contradictions, results.redundancy, results.families
    vol, zones, det, spec = results.volatility, results.zones, results.determinacy, results.spectrum
    sus = results.suspects
    cap = (sus.summary.get("capability") or {}) if sus is not None else {}
    # what the capability statement rules out: nothing rests on it
    limited = bool(cap.get("limited"))
    knows_text = cap.get("predicts_targets") is not False
    n_con = con.summary["count"] if con is not None else 0
    if n_con:
        shown = [f"{p['a']} & {p['b']}" for p in con.pairs[:NAMED]]
        more = f" and {n_con - len(shown)} more" if n_con > len(shown) else ""
        out.append(f"Resolve the {n_con} contradiction pair(s): the same input asks for "
                   "different targets, so training pulls the model both ways (records "
                   f"{', '.join(shown)}{more}; column is_contradiction).")
    if red is not None:
        if red.summary["exact_duplicates"]:
            out.append(f"Drop or merge the {red.summary['exact_duplicates']} exact duplicate(s):"
                       " they add weight, not constraints ("
                       + _ids(_flagged(red, "is_exact_duplicate", "is_duplicate_keeper"))
                       + " besides their keepers; is_exact_duplicate, the keeper of each set "
                       "is marked is_duplicate_keeper).")
        if red.summary["near_duplicates"]:
            out.append(f"Review the {red.summary['near_duplicates']} near duplicate(s) "
                       f"({_ids(_flagged(red, 'is_near_duplicate', 'is_duplicate_keeper'))} "
                       "besides their keepers; is_near_duplicate): cosmetic variants of other "
                       "records.")
    sus = getattr(results, "suspects", None)
    if sus is not None and sus.summary.get("suspects"):
        listed = [int(x["id"]) for x in sus.summary.get("listed", [])]
        out.append(f"Check the {sus.summary['suspects']} likely wrong target(s), most suspect "
                   f"first ({_ids(listed or _flagged(sus, 'is_suspect'))}; "
                   "report.suspects() gives the reasons): fix or drop them.")
    if fam is not None:
        bad = [f for f in fam.summary["families"] if f["coherent"] is False]
        if bad:
            named = "; ".join(f"family {f['id']} (base record {f['base']}, {f['size']} "
                              f"records): {family_reasons(f)}" for f in bad[:3])
            out.append(f"{fam.summary['incoherent']} of {fam.summary['count']} variant families"
                       f" are incoherent, their variants disagree: {named}. Make the variants "
                       "agree or drop the odd one out (column family; report.families).")
    if vol is not None:
        p = vol.summary["percentiles"]["volatility"]
        if p["p99"] >= config.volatility_advice_p99 and not knows_text:
            out.append(f"Token volatility is high (p99 {p['p99']:.2f}) because the model does "
                       "not know this text (capability statement): it restates the model's "
                       "ignorance of the domain, not a problem of the data.")
        elif p["p99"] >= config.volatility_advice_p99:
            top = vol.summary["most_volatile"][:3]
            named = ", ".join(f"{v['id']} ({v['volatility']:.2f}, mean NLL "
                              f"{v['mean_nll']:.1f} nats)" for v in top)
            out.append(f"Check the most volatile examples first: the top 1 % score "
                       f"{p['p99']:.2f} or more on token volatility (max {p['max']:.2f}; 0 = "
                       "the model already predicts the target, 1 = it knows nothing of it), so "
                       f"training moves the model most on them: records {named} "
                       "(report.volatile_examples()).")
    if sus is not None and sus.summary.get("measured") is False:
        out.append("The suspect checks did not all run: the model cannot judge this data "
                   "(capability statement). Pass --model naming the model you will fine-tune "
                   "to check the targets.")
    if zones is not None:
        for z in [z for z in zones.summary["zones"] if z["is_pressure_zone"]][:3]:
            out.append(f"Inspect pressure zone {z['id']} ({z['label']}, {z['size']} examples):"
                       f" {z['internal_conflict_share']:.0%} of its internal links conflict.")
    inter = results.interference
    if inter is not None and inter.summary.get("interference_above_null") and limited:
        out.append(f"Interference reads {inter.summary['interference_excess']:.2f}x its null, "
                   "but the model barely conditions on the input or does not know the targets "
                   "(capability statement): the zones then sort the text by what the model "
                   "does not know, so this restates its ignorance of the domain; rerun with "
                   "--model naming the model you will fine-tune before acting on it.")
    elif inter is not None and inter.summary.get("interference_above_null"):
        pair = inter.summary.get("most_interfering_pair") or {}
        where = (f" most between zones {pair['a']} and {pair['b']}" if pair else "")
        ex = inter.summary["interference_excess"]  # None: the null's interference is 0
        times = f"{ex:.2f}x its null" if ex is not None else "above a null of 0"
        out.append(f"Training on some examples undoes others beyond the data's own baseline "
                   f"(interference {times},"
                   f"{where}): look at the zone matrix; consider separate adapters, a curriculum"
                   " (constraintlab order --strategy zones) or reconciling the styles.")
    if det is not None:
        verdict, rule = det.summary["determinacy"], det.summary["rule"]
        if verdict == "saturating":
            out.append(f"More of the same adds little ({rule}): new examples of this kind "
                       "mostly repeat directions the data already asks for; add other kinds of "
                       "examples, or subsample (low leverage_score first).")
        elif verdict == "still_growing":
            out.append(f"The data keeps asking for new directions ({rule}): every example "
                       "teaches something of its own, which the adapter can also memorise; "
                       "more data of this kind still helps.")
        elif verdict == "limited_by_sketch":
            out.append(f"The sketch cannot show more directions ({rule}): rerun with a larger "
                       "-k.")
        elif verdict == "limited_by_adapter":
            out.append(f"The adapter cannot hold the directions the data asks for ({rule}): "
                       "use a larger LoRA rank or more target modules.")
    if (spec is not None and spec.summary["rank_is_lower_bound"]
            and (det is None or det.summary["determinacy"] != "limited_by_sketch")):
        out.append(f"The rank reached the sketch dimension k = {spec.summary['sketch_dim']}: "
                   "rerun with a larger -k to see the true rank.")
    if not out:
        out.append("No blocking issue found: the data looks consistent for this model.")
    return out


def _run(system, results, config: AnalysisConfig) -> AnalyzerResult:
    return AnalyzerResult("advice", pd.DataFrame(index=pd.Index(system.ids, name="index")),
                          {"items": advise(results, config)})


ANALYZER = Analyzer(
    name="advice", run=_run, section="advice",
    after=("contradictions", "redundancy", "families", "volatility", "zones", "determinacy",
           "spectrum", "interference", "suspects"))
