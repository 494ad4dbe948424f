"""Stage 3: the constraint matrix -> findings (spectrum, pairs, redundancy, contradictions,
zones, response map, token volatility, variant families, layer map, training orders). Numba
kernels live in :mod:`constraintlab._kernels`, never here.

Every analyzer returns an :class:`AnalyzerResult` (per-example table, summary dict, pairs);
:func:`analyze_constraints` runs all of them that the inputs allow.
"""

from constraintlab.analysis.api import analyze_constraints, analyze_store
from constraintlab.analysis.config import AnalysisConfig
from constraintlab.analysis.contradictions import analyze_contradictions, compare_targets
from constraintlab.analysis.families import analyze_families, family_coherence
from constraintlab.analysis.layers import analyze_layers
from constraintlab.analysis.order import (
    STRATEGIES,
    order_examples,
    order_report,
    path_metrics,
    volatility_proxy,
)
from constraintlab.analysis.pairs import analyze_pairs, blocked_pairs, unit_rows
from constraintlab.analysis.redundancy import analyze_redundancy
from constraintlab.analysis.response import analyze_response, zone_matrix
from constraintlab.analysis.result import PAIR_KINDS, AnalysisResults, AnalyzerResult
from constraintlab.analysis.spectrum import (
    analyze_spectrum,
    determinacy_verdict,
    effective_rank,
    rank_tolerance,
)
from constraintlab.analysis.volatility import analyze_volatility, token_statistics
from constraintlab.analysis.zones import analyze_zones, build_graph, export_graphml

__all__ = [
    "PAIR_KINDS",
    "STRATEGIES",
    "AnalysisConfig",
    "AnalysisResults",
    "AnalyzerResult",
    "analyze_constraints",
    "analyze_contradictions",
    "analyze_families",
    "analyze_layers",
    "analyze_pairs",
    "analyze_redundancy",
    "analyze_response",
    "analyze_spectrum",
    "analyze_store",
    "analyze_volatility",
    "analyze_zones",
    "blocked_pairs",
    "build_graph",
    "compare_targets",
    "determinacy_verdict",
    "effective_rank",
    "export_graphml",
    "family_coherence",
    "order_examples",
    "order_report",
    "path_metrics",
    "rank_tolerance",
    "token_statistics",
    "unit_rows",
    "volatility_proxy",
    "zone_matrix",
]
