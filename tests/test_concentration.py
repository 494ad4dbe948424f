"""Concentration (do a few examples carry the update?) against a brute-force count, and its
presentation on a real report."""

from __future__ import annotations

import html
import math

import numpy as np
import pytest

from constraintlab.analysis.concentration import analyze_concentration
from constraintlab.report.report import Report


def brute(norms, ids):
    """The fewest examples, largest energy first (ties by id), holding half the energy, and
    Kish's effective sample size, by plain Python loops."""
    energy = [float(g) * float(g) for g in norms]
    total = math.fsum(energy)
    ranked = sorted(range(len(energy)), key=lambda i: (-energy[i], ids[i]))
    held, chosen = 0.0, []
    for i in ranked:
        if held >= total / 2:
            break
        held += energy[i]
        chosen.append(ids[i])
    return chosen, total * total / math.fsum(e * e for e in energy), total


@pytest.mark.parametrize("seed", range(5))
def test_against_brute_force(seed) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    norms = rng.lognormal(0.0, 1.5, n) * (rng.random(n) > 0.2)   # some zero gradients
    if not norms.any():
        norms[0] = 1.0
    ids = rng.permutation(1000)[:n]
    res = analyze_concentration(norms, ids=ids)
    chosen, kish, total = brute(norms.tolist(), ids.tolist())
    s = res.summary
    assert s["half_energy_examples"] == len(chosen)
    assert s["half_energy_share"] == pytest.approx(len(chosen) / n)
    assert s["effective_examples"] == pytest.approx(kish, rel=1e-12)
    assert s["effective_share"] == pytest.approx(kish / n, rel=1e-12)
    assert s["total_energy"] == pytest.approx(total, rel=1e-12)
    assert sorted(res.table.index[res.table["carries_half_energy"]]) == sorted(chosen)
    assert res.table["energy_share"].sum() == pytest.approx(1.0)
    assert [x["id"] for x in s["largest"]] == [ids.tolist()[i] for i in sorted(
        range(n), key=lambda i: (-norms[i] ** 2, ids[i]))][:10]


def test_known_answers() -> None:
    even = analyze_concentration(np.full(7, 2.0)).summary   # an even pull: ceil(N/2), N
    assert (even["half_energy_examples"], even["effective_examples"]) == (4, pytest.approx(7))
    one = analyze_concentration(np.array([0.0, 3.0, 0.0])).summary
    assert (one["half_energy_examples"], one["effective_examples"]) == (1, pytest.approx(1))
    assert one["largest"][0] == {"id": 1, "grad_norm": 3.0, "share": 1.0}
    # energies 1, 4, 1, 1, 1: the second holds exactly half; Kish = 64 / 20
    s = analyze_concentration(np.array([1.0, 2.0, 1.0, 1.0, 1.0])).summary
    assert (s["half_energy_examples"], s["effective_examples"]) == (1, pytest.approx(3.2))
    assert s["largest"][0]["id"] == 1 and [x["id"] for x in s["largest"][1:]] == [0, 2, 3, 4]
    assert analyze_concentration(np.zeros(4)) is None          # nothing to share: not measured
    assert analyze_concentration(np.zeros(0)) is None


def test_report_section_accessor_and_lines(gate_report) -> None:
    from constraintlab.report.terminal import summary_lines

    report = Report.load(gate_report)
    c = report.data["concentration"]
    t = report.examples
    chosen, kish, _ = brute(t["grad_norm"].tolist(), t.index.tolist())
    assert c["half_energy_examples"] == len(chosen)
    assert c["effective_examples"] == pytest.approx(kish, rel=1e-6)
    assert report.metrics()["half_energy_share"] == pytest.approx(len(chosen) / len(t))
    table = report.concentration()
    assert sorted(table.index[table["carries_half_energy"].astype(bool)]) == sorted(chosen)
    assert table["energy_share"].is_monotonic_decreasing
    page = report.to_html()
    assert "<h2 id='concentration'>Concentration: do a few examples carry the update?</h2>" \
        in page
    assert f"<b>{len(chosen)}</b> of {len(t)} examples" in page
    for row in c["largest"]:                                  # the inputs, escaped
        text = str(t.at[row["id"], "input"])
        assert f"<td>{html.escape(text[:160], quote=True)}" in page
    line = [x for x in summary_lines(report) if x.startswith("  concentration")]
    assert line and f"effective examples {kish:.0f} of {len(t)}" in line[0]
