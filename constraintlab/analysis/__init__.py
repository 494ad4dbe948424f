"""Stage 3: the constraint matrix -> findings (spectrum, pairs, redundancy, contradictions,
zones, interference against the data's null, growth curve, response map, token volatility,
variant families, layer map, suspects and the model's capability, training orders). Numba
kernels live in :mod:`constraintlab._kernels`, never here.

Every analyzer returns a typed :class:`AnalyzerResult` (per-example table, summary dict, pairs,
and named arrays for the analyzers after it: ``PairsResult.top_idx``,
``FamiliesResult.labels``...). :func:`analyze_constraints` checks its inputs once into a
:class:`ConstraintSystem` (with the shared :class:`TextView`) and runs every analyzer that
they allow (:func:`analyze_system`).
"""

from constraintlab.analysis.api import analyze_constraints, analyze_store, analyze_system
from constraintlab.analysis.config import AnalysisConfig
from constraintlab.analysis.contradictions import (
    ContradictionsResult,
    analyze_contradictions,
    compare_targets,
)
from constraintlab.analysis.determinacy import (
    DeterminacyResult,
    analyze_determinacy,
    determinacy_verdict,
)
from constraintlab.analysis.families import FamiliesResult, analyze_families, family_coherence
from constraintlab.analysis.growth import (
    GROWTH_VERDICTS,
    analyze_growth,
    growth_curve,
    growth_verdict,
)
from constraintlab.analysis.interference import InterferenceResult, analyze_interference
from constraintlab.analysis.layers import LayersResult, analyze_layers
from constraintlab.analysis.null import NullReference, gaussian_null, null_reference
from constraintlab.analysis.order import (
    STRATEGIES,
    order_examples,
    order_report,
    path_metrics,
    volatility_proxy,
)
from constraintlab.analysis.pairs import analyze_pairs, blocked_pairs, unit_rows
from constraintlab.analysis.redundancy import RedundancyResult, analyze_redundancy
from constraintlab.analysis.response import analyze_response, zone_matrix
from constraintlab.analysis.result import PAIR_KINDS, AnalysisResults, AnalyzerResult
from constraintlab.analysis.spectrum import (
    SpectrumResult,
    analyze_spectrum,
    effective_rank,
    rank_tolerance,
)
from constraintlab.analysis.suspects import SuspectsResult, analyze_suspects
from constraintlab.analysis.system import ConstraintSystem
from constraintlab.analysis.text import TextView, components
from constraintlab.analysis.volatility import VolatilityResult, analyze_volatility, token_statistics
from constraintlab.analysis.zones import ZonesResult, analyze_zones, build_graph

__all__ = [
    "GROWTH_VERDICTS",
    "PAIR_KINDS",
    "STRATEGIES",
    "AnalysisConfig",
    "AnalysisResults",
    "AnalyzerResult",
    "ConstraintSystem",
    "ContradictionsResult",
    "DeterminacyResult",
    "FamiliesResult",
    "InterferenceResult",
    "LayersResult",
    "NullReference",
    "RedundancyResult",
    "SpectrumResult",
    "SuspectsResult",
    "TextView",
    "VolatilityResult",
    "ZonesResult",
    "analyze_constraints",
    "analyze_contradictions",
    "analyze_determinacy",
    "analyze_families",
    "analyze_growth",
    "analyze_interference",
    "analyze_layers",
    "analyze_pairs",
    "analyze_redundancy",
    "analyze_response",
    "analyze_spectrum",
    "analyze_store",
    "analyze_suspects",
    "analyze_system",
    "analyze_volatility",
    "analyze_zones",
    "blocked_pairs",
    "build_graph",
    "compare_targets",
    "components",
    "determinacy_verdict",
    "effective_rank",
    "family_coherence",
    "gaussian_null",
    "growth_curve",
    "growth_verdict",
    "null_reference",
    "order_examples",
    "order_report",
    "path_metrics",
    "rank_tolerance",
    "token_statistics",
    "unit_rows",
    "volatility_proxy",
    "zone_matrix",
]
