"""ConstraintSystem: checked once at the boundary (InputError), built from a store; the typed
results the orchestrator wires, and the verdict as its own result."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from tolerance import assert_close_tree

from constraintlab.analysis import (
    AnalysisConfig,
    ConstraintSystem,
    ContradictionsResult,
    DeterminacyResult,
    FamiliesResult,
    VolatilityResult,
    ZonesResult,
    analyze_constraints,
    analyze_system,
    determinacy_verdict,
)
from constraintlab.encode.store import TokenProfiles
from constraintlab.errors import InputError
from constraintlab.io.example import Example, Message

Q = "Tom has {a} apples and buys {b} more at the market on a sunny Saturday. How many now?"


def ex(i: int, prompt: str, reply: str) -> Example:
    return Example(index=i, line=i + 1, source="<records>", schema="alpaca",
                   messages=(Message("user", prompt), Message("assistant", reply)),
                   targets=(1,), chat=False, raw={})


def examples() -> list[Example]:
    """Two contradicting pairs (same question, other answer), a variant family, fillers."""
    out = [ex(0, Q.format(a=3, b=4), "3 + 4 = 7\n#### 7"),
           ex(1, Q.format(a=3, b=4), "3 + 4 = 8\n#### 8"),
           ex(2, Q.format(a=5, b=6), "5 + 6 = 11\n#### 11"),
           ex(3, Q.format(a=5, b=6), "5 + 6 = 12\n#### 12")]
    base = "Write one friendly sentence that invites the whole team to the garden party on Friday"
    variants = [base, base.replace("friendly", "**friendly**"), base + " evening",
                base.replace("whole", "entire")]
    out += [ex(4 + k, v, "Join us in the garden on Friday!") for k, v in enumerate(variants)]
    out += [ex(8 + k, f"Name the capital of country number {k}.", f"City {k}") for k in range(8)]
    return [Example(index=10 * e.index, line=e.line, source=e.source, schema=e.schema,
                    messages=e.messages, targets=e.targets, chat=e.chat, raw={}) for e in out]


def tokens_for(n: int, seed: int = 0) -> TokenProfiles:
    rng = np.random.default_rng(seed)
    lens = rng.integers(1, 6, n)
    return TokenProfiles.from_lists([rng.random(m) * 3 for m in lens],
                                    [rng.integers(0, 50, m) for m in lens],
                                    [rng.integers(0, 99, m) for m in lens],
                                    [[f"t{j}" for j in range(m)] for m in lens])


def test_build_checks_once_with_input_errors():
    exs = examples()
    n = len(exs)
    X = np.ones((n, 4))
    good = ConstraintSystem.build(X, examples=exs)
    assert good.n == n and list(good.ids) == [e.index for e in exs]
    assert good.features.dtype == np.float64 and good.text is not None
    assert ConstraintSystem.build(np.ones((3, 2), np.int64)).features.dtype == np.float32
    cases = [
        (dict(), "nothing to analyse"),
        (dict(features=np.ones((n + 1, 4)), examples=exs), f"{n + 1} rows but there are {n}"),
        (dict(features=X, input_factors=np.ones((n, 3))), "both"),
        (dict(features=X, input_factors=np.ones((n, 3)), output_factors=np.ones((n - 1, 3))),
         "rows"),
        (dict(features=X, ids=[1] * n), "distinct"),
        (dict(features=np.ones((5,))), "2-D"),
        (dict(features=X, tokens=tokens_for(n)), "grad_norm and vocab_size"),
        (dict(features=X, tokens=tokens_for(n - 1), grad_norm=np.ones(n), vocab_size=10),
         "token profiles cover"),
        (dict(features=X, tokens=tokens_for(n), grad_norm=np.ones(n + 2), vocab_size=10),
         "grad_norm has shape"),
        (dict(features=X, tokens=tokens_for(n), grad_norm=np.ones(n), vocab_size=1),
         "vocab_size must be >= 2"),
        (dict(features=X, energy=np.ones((n, 3)),
              modules=pd.DataFrame({"layer": [0, 1], "kind": ["a", "a"],
                                    "column": ["e0", "e1"]})), "modules has 2 rows"),
    ]
    for kwargs, msg in cases:
        with pytest.raises(InputError, match=msg):
            ConstraintSystem.build(**kwargs)
    bad = np.ones((n, 3))
    bad[[2, 5]] = np.nan
    with pytest.raises(InputError) as err:
        ConstraintSystem.build(X, energy=bad)
    assert "<energy>:3" in str(err.value) and "<energy>:6" in str(err.value)


def test_from_store_equals_build_on_the_same_arrays():
    rng = np.random.default_rng(1)
    exs = examples()
    n = len(exs)
    ids = np.array([e.index for e in exs])
    energy = rng.random((n, 2))
    table = pd.DataFrame({"index": ids, "grad_norm": rng.random(n) + 0.5,
                          "energy:0:q": energy[:, 0], "energy:1:q": energy[:, 1]})
    modules = pd.DataFrame({"layer": [0, 1], "kind": ["q", "q"],
                            "column": ["energy:0:q", "energy:1:q"]})
    store = SimpleNamespace(features=rng.standard_normal((n, 8)).astype(np.float32),
                            input_factors=rng.standard_normal((n, 6)).astype(np.float32),
                            output_factors=rng.standard_normal((n, 6)).astype(np.float32),
                            n_params=1234, table=table, tokens=tokens_for(n), modules=modules,
                            manifest={"vocab_size": 50})
    s = ConstraintSystem.from_store(store, examples=exs)
    assert s.n_params == 1234 and s.vocab_size == 50 and s.has_layers and s.has_factors
    np.testing.assert_array_equal(s.ids, ids)
    np.testing.assert_array_equal(s.energy, energy)
    np.testing.assert_array_equal(s.grad_norm, table["grad_norm"].to_numpy())
    with pytest.raises(InputError, match="not the ones of the store"):
        ConstraintSystem.from_store(store, examples=exs[::-1])
    via_store = analyze_system(s)
    direct = analyze_constraints(store.features, examples=exs,
                                 input_factors=store.input_factors,
                                 output_factors=store.output_factors, n_params=1234,
                                 tokens=store.tokens, grad_norm=table["grad_norm"].to_numpy(),
                                 vocab_size=50, energy=s.energy, modules=modules)
    pd.testing.assert_frame_equal(via_store.table(), direct.table())
    assert_close_tree(via_store.summary(), direct.summary())


def test_typed_results_carry_what_the_next_analyzers_read():
    exs = examples()
    n = len(exs)
    rng = np.random.default_rng(2)
    X = rng.standard_normal((n, 16))
    out = analyze_constraints(X, examples=exs, tokens=tokens_for(n), grad_norm=rng.random(n),
                              vocab_size=50, n_params=10_000)
    pos = {int(e.index): i for i, e in enumerate(exs)}
    con = out.contradictions
    assert isinstance(con, ContradictionsResult)
    assert con.positions == {(pos[p["a"]], pos[p["b"]]) for p in con.pairs}
    assert con.positions == {(0, 1), (2, 3)}
    fam = out.families
    assert isinstance(fam, FamiliesResult)
    np.testing.assert_array_equal(fam.labels, fam.table["family"].to_numpy())
    assert set(np.flatnonzero(fam.labels >= 0)) == {4, 5, 6, 7}
    vol = out.volatility
    assert isinstance(vol, VolatilityResult) and vol.components.shape == (n, 4)
    np.testing.assert_allclose(vol.score, vol.table["volatility"].to_numpy())
    w = np.asarray(AnalysisConfig().volatility_weights)
    np.testing.assert_allclose(vol.components @ w / w.sum(), vol.score)
    zones = out.zones
    assert isinstance(zones, ZonesResult)
    np.testing.assert_array_equal(zones.labels, zones.table["zone"].to_numpy())
    assert zones.ranked == [z["id"] for z in zones.summary["zones"]]
    # the verdict: its own result, from the growth curve and the contradictions
    det = out.determinacy
    assert isinstance(det, DeterminacyResult) and det.table.shape == (n, 0)
    ref = determinacy_verdict(out.growth.summary, n=n,
                              n_contradictions=con.summary["count"],
                              interference_summary=out.interference.summary)
    assert det.summary == ref and det.verdict == ref["determinacy"] == out.growth.summary["verdict"]
    assert det.inconsistent == (ref["consistency"] == "inconsistent")
    assert out.summary()["determinacy"] == ref
    assert "determinacy" not in out.spectrum.summary   # the verdict is its own result


def test_a_system_built_for_other_settings_gets_its_own_text_view():
    exs = examples()
    strict = AnalysisConfig(family_jaccard=0.95, minhash_threshold=0.95)
    s = ConstraintSystem.build(examples=exs)            # default settings
    a = analyze_system(s, config=strict)
    b = analyze_constraints(examples=exs, config=strict)
    assert_close_tree(a.summary(), b.summary())
    assert a.families.summary["count"] == 0
