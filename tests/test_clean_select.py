"""``clean`` and ``select``: the decision rules against hand-built tables and brute-force loops,
the selection rankings against numpy/scipy references, and both commands on a GSM8K sample with
a tiny model (byte-identical lines, decisions consistent with the report's own table, the
selection recomputed from the feature stores)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from tiny_models import build_model, gsm8k_records

import constraintlab
from constraintlab.actions import decisions_path, selection_report_path
from constraintlab.analysis import cleaning, selection
from constraintlab.analysis.cleaning import CleanConfig, model_evidence, plan_cleaning
from constraintlab.analysis.selection import (
    SelectConfig,
    budget_count,
    herding_ranking,
    leverage_scores,
    pivot_ranking,
    rank_rows,
    target_scores,
)
from constraintlab.cli import clean as clean_cli
from constraintlab.cli import select as select_cli
from constraintlab.cli.main import main
from constraintlab.errors import ConfigError


# -- decisions on hand-built tables ------------------------------------------------------------
def table(n: int, **cols) -> pd.DataFrame:
    base = {"suspect_evidence": np.zeros(n), "suspect_reasons": [""] * n,
            "is_redundant": np.zeros(n, bool), "duplicate_set": np.full(n, -1),
            "is_duplicate_keeper": np.zeros(n, bool), "family": np.full(n, -1),
            "is_family_base": np.zeros(n, bool)}
    base.update(cols)
    return pd.DataFrame(base, index=pd.Index(np.arange(100, 100 + n), name="index"))


def test_suspects_dropped_exactly_at_the_level_computed_by_a_loop() -> None:
    rng = np.random.default_rng(0)
    ev = rng.uniform(0.0, 5.0, 200)
    t = table(200, suspect_evidence=ev)
    for level in (None, 0.9, 0.999):
        dec, summ = plan_cleaning(t, config=CleanConfig(suspect_level=level))
        lvl = 0.99 if level is None else level
        # reference: the score as the report shows it, 1 - 10^-evidence, against the level
        want = [i for i in range(200) if 1.0 - 10.0 ** (-ev[i]) >= lvl]
        got = [i for i, d in enumerate(dec) if d["action"] == "drop"]
        assert got == want and all(dec[i]["reason"] == "suspect" for i in got)
        assert summ["dropped"] == len(want) and summ["suspect_level"] == lvl
        assert [d["row"] for d in dec] == list(range(100, 300))
    dec, summ = plan_cleaning(t, config=CleanConfig(drop_suspects=False))
    assert summ["dropped"] == 0 and summ["suspect_level"] is None


def test_contradiction_rule_is_taken_out_of_the_suspect_score() -> None:
    reasons = ["contradiction", "contradiction;false_arithmetic", "contradiction",
               "surprising_ending;contradiction", ""]
    ev = np.array([4.5, 4.5, 5.5, 2.5, 1.0])
    got = model_evidence(ev, reasons, 0.001)
    assert got.tolist() == pytest.approx([1.5, 4.5, 2.5, 0.0, 1.0])
    t = table(5, suspect_evidence=ev, suspect_reasons=reasons)
    dec, _ = plan_cleaning(t, [(0, 1), (2, 3)])
    # 1 (a second rule) and 2 (model evidence alone above 2) are dropped as suspects: their
    # pairs are settled, the partners kept; nothing is left for review
    assert [d["action"] for d in dec] == ["keep", "drop", "drop", "keep", "keep"]
    assert dec[0]["evidence"]["contradiction_settled_by_dropping"] == [101]
    t2 = t.assign(suspect_reasons=["contradiction"] * 4 + [""],
                  suspect_evidence=[4.5, 4.5, 3.5, 2.5, 1.0])
    dec, summ = plan_cleaning(t2, [(0, 1), (2, 3)])
    assert [d["action"] for d in dec] == ["review"] * 4 + ["keep"]
    assert dec[2]["evidence"]["contradicts"] == [103] and summ["review"] == 4


def test_contradiction_policies() -> None:
    ev = np.array([0.5, 0.2, 1.0, 0.1, 0.3, 0.0])
    t = table(6, suspect_evidence=ev)
    pairs = [(0, 1), (1, 2), (3, 4)]            # groups {0, 1, 2} and {3, 4}
    dec, _ = plan_cleaning(t, pairs, config=CleanConfig(contradictions="keep-less-suspect"))
    # the least suspect member of each group stays (brute force: argmin of the evidence)
    for group in ([0, 1, 2], [3, 4]):
        keep = min(group, key=lambda i: (ev[i], i))
        for i in group:
            assert dec[i]["action"] == ("keep" if i == keep else "drop")
    assert dec[0]["evidence"]["kept"] == 101
    dec, _ = plan_cleaning(t, pairs, config=CleanConfig(contradictions="drop"))
    assert [d["action"] for d in dec] == ["drop"] * 5 + ["keep"]
    assert dec[1]["evidence"]["contradicts"] == [100, 102]


def test_duplicates_follow_the_exposed_keeper_and_families_kept_unless_asked() -> None:
    n = 8
    dset = np.array([-1, 0, 0, 1, 0, 1, 2, 2])
    keeper = np.array([False, False, True, True, False, False, True, False])   # not first
    redundant = (dset >= 0) & ~keeper
    fam = np.array([-1, -1, -1, -1, -1, -1, 3, 3])
    base = np.array([False] * 6 + [False, True])
    ev = np.zeros(n)
    ev[3] = 6.0                                 # the keeper of set 1 is a suspect
    t = table(n, is_redundant=redundant, duplicate_set=dset, is_duplicate_keeper=keeper,
              suspect_evidence=ev, family=fam, is_family_base=base)
    dec, summ = plan_cleaning(t)
    acts = [(d["action"], d["reason"]) for d in dec]
    assert acts[1] == ("drop", "duplicate") and dec[1]["evidence"]["keeper"] == 102
    assert acts[4] == ("drop", "duplicate") and acts[2] == ("keep", "")
    assert acts[3] == ("drop", "suspect")
    assert acts[5] == ("review", "duplicate_keeper_dropped")
    assert acts[7] == ("drop", "duplicate") and acts[6] == ("keep", "")
    assert summ["by_reason"] == {"drop:duplicate": 3, "drop:suspect": 1,
                                 "review:duplicate_keeper_dropped": 1}
    # families: kept by default; with "base" the non-base members go (set 2 not a duplicate
    # here, so the family rule decides)
    t2 = t.assign(is_redundant=False, duplicate_set=-1, is_duplicate_keeper=False)
    assert [d["action"] for d in plan_cleaning(t2)[0]][6:] == ["keep", "keep"]
    dec, _ = plan_cleaning(t2, config=CleanConfig(families="base"))
    assert (dec[6]["action"], dec[6]["reason"]) == ("drop", "family_variant")
    assert dec[6]["evidence"]["base"] == 107 and dec[7]["action"] == "keep"
    dec, _ = plan_cleaning(t, config=CleanConfig(drop_duplicates=False))
    assert sum(d["reason"] == "duplicate" for d in dec) == 0


def test_missing_findings_are_not_measured_and_decide_nothing() -> None:
    t = pd.DataFrame(index=pd.Index([0, 1, 2], name="index"))
    dec, summ = plan_cleaning(t, [(0, 1)])
    assert summ["not_measured"] == ["suspects", "redundancy", "families"]
    assert [d["action"] for d in dec] == ["review", "review", "keep"]


def test_config_errors() -> None:
    for bad in ({"suspect_level": 0.0}, {"suspect_level": 1.5}, {"contradictions": "x"},
                {"families": "one"}):
        with pytest.raises(ConfigError):
            CleanConfig(**bad)
    for bad in ({"budget": 0.0}, {"budget": 1.5}, {"budget": 0}, {"budget": True},
                {"method": "random"}, {"target_score": "sum"}, {"leverage_energy": 0.0}):
        with pytest.raises(ConfigError):
            SelectConfig(**bad)


def test_cli_choices_are_the_library_ones() -> None:
    assert clean_cli.CONTRADICTION_POLICIES == cleaning.CONTRADICTION_POLICIES
    assert clean_cli.FAMILY_POLICIES == cleaning.FAMILY_POLICIES
    assert select_cli.METHODS == selection.METHODS
    assert select_cli.TARGET_SCORES == selection.TARGET_SCORES
    assert select_cli.DEFAULT_METHOD == selection.SelectConfig().method


# -- selection against references --------------------------------------------------------------
def unit(X: np.ndarray) -> np.ndarray:
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def greedy_residual(U: np.ndarray, steps: int) -> list[int]:
    """Brute-force Businger-Golub on unit rows: start at the row most aligned with the top
    singular direction, then repeatedly take the row with the largest residual norm after
    projecting out the rows taken (Gram-Schmidt)."""
    v1 = np.linalg.svd(U)[2][0]
    R = U.copy()
    chosen: list[int] = []
    for step in range(steps):
        norms = np.linalg.norm(R, axis=1)
        norms[chosen] = -1.0
        a = np.abs(U @ v1)                      # ties: the first row
        j = int(np.flatnonzero(a >= a.max() - 1e-12)[0]) if step == 0 else int(np.argmax(norms))
        chosen.append(j)
        q = R[j] / np.linalg.norm(R[j])
        R = R - np.outer(R @ q, q)
    return chosen


def test_pivot_ranking_is_the_greedy_residual_rule() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 64)) * rng.uniform(0.1, 10.0, size=(40, 1))   # norms differ
    got = pivot_ranking(X)
    assert got.tolist() == greedy_residual(unit(X), 40)
    assert sorted(got.tolist()) == list(range(40))


def test_pivot_ranking_starts_a_new_round_past_the_rank() -> None:
    rng = np.random.default_rng(2)
    B = rng.normal(size=(6, 16))
    X = np.vstack([B, B[[0, 2]] * 3.0, rng.normal(size=(4, 6)) @ B])       # rank 6, N 12
    got = pivot_ranking(X)
    assert sorted(got.tolist()) == list(range(12))
    first = got[:6].tolist()
    assert first == greedy_residual(unit(X), 6)
    assert np.linalg.matrix_rank(X[first]) == 6
    # the second round is the same rule on the rows left
    rest = np.setdiff1d(np.arange(12), first)
    r2 = min(6, len(rest))
    assert got[6:6 + r2].tolist() == rest[greedy_residual(unit(X[rest]), r2)].tolist()


def brute_herding(U: np.ndarray, steps: int, mu: np.ndarray | None = None) -> list[int]:
    """Kernel herding by its definition: each step the row (not yet taken) that brings the
    mean of the taken rows closest to ``mu`` (ties: the first row)."""
    mu = U.mean(0) if mu is None else mu
    total = np.zeros(U.shape[1])
    chosen: list[int] = []
    for t in range(steps):
        dist = [np.linalg.norm(mu - (total + U[j]) / (t + 1)) if j not in chosen else np.inf
                for j in range(len(U))]
        j = int(np.argmin(dist))
        chosen.append(j)
        total += U[j]
    return chosen


def test_herding_ranking_is_the_greedy_mean_matching_rule() -> None:
    rng = np.random.default_rng(4)
    X = rng.normal(size=(60, 12)) * rng.uniform(0.1, 10.0, size=(60, 1)) + 0.3
    X[7] = 0.0                                                  # a zero row stays zero
    got = herding_ranking(X)
    U = unit(np.where(np.linalg.norm(X, axis=1, keepdims=True) > 0, X, 1.0))
    U[7] = 0.0
    assert got.tolist() == brute_herding(U, 60)
    # the point of it: the chosen mean is closer to the data's than a random subset's
    mu = U.mean(0)
    for b in (5, 15, 30):
        rand = [np.linalg.norm(U[rng.choice(60, b, replace=False)].mean(0) - mu)
                for _ in range(200)]
        assert np.linalg.norm(U[got[:b]].mean(0) - mu) < np.quantile(rand, 0.05)


def test_herding_in_blocks_herds_each_block_towards_the_global_mean() -> None:
    rng = np.random.default_rng(5)
    X = rng.normal(size=(50, 6)) + 0.5
    U = unit(X)
    got = herding_ranking(X, block_rows=16, seed=3)
    assert sorted(got.tolist()) == list(range(50))
    blocks = np.array_split(np.random.default_rng(3).permutation(50), 4)
    mu = U.mean(0)
    orders = []
    for b, idx in enumerate(blocks):
        idx = np.sort(idx)
        o = idx[brute_herding(U[idx], len(idx), mu)]
        orders += [((t + 0.5) / len(idx), b, int(r)) for t, r in enumerate(o)]
    assert got.tolist() == [r for _, _, r in sorted(orders)]
    assert herding_ranking(X, block_rows=16, seed=3).tolist() == got.tolist()   # seeded
    assert herding_ranking(X, block_rows=16, seed=4).tolist() != got.tolist()


def test_leverage_scores_match_the_hat_matrix_of_the_top_eigenvectors() -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(30, 8)) @ rng.normal(size=(8, 50)) + 0.05 * rng.normal(size=(30, 50))
    for energy in (0.5, 0.9, 1.0):
        got, r = leverage_scores(X, energy)
        U = unit(X)
        w, V = np.linalg.eigh(U @ U.T)              # eigenvectors of the row Gram matrix
        w, V = w[::-1], V[:, ::-1]
        share = np.cumsum(np.clip(w, 0, None)) / np.clip(w, 0, None).sum()
        r_ref = int(np.argmax(share >= energy - 1e-12)) + 1
        assert r == r_ref
        H = V[:, :r] @ V[:, :r].T                  # projector on the top-r row space
        np.testing.assert_allclose(got, np.diag(H), atol=1e-8)
        assert got.sum() == pytest.approx(r)
    ranking, score, info = rank_rows(X, config=SelectConfig(method="leverage"))
    assert ranking.tolist() == sorted(range(30), key=lambda i: (-score[i], i))
    assert info["rank"] == leverage_scores(X, 0.9)[1]


def test_target_scores_are_the_mean_or_max_cosine_by_a_loop() -> None:
    rng = np.random.default_rng(4)
    X, T = rng.normal(size=(25, 12)), rng.normal(size=(5, 12))
    for how in ("mean", "max"):
        got = target_scores(X, T, how)
        ref = []
        for x in X:
            cos = [float(x @ t / (np.linalg.norm(x) * np.linalg.norm(t))) for t in T]
            ref.append(np.mean(cos) if how == "mean" else max(cos))
        np.testing.assert_allclose(got, ref, atol=1e-12)
        ranking, _score, info = rank_rows(X, target=T, config=SelectConfig(
            target_score=how, target_center=False))
        assert ranking.tolist() == sorted(range(25), key=lambda i: (-ref[i], i))
        assert info["method"] == f"target_{how}"


def test_centered_target_scores_remove_the_data_mean_direction_by_a_loop() -> None:
    rng = np.random.default_rng(6)
    common = rng.normal(size=12) * 3.0                       # a direction every row shares
    X, T = rng.normal(size=(25, 12)) + common, rng.normal(size=(5, 12)) + common
    mu = np.mean([x / np.linalg.norm(x) for x in X], axis=0)
    Xc = [x / np.linalg.norm(x) - mu for x in X]
    Tc = [t / np.linalg.norm(t) - mu for t in T]
    for how in ("mean", "max"):
        ref = []
        for x in Xc:
            cos = [float(x @ t / (np.linalg.norm(x) * np.linalg.norm(t))) for t in Tc]
            ref.append(np.mean(cos) if how == "mean" else max(cos))
        np.testing.assert_allclose(target_scores(X, T, how, center=True), ref, atol=1e-12)
        cfg = SelectConfig(target_score=how, target_center=True)
        ranking, _score, info = rank_rows(X, target=T, config=cfg)
        assert ranking.tolist() == sorted(range(25), key=lambda i: (-ref[i], i))
        assert info["method"] == f"target_{how}_centered"
    # uncentred, the shared direction makes every cosine large; centred, it is gone
    assert target_scores(X, T).min() > 0.5
    assert abs(np.mean(target_scores(X, T, center=True))) < 0.2


def test_budget_count() -> None:
    assert budget_count(0.25, 10) == 3 and budget_count(0.2, 10) == 2
    assert budget_count(0.01, 10) == 1 and budget_count(1.0, 10) == 10
    assert budget_count(7, 10) == 7 and budget_count(70, 10) == 10 and budget_count(0.5, 0) == 0
    assert select_cli.budget("0.3") == 0.3 and select_cli.budget("200") == 200
    assert select_cli.budget("1.0") == 1.0 and select_cli.budget("1") == 1
    for bad in ("0", "0.0", "1.5", "-3", "x", "2.5"):
        with pytest.raises(Exception, match="fraction"):
            select_cli.budget(bad)


# -- the commands, on a GSM8K sample with a tiny model ------------------------------------------
@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, shared_data) -> dict:
    root = tmp_path_factory.mktemp("clean")
    model = build_model("qwen3", root / "model", hidden=32, layers=2)
    rows = gsm8k_records(40)
    lines = [json.dumps(r).encode() for r in rows]
    lines += [lines[3], lines[7]]                                   # exact duplicates: 40, 41
    head, _ = rows[5]["answer"].rsplit("####", 1)
    lines.append(json.dumps({"question": rows[5]["question"],       # contradiction: 5 <-> 42
                             "answer": head + "#### 99999"}).encode())
    lines.append(b'{"question": "broken", ')                        # invalid: line 44
    lines.append(json.dumps({"question": "Caf\u00e9 costs 3 \u20ac?",
                             "answer": "3 \u20ac #### 3"}, ensure_ascii=False).encode()
                 + b"\r")                                           # CRLF + non-ASCII kept
    data = root / "data.jsonl"
    data.write_bytes(b"\n".join(lines) + b"\n")
    dev = root / "dev.jsonl"
    dev.write_text("".join(json.dumps(r) + "\n" for r in gsm8k_records(6, offset=100)))
    common = ["--model", str(model), "-k", "128", "--out", str(root / "report"),
              "--on-invalid", "skip", "--no-cache", "-q"]
    out = {}
    assert main(["clean", str(data), "-o", str(root / "clean.jsonl"), *common]) == 0
    assert main(["clean", str(data), "-o", str(root / "dry.jsonl"), "--dry-run", *common]) == 0
    assert main(["clean", str(data), "-o", str(root / "strict.jsonl"), "--contradictions",
                 "drop", "--suspect-level", "off", *common]) == 0
    assert main(["select", str(data), "-o", str(root / "sub.jsonl"), "--budget", "0.25",
                 *common]) == 0
    assert main(["select", str(data), "-o", str(root / "subqr.jsonl"), "--budget", "0.25",
                 "--method", "qr", *common]) == 0
    assert main(["select", str(data), "-o", str(root / "near.jsonl"), "--budget", "5",
                 "--target", str(dev), *common]) == 0
    for name in ("clean", "strict"):
        p = root / f"{name}.jsonl"
        out[name] = (p.read_bytes(), [json.loads(x) for x in
                                      decisions_path(p).read_text().splitlines()])
    for name in ("sub", "subqr", "near"):
        p = root / f"{name}.jsonl"
        out[name] = (p.read_bytes(), json.loads(selection_report_path(p).read_text()))
    stores = {}
    for d in (root / "report" / "features").iterdir():
        idx = pd.read_csv(d / "examples.csv")["index"].to_numpy()
        stores[len(idx)] = (idx, np.load(d / "features.npy").astype(np.float64))
    return {"root": root, "lines": lines, "out": out, "data": data, "dev": dev,
            "common": common, "stores": stores}


def test_clean_writes_the_kept_lines_byte_identical_with_one_decision_per_record(cli_run):
    blob, dec = cli_run["out"]["clean"]
    lines = cli_run["lines"]
    assert len(dec) == len(lines) and [d["line"] for d in dec] == list(range(1, 46))
    inv = [d for d in dec if d["action"] == "invalid"]
    assert len(inv) == 1 and inv[0]["line"] == 44
    kept = [d for d in dec if d["action"] in ("keep", "review")]
    assert blob == b"".join(lines[d["line"] - 1] + b"\n" for d in kept)
    assert lines[44] + b"\n" in blob                                # CRLF, non-ASCII: as is
    assert all(d["row"] == d["line"] - 1 for d in dec)
    assert not (cli_run["root"] / "dry.jsonl").exists()
    assert not decisions_path(cli_run["root"] / "dry.jsonl").exists()


def test_clean_decisions_agree_with_the_report_table(cli_run):
    _, dec = cli_run["out"]["clean"]
    by_row = {d["row"]: d for d in dec if d["action"] != "invalid"}
    t = pd.read_csv(cli_run["root"] / "report" / "examples.csv", index_col="index")
    # duplicates: the report's keeper stays, its copies go (unless decided otherwise)
    for _sid, grp in t[t["duplicate_set"] >= 0].groupby("duplicate_set"):
        keeper = int(grp.index[grp["is_duplicate_keeper"]][0])
        for i in grp.index[grp["is_redundant"]]:
            if by_row[i]["reason"] == "duplicate":
                assert by_row[i]["evidence"]["keeper"] == keeper
    assert by_row[40]["reason"] == "duplicate" and by_row[41]["reason"] == "duplicate"
    # suspects: recomputed from the CSV's evidence and reasons
    reasons = t["suspect_reasons"].fillna("").astype(str)
    ev = t["suspect_evidence"].to_numpy().copy()
    only_con = [set(r.split(";")) & {"contradiction", "false_arithmetic",
                                     "unsupported_final_answer"} == {"contradiction"}
                for r in reasons]
    ev[only_con] -= 3.0
    want = {int(i) for i, e in zip(t.index, ev, strict=True) if e >= 2.0 - 1e-9}
    assert {r for r, d in by_row.items() if d["reason"] == "suspect"} == want
    # the planted contradiction: reviewed unless one side was dropped as a suspect
    if 5 not in want and 42 not in want:
        assert by_row[5]["action"] == by_row[42]["action"] == "review"
        assert by_row[42]["evidence"]["contradicts"] == [5]


def test_clean_policies_from_the_command_line(cli_run):
    blob, dec = cli_run["out"]["strict"]
    by_row = {d["row"]: d for d in dec}
    assert not any(d["reason"] == "suspect" for d in dec)             # --suspect-level off
    assert by_row[5]["action"] == by_row[42]["action"] == "drop"
    assert by_row[5]["reason"] == "contradiction"
    assert cli_run["lines"][42] + b"\n" not in blob


def test_select_without_target_is_the_herding_order_of_the_store(cli_run):
    blob, rep = cli_run["out"]["sub"]
    idx, X = cli_run["stores"][44]
    n = round(0.25 * 44)
    ref = idx[brute_herding(unit(X), n)]
    assert rep["n_selected"] == n == 11 and rep["method"] == "herding"
    assert rep["ranking"][:n] == ref.tolist()
    assert rep["selected"] == sorted(ref.tolist())
    lines = cli_run["lines"]
    assert blob == b"".join(lines[i] + b"\n" for i in sorted(ref.tolist()))


def test_select_method_qr_is_the_pivot_order_of_the_store(cli_run):
    blob, rep = cli_run["out"]["subqr"]
    idx, X = cli_run["stores"][44]
    n = round(0.25 * 44)
    ref = idx[greedy_residual(unit(X), n)]
    assert rep["n_selected"] == n == 11 and rep["method"] == "qr"
    assert sorted(rep["selected"]) == sorted(ref.tolist()) == rep["selected"]
    assert rep["ranking"][:n] == ref.tolist()
    lines = cli_run["lines"]
    assert blob == b"".join(lines[i] + b"\n" for i in sorted(ref.tolist()))


def test_select_with_a_target_is_the_centred_mean_cosine_ranking(cli_run):
    _blob, rep = cli_run["out"]["near"]
    idx, X = cli_run["stores"][44]
    _, T = cli_run["stores"][6]
    mu = np.mean([x / np.linalg.norm(x) for x in X], axis=0)
    Xc = [x / np.linalg.norm(x) - mu for x in X]
    Tc = [t / np.linalg.norm(t) - mu for t in T]
    score = [float(np.mean([x @ t / (np.linalg.norm(x) * np.linalg.norm(t)) for t in Tc]))
             for x in Xc]
    ref = sorted(range(44), key=lambda i: (-score[i], i))[:5]
    assert rep["selected"] == sorted(int(idx[i]) for i in ref)
    assert rep["method"] == "target_mean_centered" and rep["target"] == str(cli_run["dev"])
    assert rep["scores"][str(int(idx[ref[0]]))] == pytest.approx(score[ref[0]], abs=1e-9)


def test_library_select_and_clean_match_the_command(cli_run):
    root = cli_run["root"]
    res = constraintlab.select(cli_run["data"], 0.25, out=root / "report",
                               model=str(root / "model"), k=128, on_invalid="skip")
    assert b"".join(res.records) == cli_run["out"]["sub"][0]
    cres = constraintlab.clean(cli_run["data"], out=root / "report", model=str(root / "model"),
                               k=128, on_invalid="skip")
    assert b"".join(cres.records) == cli_run["out"]["clean"][0]
    assert cres.decisions == cli_run["out"]["clean"][1]


def test_library_select_takes_the_select_settings_by_name(cli_run):
    root = cli_run["root"]
    idx, X = cli_run["stores"][44]
    res = constraintlab.select(cli_run["data"], 0.25, out=root / "report",
                               model=str(root / "model"), k=128, on_invalid="skip",
                               herding_block_rows=16, select_seed=3)
    assert res.summary["select_config"]["herding_block_rows"] == 16
    assert res.ranking == idx[herding_ranking(X, block_rows=16, seed=3)].tolist()
    assert "seeded blocks of at most 16 rows, select_seed 3" in res.summary["rule"]


def test_errors_exit_2_before_any_model_loads(cli_run, tmp_path, capsys):
    data = str(cli_run["data"])
    nomodel = ["--model", str(tmp_path / "no-such-model"), "-q"]
    for argv in (["select", data, "-o", str(tmp_path / "s.jsonl"), "--budget", "0", *nomodel],
                 ["select", data, "-o", str(tmp_path / "s.jsonl"), "--budget", "1.5",
                  *nomodel],
                 ["clean", data, "-o", str(tmp_path / "c.jsonl"), "--suspect-level", "2",
                  *nomodel]):
        with pytest.raises(SystemExit) as err:
            main(argv)
        assert err.value.code == 2
    capsys.readouterr()
    assert main(["select", data, "-o", str(tmp_path / "s.jsonl"), "--budget", "3",
                 "--target", str(tmp_path / "missing.jsonl"), *nomodel]) == 2
    assert "--target" in capsys.readouterr().err
    assert main(["clean", data, "-o", data, *nomodel]) == 2
    assert "overwrite the input" in capsys.readouterr().err
    assert main(["clean", data, "-o", str(tmp_path), *nomodel]) == 2
    err = capsys.readouterr().err
    assert "-o" in err and "Traceback" not in err


def test_dry_run_prints_the_decisions_and_writes_nothing(cli_run, capsys):
    root = cli_run["root"]
    common = [a for a in cli_run["common"] if a != "-q"]
    capsys.readouterr()
    assert main(["clean", str(cli_run["data"]), "-o", str(root / "dry2.jsonl"), "--dry-run",
                 *common]) == 0
    out = capsys.readouterr().out
    assert "dry run: nothing written" in out and not (root / "dry2.jsonl").exists()
    _, dec = cli_run["out"]["clean"]
    for d in dec:
        if d["reason"] == "duplicate":
            assert f"row {d['row']:>6}  drop    duplicate" in out
            assert f"keeper {d['evidence']['keeper']}" in out
    assert "invalid" in out and "line     44" in out
