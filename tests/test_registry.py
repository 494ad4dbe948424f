"""The analyzer registry: discovery and run order against a brute-force check."""

from __future__ import annotations

import itertools

import pytest

from constraintlab.analysis.registry import Analyzer, Metric, analyzers, order_analyzers


def _a(name: str, *after: str, metrics: dict | None = None) -> Analyzer:
    return Analyzer(name=name, run=lambda s, r, c: None, section=name, after=after,
                    metrics=metrics or {})


def _valid(order: list[str], deps: dict[str, set[str]]) -> bool:
    pos = {n: i for i, n in enumerate(order)}
    return all(pos[d] < pos[n] for n, ds in deps.items() for d in ds if d in pos)


def test_order_is_the_smallest_valid_order_by_name():
    found = [_a("zones", "pairs"), _a("pairs"), _a("advice", "zones", "spectrum"),
             _a("spectrum"), _a("layers", "zones", "missing")]
    deps = {a.name: set(a.after) for a in found}
    got = [a.name for a in order_analyzers(found)]
    # brute force: of all valid orders, the one a greedy smallest-name-first walk gives is the
    # lexicographically smallest sequence
    valid = [list(p) for p in itertools.permutations(deps) if _valid(list(p), deps)]
    assert got == min(valid)


def test_order_refuses_cycles_and_shared_names():
    with pytest.raises(ValueError, match="wait on each other"):
        order_analyzers([_a("a", "b"), _a("b", "a")])
    with pytest.raises(ValueError, match="two analyzers"):
        order_analyzers([_a("a"), _a("a")])
    with pytest.raises(ValueError, match="metric 'm'"):
        order_analyzers([_a("a", metrics={"m": Metric("x", "")}),
                         _a("b", metrics={"m": Metric("y", "")})])


def test_the_package_declares_each_analyzer_after_what_it_reads():
    found = analyzers()
    names = [a.name for a in found]
    assert {"spectrum", "pairs", "determinacy", "zones", "response", "advice"} <= set(names)
    assert _valid(names, {a.name: set(a.after) for a in found})
    assert names.index("determinacy") > names.index("contradictions")


# Every module of constraintlab/analysis (and its subpackages) is one analyzer or named
# machinery. The machinery, each with what it is; a module neither here nor declaring an
# analyzer fails, as does a name here that declares one or no longer exists.
MACHINERY = {
    "api": "runs the registry's analyzers on a checked system (analyze_constraints)",
    "blocks": "the one pass over the Gram blocks that every pair fold reads",
    "cleaning": "the clean decision from an analysis's table (the clean command)",
    "config": "AnalysisConfig, the analysis stage's settings",
    "lexical": "MinHash near duplicates, read by the shared TextView",
    "order": "training orders (the order command)",
    "registry": "Analyzer, Metric and the discovery of analyzers",
    "result": "AnalyzerResult and AnalysisResults, the result shapes",
    "selection": "budgeted selection (the select command)",
    "system": "ConstraintSystem, the checked input of every analyzer",
    "text": "text normalisation and the shared TextView",
    "torch_pass": "the Gram pass on a torch device, beside blocks",
    "suspects.reach": "the suspects analyzer's capability statement",
    "suspects.rules": "the suspects analyzer's text rules",
    "suspects.signals": "the suspects analyzer's model signals",
    "suspects.stats": "the suspects analyzer's robust z and p-value combination",
}
# modules allowed to declare ANALYZERS (several analyzers), each with why one module; none now
SEVERAL: dict[str, str] = {}


def _roles(modules: dict, machinery: dict, several: dict) -> tuple[list[str], list]:
    """``(problems, declared analyzers)`` of ``{name: module}`` against the two lists."""
    problems, declared = [], []
    for name, mod in sorted(modules.items()):
        one = getattr(mod, "ANALYZER", None)
        many = tuple(getattr(mod, "ANALYZERS", None) or ())
        found = [*many, *([one] if one is not None else [])]
        declared += found
        if name in machinery:
            if found:
                problems.append(f"{name}: listed as machinery but declares "
                                f"{[a.name for a in found]}")
        elif not found:
            problems.append(f"{name}: declares no analyzer and is not listed as machinery")
        elif many and (one is not None or name not in several):
            problems.append(f"{name}: declares {len(found)} analyzers "
                            f"{[a.name for a in found]}; one analyzer a module")
        elif not isinstance(one if one is not None else many[0], Analyzer):
            problems.append(f"{name}: ANALYZER is not an Analyzer")
    for name in sorted(set(machinery) - set(modules)):
        problems.append(f"{name}: listed as machinery, no such module")
    return problems, declared


def _analysis_modules() -> dict:
    import importlib
    import pkgutil

    import constraintlab.analysis as pkg

    prefix = pkg.__name__ + "."
    return {info.name[len(prefix):]: importlib.import_module(info.name)
            for info in pkgutil.walk_packages(pkg.__path__, prefix)}


def test_every_analysis_module_is_one_analyzer_or_named_machinery():
    modules = _analysis_modules()
    assert {"suspects", "suspects.signals", "null", "determinacy"} <= set(modules)
    problems, declared = _roles(modules, MACHINERY, SEVERAL)
    assert problems == []
    # what the modules declare is what the registry runs: one object each, none left out (an
    # analyzer declared in a sub-module the registry does not scan would fail here)
    assert sorted(map(id, declared)) == sorted(map(id, analyzers()))


def test_module_roles_refuse_two_analyzers_and_unlisted_modules():
    import types

    def mod(**attrs):
        m = types.ModuleType("m")
        m.__dict__.update(attrs)
        return m

    a, b = _a("a"), _a("b")
    ok, _ = _roles({"x": mod(ANALYZER=a), "h": mod()}, {"h": ""}, {})
    assert ok == []
    two, _ = _roles({"x": mod(ANALYZERS=(a, b))}, {}, {})
    assert two == ["x: declares 2 analyzers ['a', 'b']; one analyzer a module"]
    both, _ = _roles({"x": mod(ANALYZER=a, ANALYZERS=(b,))}, {}, {"x": "why"})
    assert len(both) == 1 and "2 analyzers" in both[0]
    assert _roles({"x": mod(ANALYZERS=(a, b))}, {}, {"x": "why"})[0] == []
    assert _roles({"y": mod()}, {}, {})[0] == [
        "y: declares no analyzer and is not listed as machinery"]
    assert _roles({"h": mod(ANALYZER=a)}, {"h": ""}, {})[0] == [
        "h: listed as machinery but declares ['a']"]
    assert _roles({}, {"gone": ""}, {})[0] == ["gone: listed as machinery, no such module"]
