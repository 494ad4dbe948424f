"""The :class:`Report`: one analysis, for a person (HTML, plots), a program (JSON, CSV) and CI.

Files written by :meth:`Report.save` (and read back by :meth:`Report.load`):

``report.json``           the contract (README, "report.json"); ``run`` is the only part that
                          differs between two runs on the same data and settings
``examples.csv``          one row per example, joinable to the data by ``index`` and ``line``;
                          text cells are escaped against CSV injection (OWASP): a cell
                          beginning with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
                          return, or with ``'``, gets a leading ``'`` so a spreadsheet shows
                          it as text; numbers are never changed; :meth:`Report.load` drops
                          that quote again (pandas readers: strip one leading ``'`` from text
                          cells that have one; ``examples.parquet`` is not escaped); rows
                          end in CRLF (RFC 4180)
``examples.parquet``      the same, when pyarrow is installed
``report.html``           self-contained page (figures embedded, dataset text escaped)
``constraint_graph.graphml``  the constraint graph (edge ``cos``, node ``zone``)
``tokens.npz``, ``tokens.jsonl``  per-token profiles of every example's target (NLL, rank, id,
                          text piece; :class:`~constraintlab.encode.store.TokenProfiles`), when
                          the report has them
"""

from __future__ import annotations

import json
import logging
import math
import stat
import zipfile
from pathlib import Path
from typing import Any

import networkx as nx
import pandas as pd
from matplotlib.figure import Figure

from constraintlab._text import csv_escape_frame, csv_unescape_frame
from constraintlab._text import cut as _cut
from constraintlab._text import type_name as _type_name
from constraintlab.analysis.registry import lookup
from constraintlab.analysis.registry import metric_table as analysis_metric_table
from constraintlab.encode.store import TokenProfiles, parse_energy_column
from constraintlab.errors import ConfigError, ConstraintlabError
from constraintlab.report import plots
from constraintlab.report.html import render_html, verdict_sentence

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2

#: Metrics of the dataset section (what io and encode found), ``{name: (key, description)}``;
#: the analyzers declare theirs (:func:`constraintlab.analysis.registry.metric_table`).
DATASET_METRICS: dict[str, tuple[str, str]] = {
    "invalid_records": ("invalid_records", "records that could not be used (findings in "
                        "dataset.findings: blank target, truncated away, ...); excluded"),
    "truncated_examples": ("truncated_examples", "examples cut at --max-length (column "
                           "n_truncated of examples.csv: tokens dropped); kept, their targets "
                           "scored in part"),
}


def metric_table() -> dict[str, tuple[str, str, str]]:
    """Every gate metric: ``{name: (report.json section, key in it, description)}``."""
    table = {name: ("dataset", key, desc) for name, (key, desc) in DATASET_METRICS.items()}
    for name, (section, m) in analysis_metric_table().items():
        table[name] = (section, m.key, m.description)
    return table


#: The flat metrics of :meth:`Report.metrics` (what gate conditions can name), documented once.
METRICS: dict[str, str] = {name: desc for name, (_, _, desc) in metric_table().items()}
FILES = {"json": "report.json", "csv": "examples.csv", "parquet": "examples.parquet",
         "html": "report.html", "graph": "constraint_graph.graphml"}


def required_sections() -> tuple[str, ...]:
    """The report.json sections a report must have: dataset, model, projection, the verdict's
    ``system`` and every section a gate metric lives in (:func:`metric_table`)."""
    sections = ["dataset", "model", "projection", "system"]
    for section, _, _ in metric_table().values():
        if section not in sections:
            sections.append(section)
    return tuple(sections)


def nx_errors() -> type[Exception]:
    """networkx's base exception (graphml files the reader refuses)."""
    import networkx as nx

    return nx.NetworkXException


def _read_report_json(json_path: Path) -> dict:
    try:
        info = json_path.stat()
    except FileNotFoundError:
        raise ConstraintlabError(f"{json_path}: no such file; run constraintlab analyze "
                                 "first") from None
    except OSError as err:
        raise ConstraintlabError(f"{json_path}: cannot read it: {err.strerror or err}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConstraintlabError(f"{json_path}: not a regular file")
    try:
        raw = json_path.read_bytes()
    except OSError as err:
        raise ConstraintlabError(f"{json_path}: cannot read it: {err.strerror or err}") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ConstraintlabError(f"{json_path}: not UTF-8 text ({err.reason} at byte "
                                 f"{err.start})") from None
    except json.JSONDecodeError as err:
        raise ConstraintlabError(f"{json_path}: not valid JSON ({err.msg} at line {err.lineno} "
                                 f"column {err.colno}; truncated by an interrupted write?)") \
            from None
    except RecursionError:
        raise ConstraintlabError(f"{json_path}: not a constraintlab report: JSON nested too "
                                 "deeply") from None
    except ValueError as err:                  # ints beyond Python's digit limit
        raise ConstraintlabError(f"{json_path}: not valid JSON: {_cut(str(err))}") from None
    if not isinstance(data, dict):
        raise ConstraintlabError(f"{json_path}: expected a JSON object (a constraintlab "
                                 f"report), got {_type_name(data, json=True)}")
    return data


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
    tokens : TokenProfiles, optional
        Per-token profiles of the examples' targets, in the row order of ``examples``
        (:meth:`token_profile`).
    """

    def __init__(self, data: dict, examples: pd.DataFrame, edges: pd.DataFrame,
                 tokens: TokenProfiles | None = None) -> None:
        self.data = data
        self.examples = examples
        self.edges = edges
        self.tokens = tokens
        #: The directory the report's files are in (set by :meth:`save` and :meth:`load`;
        #: ``constraintlab.analyze`` saves into ``out``); None for a report not on disk.
        self.path: Path | None = None

    # -- tables ------------------------------------------------------------------------------
    def metrics(self) -> dict[str, Any]:
        """The flat numbers the gate and the terminal summary use (names: :data:`METRICS`),
        each looked up where :func:`metric_table` says it is.

        A metric whose report section is missing or null (not measured, e.g. a store without
        token profiles) is ``nan``: every numeric gate condition on it fails.
        """
        out = {}
        for name, (section, key, _) in metric_table().items():
            try:
                value = lookup(self.data.get(section), key)
            except KeyError:
                value = None
            out[name] = math.nan if value is None else value
        return out

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

    def zone_members(self, zone: int) -> list[int]:
        """Example indices of zone ``zone`` (``zones.zones[*].id``), as listed in report.json.

        Raises
        ------
        ConfigError
            The report has no zones section, no such zone, or the zone is empty.
        """
        try:
            zones = self.data["zones"]["zones"]
        except (KeyError, TypeError):
            raise ConfigError("the report has no zones section (zones.zones)") from None
        for z in zones:
            if z.get("id") == zone:
                members = [int(m) for m in z.get("members", [])]
                if not members:
                    raise ConfigError(f"zone {zone} has no members")
                return members
        if not zones:
            raise ConfigError(f"zone {zone} not found: the report has no zones (no group of "
                              "examples was coupled strongly enough); choose examples instead")
        ids = ", ".join(str(z.get("id")) for z in zones)
        raise ConfigError(f"zone {zone} not found in the report (zones: {ids})")

    def suspects(self) -> pd.DataFrame:
        """The suspect examples, most suspect first (index = example index).

        Columns: ``suspect_rank``, ``suspect_p`` (the combined p-value: it ranks where the
        score rounds to 1), ``suspect_score`` (in [0, 1]; ``is_suspect`` when it reaches
        ``suspects.threshold``), ``suspect_reasons`` (``;``-separated codes),
        ``suspect_detail`` (what a rule judged false), ``input_dependence`` (nats of the
        target its input explains), ``ending_surprise``,
        ``loss`` (the ``target_surprise`` signal, nats/token), ``input``, ``target``. Every
        flagged example, not only the listed ones (:mod:`constraintlab.analysis.suspects` says
        how the score is calibrated).
        """
        self._section("suspects")
        cols = ["suspect_rank", "suspect_p", "suspect_score", "suspect_reasons",
                "suspect_detail", "input_dependence", "ending_surprise", "loss", "input",
                "target"]
        t = self.examples
        flagged = t[t["is_suspect"].astype(bool)]
        order = flagged.sort_values(["suspect_evidence", "suspect_score"], ascending=False,
                                    kind="stable")
        return order[[c for c in cols if c in order.columns]]

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

    def volatile_examples(self) -> pd.DataFrame:
        """The most volatile examples (highest score first), index = example index.

        Columns: ``volatility``, ``percentile`` (share of examples scoring as low or lower),
        ``mean_nll``, ``max_nll``, ``topk_miss_share``, ``grad_norm``, ``n_tokens`` and
        ``worst_tokens`` (the most surprising target tokens as ``"piece" nll``).
        """
        cols = ["volatility", "percentile", "mean_nll", "max_nll", "topk_miss_share",
                "grad_norm", "n_tokens", "worst_tokens"]
        rows = [{**{k: v[k] for k in cols[:-1]}, "index": v["id"],
                 "worst_tokens": ", ".join(f"{json.dumps(t['text'], ensure_ascii=False)} "
                                           f"{t['nll']:.2f}" for t in v["tokens"])}
                for v in self._section("volatility")["most_volatile"]]
        return pd.DataFrame(rows, columns=["index", *cols]).set_index("index")

    @property
    def families(self) -> pd.DataFrame:
        """The variant families, index = family id.

        Columns: ``size``, ``n_variants``, ``base`` (the member the others are compared with),
        ``coherent`` (None when not measured), ``reasons`` (why not, comma-separated),
        ``mean_cos``, ``first_direction_share``, ``opposing_pairs``, ``contradicting_pairs``,
        ``volatility_spread`` (max - min score of the members), ``label``, ``members``.
        """
        cols = ["size", "n_variants", "base", "coherent", "reasons", "mean_cos",
                "first_direction_share", "opposing_pairs", "contradicting_pairs",
                "volatility_spread", "label", "members"]
        rows = []
        for f in self._section("families")["families"]:
            coh = f.get("coherence") or {}
            rows.append({"id": f["id"], "size": f["size"], "n_variants": f["n_variants"],
                         "base": f["base"], "coherent": f["coherent"],
                         "reasons": ", ".join(f["reasons"]),
                         "mean_cos": coh.get("mean_cos", math.nan),
                         "first_direction_share": coh.get("first_direction_share", math.nan),
                         "opposing_pairs": coh.get("opposing_pairs"),
                         "contradicting_pairs": f.get("contradicting_pairs"),
                         "volatility_spread": (f.get("volatility") or {}).get("spread",
                                                                               math.nan),
                         "label": f["label"], "members": f["members"]})
        return pd.DataFrame(rows, columns=["id", *cols]).set_index("id")

    def layer_map(self, example: int | None = None, zone: int | None = None,
                  share: bool = False) -> pd.DataFrame:
        """Where the constraints land: squared gradient norm per (layer, module kind).

        Parameters
        ----------
        example : int, optional
            One example's map (its ``energy:<layer>:<kind>`` columns; the cells sum to its
            ``grad_norm ** 2``).
        zone : int, optional
            A zone's map (kept for the highest-pressure zones, see ``report.json``).
        share : bool
            Divide by the total, so the cells sum to 1.

        Returns
        -------
        DataFrame (layers, kinds)
            Index ``layer``, columns ``kind``; the dataset's map unless ``example`` or ``zone``.
        """
        if example is not None and zone is not None:
            raise ConstraintlabError("layer_map: give example or zone, not both")
        section = self.data.get("layer_map")
        if example is not None:
            return self._example_layer_map(example, section, share)
        if not section:
            raise ConstraintlabError("this report has no layer map (the feature store has no "
                                     "per-site energies)")
        if zone is None:
            cell = section["dataset"]
        elif str(zone) in section["zones"]:
            cell = section["zones"][str(zone)]
        else:
            raise ConstraintlabError(
                f"no layer map for zone {zone}; the report keeps maps for zones "
                f"{', '.join(section['zones']) or '(none)'} (AnalysisConfig.layer_map_zones)")
        return pd.DataFrame(cell["share" if share else "energy"],
                            index=pd.Index(section["layers"], name="layer"),
                            columns=pd.Index(section["kinds"], name="kind"), dtype=float)

    def _example_layer_map(self, example: int, section: dict | None, share: bool
                           ) -> pd.DataFrame:
        row = self._row(example)
        sites = {c: parse_energy_column(c) for c in self.examples.columns}
        sites = {c: site for c, site in sites.items() if site is not None}
        if not sites:
            raise ConstraintlabError("this report has no per-site energies "
                                     "(energy:<layer>:<kind> columns in examples)")
        values = self.examples.iloc[row][list(sites)].astype(float)
        cells = pd.DataFrame({"layer": [s[0] for s in sites.values()],
                              "kind": [s[1] for s in sites.values()],
                              "energy": values.to_numpy()})
        table = cells.pivot_table(index="layer", columns="kind", values="energy",
                                  aggfunc="sum", fill_value=0.0, sort=False)
        layers = section["layers"] if section else sorted(table.index)
        kinds = section["kinds"] if section else list(dict.fromkeys(cells["kind"]))
        table = table.reindex(index=layers, columns=kinds, fill_value=0.0).astype(float)
        table.index.name, table.columns.name = "layer", "kind"
        if share:
            total = float(table.to_numpy().sum())
            table = table / total if total > 0 else table * 0.0
        return table

    def token_profile(self, example: int) -> pd.DataFrame:
        """One row per target token of ``example`` (index = position): ``token`` (text piece),
        ``id``, ``nll`` (``-log p``, nats) and ``rank`` (0 = the model's top prediction)."""
        if self.tokens is None:
            raise ConstraintlabError("this report has no token profiles (tokens.npz and "
                                     "tokens.jsonl beside report.json); rerun constraintlab "
                                     "analyze to get them")
        profile = self.tokens.profile(self._row(example))
        profile.index.name = "position"
        return profile

    def _row(self, example: int) -> int:
        try:
            row = self.examples.index.get_loc(example)
        except KeyError:
            raise ConstraintlabError(f"no example {example!r} in this report (indices "
                                     f"{self.examples.index.min()}..."
                                     f"{self.examples.index.max()})") from None
        if not isinstance(row, int):
            raise ConstraintlabError(f"example index {example!r} is not unique in the report")
        return row

    def _section(self, name: str) -> dict:
        section = self.data.get(name)
        if not section:
            raise ConstraintlabError(f"this report has no {name} section (not measured: see "
                                     "report.json)")
        return section

    # -- words ------------------------------------------------------------------------------
    def verdict(self) -> str:
        """The verdict in one sentence with its numbers."""
        return verdict_sentence(self.data)

    def advice(self) -> list[str]:
        """What to do next, from the numbers (one sentence each, most pressing first;
        :mod:`constraintlab.analysis.advice`)."""
        return list((self.data.get("advice") or {}).get("items", []))

    # -- figures ------------------------------------------------------------------------------
    def plot_spectrum(self) -> Figure:
        """Singular values with rank and effective rank marked."""
        return plots.spectrum_figure(self.data["system"])

    def plot_growth(self) -> Figure:
        """The saturation curve: independent directions against examples (nested subsamples)."""
        return plots.growth_figure(self._section("growth"))

    def plot_cosines(self) -> Figure:
        """Histogram of pair cosines with the conflict threshold."""
        return plots.cosine_histogram_figure(self.data["conflict"])

    def plot_zones(self) -> Figure:
        """The constraint graph coloured by zone (highest-pressure zones first)."""
        zone_of = {int(i): int(z) for i, z in self.examples["zone"].items() if z == z}
        ranked = [z["id"] for z in self.data["zones"]["zones"]]
        return plots.zones_figure(list(self.examples.index), self.edges.itertuples(index=False),
                                  zone_of, ranked)

    def plot_zone_map(self) -> Figure:
        """One node per zone (the 15 most pressing), joined by the links between members."""
        zone_of = {int(i): int(z) for i, z in self.examples["zone"].items() if z == z}
        return plots.zone_map_figure(self.data["zones"]["zones"],
                                     self.edges.itertuples(index=False), zone_of)

    def plot_layer_map(self, zone: int | None = None, example: int | None = None) -> Figure:
        """Heatmap of the layer map's shares (the dataset's, a zone's or an example's)."""
        what = ("the dataset" if zone is None and example is None
                else f"zone {zone}" if zone is not None else f"record {example}")
        table = self.layer_map(example=example, zone=zone, share=True)
        return plots.layer_map_figure(table.to_numpy().tolist(), list(table.index),
                                      list(table.columns), title=f"Layer map of {what}")

    def _figures(self) -> dict[str, bytes]:
        figures = {"spectrum": plots.figure_to_png(self.plot_spectrum()),
                   "cosines": plots.figure_to_png(self.plot_cosines()),
                   "zones": plots.figure_to_png(self.plot_zones()),
                   "zone_map": plots.figure_to_png(self.plot_zone_map())}
        if self.data.get("growth"):
            figures["growth"] = plots.figure_to_png(self.plot_growth())
        if self.data.get("layer_map"):
            figures["layer_map"] = plots.figure_to_png(self.plot_layer_map())
        return figures

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
        # CSV injection escaped (see the module docstring); CRLF rows (RFC 4180), so a text
        # with a lone CR is quoted and cannot split its row
        csv_escape_frame(self.examples).to_csv(out / FILES["csv"], lineterminator="\r\n")
        try:
            self.examples.to_parquet(out / FILES["parquet"])
        except ImportError:
            pass
        (out / FILES["html"]).write_text(self.to_html(), encoding="utf-8")
        nx.write_graphml(self.graph(), out / FILES["graph"])
        if self.tokens is not None:
            self.tokens.save(out)
        else:   # never leave another report's profiles beside this one
            for name in (TokenProfiles.NPZ, TokenProfiles.JSONL):
                (out / name).unlink(missing_ok=True)
        self.path = out
        return out

    @classmethod
    def load(cls, directory: str | Path) -> Report:
        """Read a report written by :meth:`save`; a damaged report directory is one
        :class:`ConstraintlabError` ``path: what is wrong`` (CLI exit 2), never a traceback.

        Checked, in this order: ``report.json`` is there and a regular file, is UTF-8 JSON (not
        truncated, not nested too deeply), is an object of this schema version with the
        sections :func:`required_sections` names (objects; ``null`` where an analyzer could
        not run); ``examples.csv`` and ``constraint_graph.graphml`` are there and readable; the
        metrics and the verdict can be computed from it.

        Parameters
        ----------
        directory : str or Path
            A report directory, or its ``report.json``.
        """
        where = Path(directory)
        json_path = where / FILES["json"] if where.is_dir() else where
        data = _read_report_json(json_path)
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ConstraintlabError(f"{json_path}: report schema version "
                                     f"{_cut(str(data.get('schema_version')), 40)}; this "
                                     f"constraintlab reads version {SCHEMA_VERSION}")
        sections = required_sections()
        missing = [name for name in sections if name not in data]
        if missing:
            raise ConstraintlabError(f"{json_path}: lacks the section(s) {', '.join(missing)}: "
                                     "not a complete constraintlab report (rerun constraintlab "
                                     "analyze)")
        # an analyzer that could not run leaves its section null (e.g. volatility without token
        # profiles); the verdict's and the run's sections are always objects
        always = ("dataset", "model", "projection", "system")
        bad = [f"{name} is {_type_name(data[name], json=True)}" for name in sections
               if not isinstance(data[name], dict)
               and (data[name] is not None or name in always)]
        if bad:
            raise ConstraintlabError(f"{json_path}: sections must be objects: {', '.join(bad)}")
        for key in ("csv", "graph"):
            other = json_path.parent / FILES[key]
            if not other.is_file():
                raise ConstraintlabError(f"{other}: missing (the report directory is incomplete: "
                                         "rerun constraintlab analyze)")
        try:
            report = cls._load_files(json_path, data)
        except ConstraintlabError:
            raise
        except (SyntaxError, nx_errors()) as err:     # xml's ParseError is a SyntaxError
            raise ConstraintlabError(f"{json_path.parent / FILES['graph']}: cannot read the "
                                     f"constraint graph: {type(err).__name__}: {_cut(str(err))}") \
                from None
        except (zipfile.BadZipFile, EOFError, KeyError, TypeError) as err:
            raise ConstraintlabError(f"{json_path.parent / 'tokens.npz'}: cannot read the token "
                                     f"profiles: {type(err).__name__}: {_cut(str(err))} (delete "
                                     "tokens.npz and tokens.jsonl to read the report without "
                                     "them)") from None
        except (OSError, ValueError) as err:          # examples.csv errors are named already
            raise ConstraintlabError(f"{json_path.parent}: cannot read {FILES['graph']} or the "
                                     "token profiles (tokens.npz, tokens.jsonl): "
                                     f"{type(err).__name__}: {_cut(str(err))}") from None
        try:
            report.metrics()
            report.verdict()
        except (KeyError, TypeError, AttributeError, IndexError, ValueError,
                ZeroDivisionError) as err:
            what = f"missing key {err}" if isinstance(err, KeyError) else \
                f"{type(err).__name__}: {_cut(str(err))}"
            raise ConstraintlabError(f"{json_path}: malformed report ({what}); rerun "
                                     "constraintlab analyze") from None
        return report

    @classmethod
    def _load_files(cls, path: Path, data: dict) -> Report:
        """The report of ``data`` (report.json at ``path``, checked) with the files beside it."""
        csv = path.parent / FILES["csv"]
        try:
            examples = csv_unescape_frame(pd.read_csv(csv, index_col="index",
                                                      keep_default_na=False, na_values=[""]))
        except FileNotFoundError:
            raise ConstraintlabError(f"{csv}: missing; rerun constraintlab analyze") from None
        except (OSError, ValueError) as err:   # ParserError, EmptyDataError, no index column
            raise ConstraintlabError(f"{csv}: cannot read the examples table: "
                                     f"{str(err)[:300]}") from None
        g = nx.read_graphml(path.parent / FILES["graph"], node_type=int)
        edges = pd.DataFrame(sorted((min(a, b), max(a, b), w["cos"]) for a, b, w in
                                    g.edges(data=True)), columns=["a", "b", "cos"])
        tokens = TokenProfiles.load(path.parent)
        if tokens is not None and len(tokens) != len(examples):
            logger.warning("%s: token profiles cover %d examples, the report has %d; ignored",
                           path.parent, len(tokens), len(examples))
            tokens = None
        report = cls(data, examples, edges, tokens=tokens)
        report.path = path.parent
        return report

    def _repr_html_(self) -> str:
        m = self.metrics()
        rows = "".join(f"<tr><th>{k}</th><td>{v if not isinstance(v, float) else f'{v:.4g}'}"
                       "</td></tr>" for k, v in m.items())
        import html as _html
        return (f"<p><b>constraintlab report</b>: {_html.escape(self.verdict())}</p>"
                f"<table>{rows}</table>")

    def __repr__(self) -> str:
        return f"<Report {self.data['dataset']['source']}: {self.verdict()}>"
