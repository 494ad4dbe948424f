"""``analyze`` end to end on a tiny local model: report files, planted findings, reuse, gate."""

from __future__ import annotations

import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest
from tiny_models import build_model, gsm8k_records

import constraintlab
from constraintlab.report.report import METRICS, Report

REPO = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((REPO / "constraintlab" / "report" / "report.schema.json").read_text())
XSS_Q = "<script>alert(1)</script> Tom has 3 apples and buys 2 more. How many apples?"
XSS_A = "3 + 2 = <<3+2=5>>5 <img src=x onerror=alert(2)> #### 5"
N_BASE = 40


def cosmetic(text: str) -> str:
    return "  " + text.upper().replace(" ", "   ").rstrip("?.") + " ."


def other_final(answer: str) -> str:
    head, final = answer.rsplit("####", 1)
    return f"{head}#### {int(final.strip().replace(',', '')) + 11}"


def planted_rows() -> tuple[list[dict], set[tuple[str, int, int]]]:
    rows = gsm8k_records(N_BASE)
    planted = [dict(rows[3]), dict(rows[7]),                                  # exact
               {"question": cosmetic(rows[10]["question"]), "answer": rows[10]["answer"]},
               {"question": cosmetic(rows[12]["question"]), "answer": rows[12]["answer"]},
               {"question": rows[15]["question"], "answer": other_final(rows[15]["answer"])},
               {"question": XSS_Q, "answer": XSS_A},
               {"question": XSS_Q, "answer": XSS_A.replace("#### 5", "#### 6")}]
    expected = {("exact_duplicate", 3, 40), ("exact_duplicate", 7, 41),
                ("near_duplicate", 10, 42), ("near_duplicate", 12, 43),
                ("contradiction", 15, 44), ("contradiction", 45, 46)}
    return rows + planted, expected


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "constraintlab", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def run(tmp_path_factory, shared_data) -> dict:
    root = tmp_path_factory.mktemp("analyze")
    model = build_model("qwen3", root / "model", hidden=32, layers=2)
    rows, expected = planted_rows()
    data = root / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = root / "report"
    proc = cli("analyze", str(data), "--model", str(model), "-k", "128", "--out", str(out))
    return {"root": root, "model": model, "data": data, "out": out, "proc": proc,
            "rows": rows, "expected": expected}


def test_analyze_exits_0_with_a_summary(run) -> None:
    proc = run["proc"]
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    report = json.loads((run["out"] / "report.json").read_text())
    assert f"effective rank   {report['system']['effective_rank']:>10.1f}" in proc.stdout
    assert f"report: {run['out'] / 'report.html'}" in proc.stdout


def test_report_json_follows_the_schema_and_names_the_planted_pairs(run) -> None:
    report = json.loads((run["out"] / "report.json").read_text())
    jsonschema.validate(report, SCHEMA)
    assert all(p["a"] < p["b"] for p in report["pairs"])
    found = {(p["kind"], p["a"], p["b"]) for p in report["pairs"] if p["kind"] != "conflict"}
    assert found == run["expected"]
    assert report["dataset"]["n_examples"] == len(run["rows"])
    assert report["system"]["n_equations"] == len(run["rows"])
    assert report["redundancy"]["exact_duplicates"] == 2
    assert report["contradictions"]["count"] == 2
    # The same numbers the gate sees.
    assert set(Report.load(run["out"]).metrics()) == set(METRICS)


def test_examples_csv_has_one_row_per_record(run) -> None:
    table = pd.read_csv(run["out"] / "examples.csv", index_col="index")
    assert list(table.index) == list(range(len(run["rows"])))
    assert list(table["line"]) == list(range(1, len(run["rows"]) + 1))
    flagged = set(table.index[table["is_exact_duplicate"].astype(bool)])
    assert flagged == {3, 7, 40, 41}
    assert set(table.index[table["is_contradiction"].astype(bool)]) == {15, 44, 45, 46}
    assert {"loss", "grad_norm", "zone", "duplicate_set", "conflict_score", "net_effect"} <= set(
        table.columns)
    # Net effect of a unit step on i over the others is -(g_i . sum_j g_j - |g_i|^2); check it
    # against NumPy on the stored features (float64).
    report = json.loads((run["out"] / "report.json").read_text())
    g = np.load(Path(report["run"]["feature_store"]) / "features.npy").astype(np.float64)
    expected = -(g @ g.sum(axis=0) - (g * g).sum(axis=1))
    np.testing.assert_allclose(table["net_effect"].to_numpy(), expected, rtol=1e-4,
                               atol=1e-6 * np.abs(expected).max())


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.images: list[str] = []
        self.scripts = 0
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        if tag == "script":
            self.scripts += 1

    def handle_data(self, data):
        self.text.append(data)


def test_report_html_parses_embeds_figures_and_escapes_text(run) -> None:
    page = (run["out"] / "report.html").read_text(encoding="utf-8")
    parser = _Collector()
    parser.feed(page)
    parser.close()
    assert parser.scripts == 0
    assert sum(src.startswith("data:image/png;base64,") for src in parser.images) == 3
    assert "<script>alert(1)</script>" not in page and "onerror=alert(2)>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert any("<script>alert(1)</script>" in t for t in parser.text)  # shown, as text


def test_second_run_reuses_the_store_and_gives_the_same_report(run, monkeypatch) -> None:
    import constraintlab.api as api

    def no_extraction(*args, **kwargs):
        raise AssertionError("gradients were recomputed")

    monkeypatch.setattr(api, "extract", no_extraction)
    first = json.loads((run["out"] / "report.json").read_text())
    report = constraintlab.analyze(run["data"], model=str(run["model"]), k=128, out=run["out"])
    second = json.loads((run["out"] / "report.json").read_text())
    assert second["run"]["feature_store_reused"] is True
    first.pop("run")
    second.pop("run")
    assert second == first
    assert report.metrics() == Report.load(run["out"]).metrics()


def test_python_api_tables(run) -> None:
    report = Report.load(run["out"])
    assert len(report.examples) == len(run["rows"])
    contra = report.contradictions()
    assert set(zip(contra["a"], contra["b"], strict=True)) == {(15, 44), (45, 46)}
    assert set(report.pairs["kind"]) <= {"exact_duplicate", "near_duplicate", "contradiction",
                                         "conflict"}
    assert report.zones["rank"].tolist() == list(range(1, len(report.zones) + 1))
    assert "<table>" in report._repr_html_()
    for fig in (report.plot_spectrum(), report.plot_cosines(), report.plot_zones()):
        assert fig.axes


GATE_PASS = '[gate]\nrequire = ["contradictions <= 2", "examples == 47"]\n'
GATE_FAIL = '[gate]\nrequire = ["exact_duplicates == 0", "contradictions <= 2"]\n'


def test_gate_pass_fail_and_broken_config(run) -> None:
    root, out = run["root"], run["out"]
    (root / "pass.toml").write_text(GATE_PASS)
    (root / "fail.toml").write_text(GATE_FAIL)
    (root / "broken.toml").write_text("[gate]\nrequire = [\"contradictions <=\"]\n")
    report = json.loads((out / "report.json").read_text())
    assert report["system"]["n_equations"] == 47
    ok = cli("gate", str(out), "--config", str(root / "pass.toml"))
    assert ok.returncode == 0, ok.stderr
    assert "  PASS  contradictions <= 2  (value: 2)" in ok.stdout
    assert f"  PASS  examples == 47  (value: {report['system']['n_equations']})" in ok.stdout
    md = root / "summary.md"
    bad = cli("gate", str(out), "--config", str(root / "fail.toml"), "--summary-md", str(md))
    assert bad.returncode == 1
    assert "  FAIL  exact_duplicates == 0  (value: 2)" in bad.stdout
    assert "gate FAILED: 1 of 2 conditions hold" in bad.stdout
    assert "| ❌ | `exact_duplicates == 0` | 2 |" in md.read_text()
    broken = cli("gate", str(out), "--config", str(root / "broken.toml"))
    assert broken.returncode == 2 and "Traceback" not in broken.stderr
    assert "cannot read gate condition 'contradictions <='" in broken.stderr
    unknown = cli("gate", str(run["data"]), "--fail-on", "duplicatez == 0")
    assert unknown.returncode == 2 and "unknown gate metric 'duplicatez'" in unknown.stderr


def test_gate_on_data_reuses_store_and_analyze_fail_on(run) -> None:
    args = ("--model", str(run["model"]), "-k", "128", "--out", str(run["out"]))
    gate = cli("gate", str(run["data"]), *args, "--fail-on", "near_duplicates == 2")
    assert gate.returncode == 0, gate.stderr
    assert "  PASS  near_duplicates == 2  (value: 2)" in gate.stdout
    fail = cli("analyze", str(run["data"]), *args, "-q", "--fail-on", "contradictions == 0")
    assert fail.returncode == 1 and "  FAIL  contradictions == 0  (value: 2)" in fail.stdout
