"""``analyze`` end to end on a tiny local model: report files, planted findings, reuse, gate."""

from __future__ import annotations

import html
import json
import math
import re
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
from constraintlab.errors import ConstraintlabError
from constraintlab.report.report import METRICS, Report
from constraintlab.report.schema import report_schema

REPO = Path(__file__).resolve().parents[1]
SCHEMA = report_schema()
XSS_Q = "<script>alert(1)</script> Tom has 3 apples and buys 2 more. How many apples?"
XSS_A = "3 + 2 = <<3+2=5>>5 <img src=x onerror=alert(2)> #### 5"
N_BASE = 40
# A variant family (records 47-50): the same word problem with a marked, a replaced and an added
# word; the last member changes the final answer, so the family is incoherent (contradiction).
FAM_Q = ("A baker makes {w} loaves of bread every morning and sells each loaf for 3 dollars at "
         "the market near the old train station. How much money does the baker earn in one "
         "morning?")
FAM_A = "12 * 3 = <<12*3=36>>36 dollars. <script>alert(1)</script> #### 36"
SCRIPT = "<script>alert(1)</script>"


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
               {"question": XSS_Q, "answer": XSS_A.replace("#### 5", "#### 6")},
               {"question": FAM_Q.format(w="twelve"), "answer": FAM_A},
               {"question": FAM_Q.format(w="a dozen"), "answer": FAM_A},
               {"question": FAM_Q.format(w=f"twelve fresh {SCRIPT}"), "answer": FAM_A},
               {"question": FAM_Q.format(w="**twelve**"),
                "answer": FAM_A.replace("#### 36", "#### 37")}]
    expected = {("exact_duplicate", 3, 40), ("exact_duplicate", 7, 41),
                ("near_duplicate", 10, 42), ("near_duplicate", 12, 43),
                ("contradiction", 15, 44), ("contradiction", 45, 46),
                ("contradiction", 47, 50)}    # 48 asks with "a dozen": another input
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
    # one readable but unusable record at the end: a finding, left out of the analysis
    blank = {"question": f"{SCRIPT} What is 2 + 2?", "answer": "   "}
    data.write_text("".join(json.dumps(r) + "\n" for r in [*rows, blank]), encoding="utf-8")
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
    p99 = report["volatility"]["percentiles"]["volatility"]["p99"]
    assert f"  volatility p99   {p99:>10.3f}   max " in proc.stdout
    assert "  variant families          1   1 incoherent (4 examples)" in proc.stdout
    assert f"  layer map           layer {report['layer_map']['dataset']['top_layer']}" in (
        proc.stdout)


def test_report_json_follows_the_schema_and_names_the_planted_pairs(run) -> None:
    report = json.loads((run["out"] / "report.json").read_text())
    jsonschema.validate(report, SCHEMA)
    assert all(p["a"] < p["b"] for p in report["pairs"])
    found = {(p["kind"], p["a"], p["b"]) for p in report["pairs"] if p["kind"] != "conflict"}
    assert found == run["expected"]
    assert report["dataset"]["n_examples"] == len(run["rows"])
    assert report["system"]["n_equations"] == len(run["rows"])
    assert report["redundancy"]["exact_duplicates"] == 2
    assert report["contradictions"]["count"] == 3
    # The same numbers the gate sees.
    assert set(Report.load(run["out"]).metrics()) == set(METRICS)


def test_examples_csv_has_one_row_per_record(run) -> None:
    table = pd.read_csv(run["out"] / "examples.csv", index_col="index")
    assert list(table.index) == list(range(len(run["rows"])))
    assert list(table["line"]) == list(range(1, len(run["rows"]) + 1))
    flagged = set(table.index[table["is_exact_duplicate"].astype(bool)])
    assert flagged == {3, 7, 40, 41}
    assert set(table.index[table["is_contradiction"].astype(bool)]) == {15, 44, 45, 46, 47, 50}
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
    assert parser.scripts == 1                       # the page's own sort/filter code, inline
    assert page.count("<script>") == 1 and "src=" not in page.split("<script>")[1]
    # spectrum, growth curve, cosines, zone map, zones (the examples' graph), layer map
    assert sum(src.startswith("data:image/png;base64,") for src in parser.images) == 6
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
    assert set(zip(contra["a"], contra["b"], strict=True)) == {(15, 44), (45, 46), (47, 50)}
    assert set(report.pairs["kind"]) <= {"exact_duplicate", "near_duplicate", "contradiction",
                                         "conflict"}
    assert report.zones["rank"].tolist() == list(range(1, len(report.zones) + 1))
    assert "<table>" in report._repr_html_()
    for fig in (report.plot_spectrum(), report.plot_cosines(), report.plot_zones()):
        assert fig.axes


GATE_PASS = '[gate]\nrequire = ["contradictions <= 4", "examples == 51"]\n'
GATE_FAIL = '[gate]\nrequire = ["exact_duplicates == 0", "contradictions <= 4"]\n'


def test_gate_pass_fail_and_broken_config(run) -> None:
    root, out = run["root"], run["out"]
    (root / "pass.toml").write_text(GATE_PASS)
    (root / "fail.toml").write_text(GATE_FAIL)
    (root / "broken.toml").write_text("[gate]\nrequire = [\"contradictions <=\"]\n")
    report = json.loads((out / "report.json").read_text())
    assert report["system"]["n_equations"] == 51
    ok = cli("gate", str(out), "--config", str(root / "pass.toml"))
    assert ok.returncode == 0, ok.stderr
    assert "  PASS  contradictions <= 4  (value: 3)" in ok.stdout
    assert f"  PASS  examples == 51  (value: {report['system']['n_equations']})" in ok.stdout
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
    assert fail.returncode == 1 and "  FAIL  contradictions == 0  (value: 3)" in fail.stdout


# -- token volatility, variant families, layer map ---------------------------------------------

def test_report_json_volatility_families_layer_map(run) -> None:
    report = json.loads((run["out"] / "report.json").read_text())
    jsonschema.validate(report, SCHEMA)
    vol, fam, lm = report["volatility"], report["families"], report["layer_map"]
    table = pd.read_csv(run["out"] / "examples.csv", index_col="index")
    # percentiles and the listed examples are the examples.csv column's, restated
    assert vol["percentiles"]["volatility"]["p99"] == pytest.approx(
        np.percentile(table["volatility"], 99), rel=1e-9)
    listed = vol["most_volatile"]
    assert [v["id"] for v in listed] == list(
        table["volatility"].sort_values(ascending=False, kind="stable").index[:len(listed)])
    assert (fam["count"], fam["members"], fam["incoherent"]) == (1, 4, 1)
    (family,) = fam["families"]
    assert family["members"] == [47, 48, 49, 50] and family["coherent"] is False
    assert "contradiction" in family["reasons"] and family["contradicting_pairs"] == 1
    assert report["redundancy"]["near_duplicate_pairs_in_families"] >= 1
    assert len(lm["dataset"]["energy"]) == len(lm["layers"])
    metrics = Report.load(run["out"]).metrics()
    assert metrics["volatility_p99"] == vol["percentiles"]["volatility"]["p99"]
    # report.json vs examples.csv (two float parsers): equal to 1e-12
    assert metrics["max_volatility"] == pytest.approx(table["volatility"].max(), rel=1e-12)
    assert (metrics["families"], metrics["family_members"], metrics["incoherent_families"]) == (
        1, 4, 1)


class _Sections(HTMLParser):
    """Text of each ``<h2>`` section, as a reader sees it (entities decoded)."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, list[str]] = {}
        self.current = ""
        self.in_h2 = False

    def handle_starttag(self, tag, attrs):
        self.in_h2 = tag == "h2"

    def handle_data(self, data):
        if self.in_h2:
            self.current = data
            self.sections[data] = []
        else:
            self.sections.setdefault(self.current, []).append(data)

    def handle_endtag(self, tag):
        if tag == "h2":
            self.in_h2 = False

    def text(self, prefix: str) -> str:
        (title,) = [t for t in self.sections if t.startswith(prefix)]
        return "".join(self.sections[title])


def test_volatility_and_family_sections_escape_dataset_text(run) -> None:
    page = (run["out"] / "report.html").read_text(encoding="utf-8")
    assert page.count("<script") == 1 and "onerror=alert(2)>" not in page   # only the page's
    parser = _Sections()
    parser.feed(page)
    parser.close()
    families = parser.text("Variant families")
    assert SCRIPT in families                 # a word added by a variant, shown as text
    assert "family" in families and "contradiction" in families
    volatility = parser.text("Token volatility")
    report = json.loads((run["out"] / "report.json").read_text())
    table = pd.read_csv(run["out"] / "examples.csv", index_col="index")
    shown = [v["id"] for v in report["volatility"]["most_volatile"][:10]]
    with_script = [i for i in shown if SCRIPT in table.at[i, "target"]]
    assert with_script, "a planted <script> target should be among the listed volatile examples"
    assert SCRIPT in volatility               # the token pieces, escaped one by one
    pieces = re.findall(r'title="nll [0-9.]+">(.*?)</span>', page, flags=re.S)
    assert pieces and not any("<" in p or ">" in p for p in pieces)
    assert SCRIPT in "".join(html.unescape(p) for p in pieces)
    # a tokenizer that keeps the tag in one piece (and in the worst tokens) is escaped too
    report = Report.load(run["out"])
    listed = report.data["volatility"]["most_volatile"][0]
    listed["profile"][0][0] = SCRIPT
    listed["tokens"][0]["text"] = SCRIPT
    report.data["families"]["families"][0]["label"] = SCRIPT
    page = report.to_html()
    assert page.count("<script") == 1                 # the page's own script only
    parser = _Sections()
    parser.feed(page)
    assert parser.text("Token volatility").count(SCRIPT) >= 2
    assert parser.text("Variant families").count(SCRIPT) >= 2


def test_token_profiles_and_layer_maps_survive_save_and_load(run, tmp_path) -> None:
    fresh = constraintlab.analyze(run["data"], model=str(run["model"]), k=128, out=run["out"],
                                  save=False)
    loaded = Report.load(run["out"])
    assert loaded.tokens is not None
    for i in fresh.examples.index:
        pd.testing.assert_frame_equal(loaded.token_profile(i), fresh.token_profile(i))
        np.testing.assert_allclose(loaded.layer_map(example=i), fresh.layer_map(example=i),
                                   rtol=1e-12)
    pd.testing.assert_frame_equal(loaded.layer_map(), fresh.layer_map())
    for zone in report_zones(loaded):
        pd.testing.assert_frame_equal(loaded.layer_map(zone=zone, share=True),
                                      fresh.layer_map(zone=zone, share=True))
    # a report saved without profiles has none (and leaves no stale files behind)
    fresh.save(tmp_path)
    Report(loaded.data, loaded.examples, loaded.edges).save(tmp_path)
    bare = Report.load(tmp_path)
    with pytest.raises(ConstraintlabError, match="no token profiles"):
        bare.token_profile(0)


def report_zones(report: Report) -> list[int]:
    return [int(z) for z in report.data["layer_map"]["zones"]]


def test_layer_maps_add_up(run) -> None:
    report = Report.load(run["out"])
    table = pd.read_csv(run["out"] / "examples.csv", index_col="index")
    columns = [c for c in table.columns if c.startswith("energy:")]
    assert columns
    for i in table.index:
        one = report.layer_map(example=i)
        assert one.to_numpy().sum() == pytest.approx(table.at[i, "grad_norm"] ** 2, rel=1e-6)
        assert report.layer_map(example=i, share=True).to_numpy().sum() == pytest.approx(1.0)
    # the dataset map = the examples' energy columns summed (pandas, from the CSV)
    sums = table[columns].sum()
    expected = pd.Series({(int(c.split(":")[1]), c.split(":", 2)[2]): v
                          for c, v in sums.items()}).unstack(fill_value=0.0)
    dataset = report.layer_map()
    assert list(dataset.index) == sorted(expected.index)
    np.testing.assert_allclose(dataset.loc[expected.index, expected.columns], expected,
                               rtol=1e-9)
    assert report.layer_map(share=True).to_numpy().sum() == pytest.approx(1.0)
    zone = report_zones(report)[0]
    members = table.index[table["zone"] == zone]
    np.testing.assert_allclose(report.layer_map(zone=zone).to_numpy().sum(),
                               table.loc[members, columns].to_numpy().sum(), rtol=1e-9)
    with pytest.raises(ConstraintlabError, match="no layer map for zone"):
        report.layer_map(zone=10_000)


def test_token_profiles_restate_the_loss(run) -> None:
    report = Report.load(run["out"])
    table = pd.read_csv(run["out"] / "examples.csv", index_col="index")
    for i in table.index:
        profile = report.token_profile(i)
        assert list(profile.columns)[:4] == ["token", "id", "nll", "rank"]
        assert {"nll_noinput", "input_gain"} <= set(profile.columns)
        assert len(profile) == table.at[i, "n_target_tokens"]
        assert profile["nll"].mean() == pytest.approx(table.at[i, "mean_nll"], rel=1e-5)
        assert profile["nll"].mean() == pytest.approx(table.at[i, "loss"], rel=1e-5)
    assert SCRIPT in "".join(report.token_profile(47)["token"])


def test_volatility_families_layer_map_api(run) -> None:
    report = Report.load(run["out"])
    data = report.data
    top = report.volatile_examples()
    assert list(top.index) == [v["id"] for v in data["volatility"]["most_volatile"]]
    assert top["volatility"].is_monotonic_decreasing
    first = data["volatility"]["most_volatile"][0]["tokens"][0]
    assert top["worst_tokens"].iloc[0].startswith(f"{json.dumps(first['text'])} ")
    fams = report.families
    assert list(fams.index) == [0] and fams.at[0, "members"] == [47, 48, 49, 50]
    assert not fams.at[0, "coherent"]
    assert "contradiction" in fams.at[0, "reasons"]
    advice = " ".join(report.advice())
    assert "1 of 1 variant families are incoherent" in advice
    assert "1 member pair(s) ask for different answers" in advice
    for fig in (report.plot_layer_map(), report.plot_layer_map(zone=report_zones(report)[0]),
                report.plot_layer_map(example=0)):
        assert fig.axes and fig.axes[0].get_xlabel() == "module kind"


def test_gate_on_volatility_p99(run) -> None:
    p99 = Report.load(run["out"]).metrics()["volatility_p99"]
    ok = cli("gate", str(run["out"]), "--fail-on", f"volatility_p99 < {p99 + 0.01:.6f}",
             "--fail-on", "incoherent_families <= 1")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "  PASS  incoherent_families <= 1  (value: 1)" in ok.stdout
    bad = cli("gate", str(run["out"]), "--fail-on", f"volatility_p99 < {p99 - 0.01:.6f}")
    assert bad.returncode == 1 and "  FAIL  volatility_p99 <" in bad.stdout


def test_a_report_without_the_new_measurements(run) -> None:
    loaded = Report.load(run["out"])
    data = json.loads(json.dumps(loaded.data))
    data["volatility"] = data["families"] = data["layer_map"] = None
    jsonschema.validate(data, SCHEMA)
    report = Report(data, loaded.examples, loaded.edges)
    metrics = report.metrics()
    assert all(np.isnan(metrics[m]) for m in ("volatility_p99", "max_volatility", "families",
                                              "family_members", "incoherent_families"))
    page = report.to_html()
    assert page.count("Not measured") == 3
    with pytest.raises(ConstraintlabError, match="no layer map"):
        report.layer_map()
    with pytest.raises(ConstraintlabError, match="no volatility section"):
        report.volatile_examples()
    # an example's own map needs only its energy columns
    assert report.layer_map(example=0).to_numpy().sum() == pytest.approx(
        loaded.layer_map(example=0).to_numpy().sum())


def test_unusable_record_is_a_finding_in_json_html_and_the_gate(run) -> None:
    report = json.loads((run["out"] / "report.json").read_text())
    ds, line = report["dataset"], len(run["rows"]) + 1
    assert (ds["n_records"], ds["n_examples"], ds["invalid_records"]) == (line, line - 1, 1)
    (f,) = ds["findings"]
    assert (f["line"], f["index"], f["code"], f["severity"]) == (line, line - 1, "blank_target",
                                                                 "invalid")
    assert ds["skipped"] == [f"{f['source']}:{line}: {f['message']}"]
    page = (run["out"] / "report.html").read_text(encoding="utf-8")
    assert "Records left out: 1" in page and f"{html.escape(f['source'])}:{line}" in page
    assert "records left out (1, gate metric invalid_records):" in run["proc"].stdout
    assert f"  {f['source']}:{line}: {f['message']}" in run["proc"].stdout
    ok = cli("gate", str(run["out"]), "--fail-on", "invalid_records == 0")
    assert ok.returncode == 1 and "FAIL  invalid_records == 0  (value: 1)" in ok.stdout


def test_suspects_in_csv_html_api_gate_and_the_capability_statement(run) -> None:
    report = constraintlab.Report.load(run["out"])
    data, t = report.data, report.examples
    sus = data["suspects"]
    flagged = t.index[t["is_suspect"].astype(bool)]
    # a random tiny model does not condition on its input: the suspect count is not measured
    # (null, "not measured" on the card and in the terminal, failing the gate); what the checks
    # that ran flagged stays in 'flagged' and is_suspect
    assert sus["measured"] is False and sus["flagged"] == len(flagged)
    assert sus["suspects"] is None and math.isnan(report.metrics()["suspects"])
    assert math.isnan(report.metrics()["suspect_share"])
    assert "  suspects       not measured   the model cannot judge" in run["proc"].stdout
    gate = cli("gate", str(run["out"]), "--fail-on", "suspect_share < 0.02")
    assert gate.returncode == 1 and "FAIL  suspect_share < 0.02  (value: not measured)" in (
        gate.stdout)
    # the contradiction pairs are pairs to resolve, each side a suspect by its own evidence
    assert sorted(map(tuple, sus["contradiction_pairs"])) == [(15, 44), (45, 46), (47, 50)]
    ranked = report.suspects()
    assert set(ranked.index) == set(flagged)
    ev = t.loc[ranked.index, "suspect_evidence"].to_numpy()
    assert (np.diff(ev) <= 0).all()                     # most suspect first
    assert ((t["suspect_score"] >= 0) & (t["suspect_score"] <= 1)).all()
    assert ((t["suspect_score"] >= sus["threshold"]) == t["is_suspect"].astype(bool)).all()
    page = (run["out"] / "report.html").read_text(encoding="utf-8")
    assert "<h2 id='examples-to-look-at'>Examples to look at</h2>" in page
    from constraintlab.analysis.suspects import REASONS
    assert set(sus["reason_codes"]) == set(REASONS)      # every code explained once
    for r in {r for v in sus["listed"][:20] for r in v["reasons"]}:
        assert html.escape(sus["reason_codes"][r]) in page
    # a random tiny model does not condition on its input: the report says what it cannot check
    cap = sus["capability"]
    assert cap["limited"] is True and report.metrics()["model_limited"] is True
    assert cap["out_of_reach"] and "--model" in cap["message"]
    assert f"model capability: {cap['message'][:60]}" in run["proc"].stdout
    assert html.escape(cap["message"][:60]) in page
    # in the verdict box, and the KPI card says "not measured"
    verdict = page.split("<p class='verdict", 1)[1].split("</p>", 1)[0]
    assert "Model capability:" in verdict and html.escape(cap["message"][:60]) in verdict
    assert "<div>suspects<b>not measured</b>" in page
    # both inputs of a contradiction card, escaped: the XSS pair (45, 46) has the same input
    card = page.split("<h3>records 45 and 46", 1)[1].split("<h3>", 1)[0]
    assert card.count(html.escape(XSS_Q)) == 2 and "<script>alert(1)</script>" not in card
