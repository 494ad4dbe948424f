"""Training orders: permutations, the gradual rule against a brute-force loop, path metrics
against direct formulas, and the ``order`` command on a GSM8K sample with a tiny model."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tiny_models import build_model, gsm8k_records

import constraintlab
from constraintlab.analysis import AnalysisConfig
from constraintlab.analysis.order import (
    STRATEGIES,
    order_examples,
    order_report,
    order_units,
    path_metrics,
    volatility_proxy,
)
from constraintlab.api import order_report_path, record_lines
from constraintlab.cli import order as order_cli
from constraintlab.cli.main import main
from constraintlab.errors import ConfigError, ConstraintlabError


def clustered(n: int = 120, k: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, k))
    X = centres[rng.integers(0, 6, n)] + 0.4 * rng.normal(size=(n, k))
    return X.astype(np.float32), rng.gamma(2.0, size=n)


def brute_gradual(X: np.ndarray, vol: np.ndarray, w: float) -> list[int]:
    """The gradual rule without families, written as a plain loop over every candidate."""
    n = len(X)
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    q = np.argsort(np.argsort(vol)) / (n - 1)  # no ties in continuous volatility
    cur = int(np.argmin(vol))
    path, left = [cur], set(range(n)) - {cur}
    while left:
        best = min(left, key=lambda v: ((1 - float(U[cur] @ U[v])) + w * q[v], v))
        path.append(best)
        left.remove(best)
        cur = best
    return path


@pytest.mark.parametrize("w", [0.0, 0.5, 3.0])
def test_gradual_follows_its_rule(w) -> None:
    X, vol = clustered(50)
    got = order_examples(X, vol, strategy="gradual",
                         config=AnalysisConfig(order_volatility_weight=w))
    assert got.tolist() == brute_gradual(X.astype(np.float64), vol, w)


def test_gradual_scan_without_the_gram_matrix_gives_the_same_path() -> None:
    from constraintlab.analysis.order import _greedy, _quantiles
    from constraintlab.analysis.pairs import unit_rows

    X, vol = clustered(200)
    Xn, _ = unit_rows(X)
    qw = 0.5 * _quantiles(vol)
    with_gram = _greedy(Xn, qw, vol)
    assert _greedy(Xn, qw, vol, gram_max_units=0).tolist() == with_gram.tolist()
    assert with_gram.tolist() == brute_gradual(X.astype(np.float64), vol, 0.5)


def test_every_strategy_is_a_permutation_and_keeps_families_and_zones_together() -> None:
    X, vol = clustered(120)
    rng = np.random.default_rng(1)
    zones = rng.integers(-1, 5, 120)
    families = np.full(120, -1)
    families[[3, 40, 77]] = 0
    families[[10, 11]] = 1
    for strategy in ("gradual", "zones", "random"):
        o = order_examples(X, vol, strategy=strategy, zones=zones, families=families, seed=4)
        assert sorted(o.tolist()) == list(range(120)), strategy
        if strategy == "random":
            continue
        pos = np.empty(120, int)
        pos[o] = np.arange(120)
        for members in ([3, 40, 77], [10, 11]):
            p = sorted(pos[members])
            assert p[-1] - p[0] == len(members) - 1, (strategy, members)
            # inside a family: ascending volatility
            assert list(o[p[0]:p[-1] + 1]) == sorted(members, key=lambda i: vol[i])
    # zones: contiguous, by mean volatility ascending, outliers last (family 0 spans zones:
    # it goes with its majority zone, so check on the zone each unit was placed in)
    o = order_examples(X, vol, strategy="zones", zones=zones, seed=4)
    seq = zones[o]
    blocks = [int(seq[0])] + [int(b) for a, b in itertools.pairwise(seq) if a != b]
    assert len(blocks) == len(set(blocks)) == len(np.unique(zones))
    assert blocks[-1] == -1
    means = [vol[zones == z].mean() for z in blocks[:-1]]
    assert means == sorted(means)
    # inside each zone: the gradual rule restarted at the zone's lowest-volatility example
    for z in blocks:
        members = np.flatnonzero(zones == z)
        assert o[list(seq).index(z)] == members[np.argmin(vol[members])]


def test_random_order_is_the_seeded_permutation() -> None:
    X, vol = clustered(80)
    a = order_examples(X, vol, strategy="random", seed=11)
    b = order_examples(X, vol, strategy="random", seed=11)
    assert a.tolist() == b.tolist() == np.random.default_rng(11).permutation(80).tolist()
    assert a.tolist() != order_examples(X, vol, strategy="random", seed=12).tolist()


def test_path_metrics_match_direct_formulas() -> None:
    X, vol = clustered(41)
    X[7] = 0.0  # a zero row is at distance 1 from any unit row
    o = np.random.default_rng(2).permutation(41)
    m = path_metrics(X, vol, o)
    X64 = X.astype(np.float64)
    nrm = np.linalg.norm(X64, axis=1, keepdims=True)
    U = np.divide(X64, nrm, out=np.zeros_like(X64), where=nrm > 0)[o]
    steps = [float(np.linalg.norm(U[t + 1] - U[t])) for t in range(40)]
    assert m["path_length"] == pytest.approx(sum(steps), rel=1e-6)
    assert m["max_step"] == pytest.approx(max(steps), rel=1e-6)
    assert m["max_step_at"] == int(np.argmax(steps)) + 1
    assert m["mean_step"] == pytest.approx(sum(steps) / 40, rel=1e-6)
    v = vol[o]
    ranks = np.argsort(np.argsort(v))
    assert m["volatility_spearman"] == pytest.approx(np.corrcoef(np.arange(41), ranks)[0, 1])
    # quarters of 41: 11, 10, 10, 10
    bounds = [0, 11, 21, 31, 41]
    assert m["volatility_by_quarter"] == pytest.approx(
        [v[a:b].mean() for a, b in itertools.pairwise(bounds)])
    # sorted by volatility: trend +1
    assert path_metrics(X, vol, np.argsort(vol))["volatility_spearman"] == pytest.approx(1.0)


def test_gradual_path_is_shorter_than_random_and_the_report_says_so() -> None:
    X, vol = clustered(150)
    o = order_examples(X, vol, strategy="gradual")
    rep = order_report(X, vol, o, strategy="gradual", seed=0, ids=np.arange(150) + 10)
    assert rep["chosen"]["path_length"] < 0.7 * rep["random"]["path_length"]
    assert rep["path_length_ratio"] == pytest.approx(
        rep["chosen"]["path_length"] / rep["random"]["path_length"])
    assert rep["order"] == (o + 10).tolist()
    assert rep["random"] == path_metrics(X, vol, np.random.default_rng(0).permutation(150))
    json.dumps(rep, allow_nan=False)


def test_volatility_proxy_prefers_score_then_loss_then_gradient_norm_then_feature_norm() -> None:
    X = np.array([[3.0, 4.0], [0.0, 1.0]])
    t = pd.DataFrame({"volatility": [0.7, 0.2], "loss": [0.5, 2.0], "grad_norm": [9.0, 8.0]})
    v, src = volatility_proxy(t, X)
    assert src == "volatility" and v.tolist() == [0.7, 0.2]
    t = t.drop(columns="volatility")
    assert volatility_proxy(t, X)[1] == "loss"
    t.loc[1, "loss"] = np.nan
    v, src = volatility_proxy(t, X)
    assert src == "grad_norm" and v.tolist() == [9.0, 8.0]
    v, src = volatility_proxy(None, X)
    assert src == "feature_norm" and v.tolist() == [5.0, 1.0]


def test_json_document_sources_are_written_as_one_object_per_line(tmp_path) -> None:
    recs = [{"question": "Ünïcode?", "answer": "ja"}, {"question": "b", "answer": "c"}]
    src = tmp_path / "d.json"
    src.write_text(json.dumps(recs, indent=2), encoding="utf-8")
    chunks, mode = record_lines(src, [1, 0])
    assert mode == "json objects"
    assert [json.loads(c) for c in chunks] == [recs[1], recs[0]]
    assert chunks[1] == (json.dumps(recs[0], ensure_ascii=False) + "\n").encode()


def test_units_merge_families_then_duplicate_sets() -> None:
    t = pd.DataFrame({"family": [0, 0, -1, -1, 1, np.nan],
                      "duplicate_set": [-1, 0, 0, 1, -1, 1]})
    # families keep their labels (0, 1); duplicate sets go after them (0 -> 2, 1 -> 3)
    assert order_units(t).tolist() == [0, 0, 2, 3, 1, 3]
    assert order_units(t.drop(columns="family")).tolist() == [-1, 0, 0, 1, -1, 1]
    assert order_units(t.drop(columns="duplicate_set")).tolist() == [0, 0, -1, -1, 1, -1]
    assert order_units(pd.DataFrame(index=range(3))) is None


def test_cli_strategies_are_the_library_ones() -> None:
    assert order_cli.STRATEGIES == STRATEGIES


# -- the command, on a GSM8K sample with a tiny model --------------------------------------

@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, shared_data) -> dict:
    root = tmp_path_factory.mktemp("order")
    model = build_model("qwen3", root / "model", hidden=32, layers=2)
    rows = gsm8k_records(48)
    lines = [json.dumps(r).encode() for r in rows]
    lines += [lines[3], lines[7]]                                   # exact duplicates
    lines.append(b'{"question": "broken", ')                        # invalid: left out
    lines.append(json.dumps({"question": "Caf\u00e9 costs 3 \u20ac?",
                             "answer": "3 \u20ac #### 3"}, ensure_ascii=False).encode()
                 + b"\r")                                           # CRLF + non-ASCII kept
    data = root / "data.jsonl"
    data.write_bytes(b"\n".join(lines) + b"\n")
    common = ["--model", str(model), "-k", "128", "--out", str(root / "report"),
              "--on-invalid", "skip", "-q"]
    out = {}
    for name, extra in (("gradual", ["--strategy", "gradual"]),
                        ("zones", ["--strategy", "zones"]),
                        ("random_a", ["--strategy", "random", "--order-seed", "3"]),
                        ("random_b", ["--strategy", "random", "--order-seed", "3"])):
        target = root / f"{name}.jsonl"
        assert main(["order", str(data), "-o", str(target), *common, *extra]) == 0
        out[name] = (target.read_bytes(),
                     json.loads(order_report_path(target).read_text()))
    return {"root": root, "lines": lines, "out": out}


def test_order_writes_every_valid_record_once_byte_identical(cli_run) -> None:
    valid = [ln for i, ln in enumerate(cli_run["lines"]) if i != 50]
    for name, (blob, rep) in cli_run["out"].items():
        written = blob.split(b"\n")
        assert written[-1] == b""
        assert sorted(written[:-1]) == sorted(valid), name
        assert rep["written"] == len(valid) == rep["n_examples"]
        assert rep["written_as"] == "original lines"
        assert rep["skipped_records"] == 1 and ":51:" in rep["skipped"][0]
        # the order report's ids name the written lines, in order (id = record index)
        assert [cli_run["lines"][i] for i in rep["order"]] == written[:-1]


def test_gradual_is_shorter_than_random_on_gsm8k_and_keeps_duplicates_together(cli_run) -> None:
    _, rep = cli_run["out"]["gradual"]
    assert rep["chosen"]["path_length"] < rep["random"]["path_length"]
    assert rep["volatility_source"] == "volatility"
    pos = {i: p for p, i in enumerate(rep["order"])}
    assert abs(pos[3] - pos[48]) == 1 and abs(pos[7] - pos[49]) == 1
    report = Path(cli_run["root"] / "report")
    table = pd.read_csv(report / "examples.csv", index_col="index")
    # the first unit is the one of lowest (mean) volatility; a family starts with its lowest
    unit = table["duplicate_set"].where(table["duplicate_set"] >= 0, -1 - table.index.to_series())
    unit_vol = table.groupby(unit)["volatility"].mean()
    start = table[unit == unit_vol.idxmin()]
    assert rep["order"][0] == start["volatility"].idxmin()


def test_same_seed_same_order(cli_run) -> None:
    a, rep_a = cli_run["out"]["random_a"]
    b, rep_b = cli_run["out"]["random_b"]
    assert a == b and rep_a["order"] == rep_b["order"]
    ids = [i for i in range(52) if i != 50]
    assert rep_a["order"] == [ids[p] for p in np.random.default_rng(3).permutation(51)]
    assert rep_a["chosen"] == rep_a["random"]


def test_zones_order_is_contiguous_by_zone(cli_run) -> None:
    _, rep = cli_run["out"]["zones"]
    table = pd.read_csv(cli_run["root"] / "report" / "examples.csv", index_col="index")
    seq = table.loc[rep["order"], "zone"].tolist()
    changes = [b for a, b in itertools.pairwise(seq) if a != b]
    assert len(changes) + 1 == len(set(seq))


def test_library_order_is_what_the_command_wrote(cli_run) -> None:
    """constraintlab.order (fed from the analysis results) == the CLI's files."""
    root = cli_run["root"]
    model = root / "model"
    result = constraintlab.order(root / "data.jsonl", "gradual", out=root / "report",
                                 model=str(model), k=128, on_invalid="skip")
    blob, rep = cli_run["out"]["gradual"]
    assert b"".join(result.records) == blob
    assert result.order == rep["order"] and result.written_as == "original lines"
    assert result.report.path == root / "report"
    assert {k: v for k, v in rep.items() if k != "output"} == {
        **result.summary, "source": str(root / "data.jsonl")}
    out = result.write(root / "again.jsonl")
    assert (root / "again.jsonl").read_bytes() == blob
    assert json.loads(out.read_text())["output"] == str(root / "again.jsonl")
    with pytest.raises(ConstraintlabError, match="overwrite the input"):
        result.write(root / "data.jsonl")
    with pytest.raises(ConfigError, match="unknown order strategy"):
        constraintlab.order(root / "data.jsonl", "shortest")


def test_library_order_of_records_in_memory(cli_run) -> None:
    rows = gsm8k_records(12)
    result = constraintlab.order(rows, "random", order_seed=5, model=str(cli_run["root"] / "model"),
                                 k=32)
    assert result.order == np.random.default_rng(5).permutation(12).tolist()
    assert result.written_as == "json objects" and result.report.path is None
    assert [json.loads(r) for r in result.records] == [rows[i] for i in result.order]
    assert result.summary["source"] == "<records>" and result.summary["report_dir"] is None
