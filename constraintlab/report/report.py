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
``report.schema.json``    the JSON Schema ``report.json`` follows (``report_schema()``)
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

from constraintlab._text import csv_escape_frame, csv_unescape_frame
from constraintlab._text import cut as _cut
from constraintlab._text import type_name as _type_name
from constraintlab.analysis.registry import lookup
from constraintlab.analysis.registry import metric_table as analysis_metric_table
from constraintlab.encode.store import TokenProfiles
from constraintlab.errors import ConstraintlabError
from constraintlab.report import plots
from constraintlab.report.html import render_html
from constraintlab.report.schema import report_schema
from constraintlab.report.sections import install, sections

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
         "html": "report.html", "graph": "constraint_graph.graphml",
         "schema": "report.schema.json"}


def required_sections() -> tuple[str, ...]:
    """The report.json sections a report must have: dataset, model, projection, the verdict's
    ``system`` and every section a gate metric lives in (:func:`metric_table`)."""
    sections = ["dataset", "model", "projection", "system"]
    for section, _, _ in metric_table().values():
        if section not in sections:
            sections.append(section)
    return tuple(sections)


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
    """Everything one ``analyze`` found: it formats and files (load, save, paths, the gate's
    metrics), and computes nothing.

    Each section's accessors (``zones``, ``suspects()``, ``layer_map()``, ``plot_growth()``,
    ``verdict()``...) and its part of ``report.html`` and of the terminal summary are declared
    beside that section, in :mod:`constraintlab.report.sections`, and added to this class when
    the module loads.

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

    # -- figures ------------------------------------------------------------------------------
    def _figures(self) -> dict[str, bytes]:
        """The page's figures as PNG, each drawn by the section that declares it."""
        figures = {}
        for section in sections():
            for name, draw in section.figures.items():
                fig = draw(self)
                if fig is not None:
                    figures[name] = plots.figure_to_png(fig)
        return figures

    # -- files ------------------------------------------------------------------------------
    def to_json(self) -> str:
        """``report.json`` text."""
        return json.dumps(self.data, indent=1, ensure_ascii=False, allow_nan=False)

    def to_html(self) -> str:
        """``report.html`` text."""
        return render_html(self.data, self.examples, self._figures())

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
        (out / FILES["schema"]).write_text(json.dumps(report_schema(), indent=2,
                                                      ensure_ascii=False) + "\n", encoding="utf-8")
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
        except (SyntaxError, nx.NetworkXException) as err:     # xml's ParseError is a SyntaxError
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


#: Each section's accessors (``report.zones``, ``report.suspects()``, ``report.plot_growth()``,
#: ``report.verdict()``...), declared beside its presentation in
#: :mod:`constraintlab.report.sections`.
install(Report)
