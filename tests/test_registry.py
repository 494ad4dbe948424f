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
