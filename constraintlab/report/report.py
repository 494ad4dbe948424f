"""The :class:`Report`: one analysis, for a person (HTML, plots), a program (JSON, CSV) and CI.

Files written by :meth:`Report.save` (and read back by :meth:`Report.load`):

``report.json``           the contract (README, "report.json"); ``run`` is the only part that
                          differs between two runs on the same data and settings
``examples.csv``          one row per example, joinable to the data by ``index`` and ``line``
``examples.parquet``      the same, when pyarrow is installed
``report.html``           self-contained page (figures embedded, dataset text escaped)
``constraint_graph.graphml``  the constraint graph (edge ``cos``, node ``zone``)
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import networkx as nx
import pandas as pd
from matplotlib.figure import Figure

from constraintlab.errors import ConstraintlabError
from constraintlab.report import plots
from constraintlab.report.html import render_html, verdict_sentence

SCHEMA_VERSION = 1

#: The flat metrics of :meth:`Report.metrics` (what gate conditions can name), documented once.
METRICS: dict[str, str] = {
    "examples": "N, examples analysed (equations)",
    "unknowns": "P, trainable LoRA parameters",
    "skipped_records": "invalid records skipped with --on-invalid skip",
    "rank": "numerical rank of the constraint matrix (a lower bound when it reaches k)",
    "effective_rank": "exp of the entropy of the normalised singular values",
    "stable_rank": "||G||_F^2 / ||G||_2^2",
    "rank_is_lower_bound": "true when the rank reached the sketch dimension k",
    "examples_per_direction": "N / effective_rank",
    "verdict": "underdetermined, balanced or overdetermined",
    "inconsistent": "true when conflict or contradictions pass their thresholds",
    "conflict_density": "conflicting pairs / all pairs",
    "alignment_density": "aligned pairs / all pairs",
    "conflicting_pairs": "pairs with cos < -tau",
    "conflicted_share": "share of examples with at least one conflicting partner",
    "exact_duplicates": "records that exactly repeat another (beyond one keeper per set)",
    "exact_duplicate_sets": "sets of exact duplicates",
    "near_duplicates": "records that nearly repeat another (beyond one keeper per set)",
    "near_duplicate_pairs": "near-duplicate pairs (text and gradient signals)",
    "duplicates": "exact_duplicates + near_duplicates",
    "redundancy_ratio": "redundant records / N",
    "contradictions": "pairs with the same input and a different target",
    "contradicting_examples": "examples in at least one contradiction",
    "zones": "communities of the constraint graph",
    "pressure_zones": "zones whose internal conflict share passes the threshold",
    "max_zone_pressure": "the highest zone pressure score",
    "harmful_examples": "examples whose unit step raises the others' summed loss (first order)",
}
FILES = {"json": "report.json", "csv": "examples.csv", "parquet": "examples.parquet",
         "html": "report.html", "graph": "constraint_graph.graphml"}


class Report:
    """Everything one ``analyze`` found.

    Parameters
    ----------
    data : dict
        The ``report.json`` content.
    examples : DataFrame
        One row per example, index = example index: line, input, target, loss, gradient norm,
        and every analyzer's flags and scores.
    edges : DataFrame
        The constraint graph's edges: ``a``, ``b`` (example indices, ``a < b``), ``cos``.
    """

    def __init__(self, data: dict, examples: pd.DataFrame, edges: pd.DataFrame) -> None:
        self.data = data
        self.examples = examples
        self.edges = edges

    # -- tables ------------------------------------------------------------------------------
    def metrics(self) -> dict[str, Any]:
        """The flat numbers the gate and the terminal summary use (names: :data:`METRICS`)."""
        d = self.data
        s, c, r, z = d["system"], d["conflict"], d["redundancy"], d["zones"]
        pressures = [zone["pressure"] for zone in z["zones"]]
        values = {
            "examples": s["n_equations"], "unknowns": s["n_unknowns"],
            "skipped_records": len(d["dataset"]["skipped"]),
            "rank": s["rank"], "effective_rank": s["effective_rank"],
            "stable_rank": s["stable_rank"], "rank_is_lower_bound": s["rank_is_lower_bound"],
            "examples_per_direction": s["n_equations"] / s["effective_rank"]
            if s["effective_rank"] else math.inf,
            "verdict": s["verdict"], "inconsistent": s["inconsistent"],
            "conflict_density": c["conflict_density"],
            "alignment_density": c["alignment_density"],
            "conflicting_pairs": c["conflicting_pairs"],
            "conflicted_share": c["conflicted_share"],
            "exact_duplicates": r["exact_duplicates"],
            "exact_duplicate_sets": r["exact_duplicate_sets"],
            "near_duplicates": r["near_duplicates"],
            "near_duplicate_pairs": r["near_duplicate_pairs"],
            "duplicates": r["exact_duplicates"] + r["near_duplicates"],
            "redundancy_ratio": r["redundancy_ratio"],
            "contradictions": d["contradictions"]["count"],
            "contradicting_examples": d["contradictions"]["examples"],
            "zones": z["count"], "pressure_zones": z["pressure_zones"],
            "max_zone_pressure": max(pressures) if pressures else 0.0,
            "harmful_examples": d["response"]["harmful_examples"],
        }
        return {name: values[name] for name in METRICS}

    @property
    def summary(self) -> pd.DataFrame:
        """:meth:`metrics` as a one-column DataFrame (index = metric)."""
        return pd.DataFrame({"value": pd.Series(self.metrics(), dtype=object)})

    @property
    def pairs(self) -> pd.DataFrame:
        """Every pair (kind, a, b, score, detail), one row each."""
        return pd.DataFrame(self.data["pairs"], columns=["kind", "a", "b", "score", "detail"])

    @property
    def zones(self) -> pd.DataFrame:
        """The zones, ranked by pressure (highest first), index = zone id."""
        cols = ["id", "rank", "label", "size", "pressure", "internal_conflict_share",
                "mean_alignment", "density", "is_pressure_zone", "members"]
        return pd.DataFrame(self.data["zones"]["zones"], columns=cols).set_index("id")

    def zone_examples(self, zone: int) -> pd.DataFrame:
        """The examples of one zone (rows of :attr:`examples`)."""
        return self.examples[self.examples["zone"] == zone]

    def contradictions(self) -> pd.DataFrame:
        """Contradiction pairs with both inputs and targets side by side."""
        rows = []
        for p in self.data["pairs"]:
            if p["kind"] != "contradiction":
                continue
            a, b = self.examples.loc[p["a"]], self.examples.loc[p["b"]]
            rows.append({"a": p["a"], "b": p["b"], "score": p["score"], "input_a": a["input"],
                         "target_a": a["target"], "input_b": b["input"],
                         "target_b": b["target"], "diff": p["detail"].get("diff")})
        return pd.DataFrame(rows, columns=["a", "b", "score", "input_a", "target_a", "input_b",
                                           "target_b", "diff"])

    # -- words ------------------------------------------------------------------------------
    def verdict(self) -> str:
        """The verdict in one sentence with its numbers."""
        return verdict_sentence(self.data)

    def advice(self) -> list[str]:
        """What to do next, from the numbers (one sentence each, most pressing first)."""
        m, d = self.metrics(), self.data
        out = []
        if m["contradictions"]:
            out.append(f"Resolve the {m['contradictions']} contradiction pair(s): the same input "
                       "asks for different targets, so training pulls the model both ways "
                       "(column is_contradiction).")
        if m["exact_duplicates"]:
            out.append(f"Drop or merge the {m['exact_duplicates']} exact duplicate(s): they add "
                       "weight, not constraints (is_exact_duplicate; the keeper of each set is "
                       "marked is_duplicate_keeper).")
        if m["near_duplicates"]:
            out.append(f"Review the {m['near_duplicates']} near duplicate(s) (is_near_duplicate):"
                       " cosmetic variants of other records.")
        pz = [z for z in d["zones"]["zones"] if z["is_pressure_zone"]][:3]
        for z in pz:
            out.append(f"Inspect pressure zone {z['id']} ({z['label']}, {z['size']} examples):"
                       f" {z['internal_conflict_share']:.0%} of its internal links conflict.")
        verdict = m["verdict"]
        if verdict == "underdetermined":
            out.append("Nearly every example adds its own direction (rank close to N): the "
                       "adapter can fit each one separately. Add examples per behaviour, or "
                       "use a smaller LoRA rank.")
        elif verdict == "overdetermined":
            out.append(f"About {m['examples_per_direction']:.1f} examples per effective "
                       "direction: the data repeats a few constraints; low-leverage examples "
                       "(leverage_score near 0) are candidates for subsampling.")
        if m["rank_is_lower_bound"]:
            out.append(f"The rank reached the sketch dimension k = {d['projection']['k']}: "
                       "rerun with a larger -k to see the true rank.")
        if d["model"].get("reference"):
            out.append("These numbers describe the built-in reference model; rerun with "
                       "--model <your model> to analyse what the data does to yours.")
        if not out:
            out.append("No blocking issue found: the data looks consistent for this model.")
        return out

    # -- figures ------------------------------------------------------------------------------
    def plot_spectrum(self) -> Figure:
        """Singular values with rank and effective rank marked."""
        return plots.spectrum_figure(self.data["system"])

    def plot_cosines(self) -> Figure:
        """Histogram of pair cosines with the conflict threshold."""
        return plots.cosine_histogram_figure(self.data["conflict"])

    def plot_zones(self) -> Figure:
        """The constraint graph coloured by zone (highest-pressure zones first)."""
        zone_of = {int(i): int(z) for i, z in self.examples["zone"].items() if z == z}
        ranked = [z["id"] for z in self.data["zones"]["zones"]]
        return plots.zones_figure(list(self.examples.index), self.edges.itertuples(index=False),
                                  zone_of, ranked)

    def _figures(self) -> dict[str, bytes]:
        return {"spectrum": plots.figure_to_png(self.plot_spectrum()),
                "cosines": plots.figure_to_png(self.plot_cosines()),
                "zones": plots.figure_to_png(self.plot_zones())}

    # -- files ------------------------------------------------------------------------------
    def to_json(self) -> str:
        """``report.json`` text."""
        return json.dumps(self.data, indent=1, ensure_ascii=False, allow_nan=False)

    def to_html(self) -> str:
        """``report.html`` text."""
        return render_html(self.data, self.examples, self._figures(), self.advice())

    def graph(self) -> nx.Graph:
        """The constraint graph (nodes = example indices with ``zone``; edges with ``cos``)."""
        g = nx.Graph()
        for i, z in self.examples["zone"].items():
            g.add_node(int(i), zone=int(z) if z == z else -1)
        g.add_weighted_edges_from(((int(a), int(b), float(w)) for a, b, w in
                                   self.edges.itertuples(index=False)), weight="cos")
        return g

    def save(self, directory: str | Path) -> Path:
        """Write every file of the report into ``directory`` (created); returns it."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        (out / FILES["json"]).write_text(self.to_json() + "\n", encoding="utf-8")
        self.examples.to_csv(out / FILES["csv"])
        try:
            self.examples.to_parquet(out / FILES["parquet"])
        except ImportError:
            pass
        (out / FILES["html"]).write_text(self.to_html(), encoding="utf-8")
        nx.write_graphml(self.graph(), out / FILES["graph"])
        return out

    @classmethod
    def load(cls, directory: str | Path) -> Report:
        """Read a report written by :meth:`save`."""
        d = Path(directory)
        path = d / FILES["json"] if d.is_dir() else d
        if not path.is_file():
            raise ConstraintlabError(f"{d}: no {FILES['json']} here; run constraintlab analyze")
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ConstraintlabError(f"{path}: report schema version "
                                     f"{data.get('schema_version')!r}; this constraintlab reads "
                                     f"version {SCHEMA_VERSION}")
        examples = pd.read_csv(path.parent / FILES["csv"], index_col="index",
                               keep_default_na=False, na_values=[""])
        g = nx.read_graphml(path.parent / FILES["graph"], node_type=int)
        edges = pd.DataFrame(sorted((min(a, b), max(a, b), w["cos"]) for a, b, w in
                                    g.edges(data=True)), columns=["a", "b", "cos"])
        return cls(data, examples, edges)

    def _repr_html_(self) -> str:
        m = self.metrics()
        rows = "".join(f"<tr><th>{k}</th><td>{v if not isinstance(v, float) else f'{v:.4g}'}"
                       "</td></tr>" for k, v in m.items())
        import html as _html
        return (f"<p><b>constraintlab report</b>: {_html.escape(self.verdict())}</p>"
                f"<table>{rows}</table>")

    def __repr__(self) -> str:
        return f"<Report {self.data['dataset']['source']}: {self.verdict()}>"
