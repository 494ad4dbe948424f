"""``layer_map``: where the constraints land in the network (analyzer ``layers``)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from constraintlab.encode.store import parse_energy_column
from constraintlab.errors import ConstraintlabError
from constraintlab.report._format import _e, _img, _num, number_line
from constraintlab.report.plots import STYLE
from constraintlab.report.sections import Part, Section, View


def layer_map_figure(share: Sequence[Sequence[float]], layers: Sequence[int],
                     kinds: Sequence[str], *, title: str = "Layer map") -> Figure:
    """Heatmap of a layer map: the share of the squared gradient norm on each LoRA site.

    Sequential ``cividis`` colormap (readable with the common colour-vision deficiencies and in
    grey-scale); each cell is annotated with its share when the map has at most 300 cells.

    Parameters
    ----------
    share : (L, K) nested lists of float
        Share of each (layer, module kind) cell (sums to 1; all 0 when the map is empty).
    layers : (L,) int
        Row labels (layer index; -1 outside the numbered blocks).
    kinds : (K,) str
        Column labels (module kinds, e.g. ``self_attn.q_proj``).
    title : str
    """
    values = [[float(v) for v in row] for row in share]
    n_l, n_k = len(values), len(values[0]) if values else 0
    top = max((v for row in values for v in row), default=0.0)
    with matplotlib.rc_context({**STYLE, "axes.grid": False}):
        fig = Figure(figsize=(max(4.0, min(1.0 * n_k + 2.4, 10.0)),
                              max(3.0, min(0.32 * n_l + 1.8, 12.0))))
        ax = fig.subplots()
        image = ax.imshow(values if n_l and n_k else [[0.0]], cmap="cividis", aspect="auto",
                          vmin=0.0, vmax=top if top > 0 else 1.0, interpolation="nearest")
        if n_l * n_k <= 300:
            for i, row in enumerate(values):
                for j, v in enumerate(row):
                    # cividis is dark at the bottom of the scale: light text there
                    ax.text(j, i, f"{v:.0%}" if v >= 0.005 or v == 0 else "<1%",
                            ha="center", va="center", fontsize=7,
                            color="white" if top <= 0 or v / top < 0.55 else "black")
        ax.set_xticks(range(n_k), [str(k) for k in kinds], rotation=30, ha="right")
        ax.set_yticks(range(n_l), [str(layer) for layer in layers])
        ax.set_xlabel("module kind")
        ax.set_ylabel("layer")
        ax.set_title(title)
        bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02,
                           format=PercentFormatter(1.0, decimals=0))
        bar.set_label("share of squared grad norm")
        fig.tight_layout()
    return fig

def layer_map(report, example: int | None = None, zone: int | None = None,
              share: bool = False) -> pd.DataFrame:
    """Where the constraints land: squared gradient norm per (layer, module kind).

    Parameters
    ----------
    example : int, optional
        One example's map (its ``energy:<layer>:<kind>`` columns, one per cell, as the layer
        map analyzer wrote them; the cells sum to its ``grad_norm ** 2``).
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
    section = report.data.get("layer_map")
    if example is not None:
        return _example_map(report, example, section, share)
    if not section:
        raise ConstraintlabError("this report has no layer map (the feature store has no "
                                 "per-site energies)")
    index = pd.Index(section["layers"], name="layer")
    columns = pd.Index(section["kinds"], name="kind")
    if zone is None:
        cell = section["dataset"]
    elif str(zone) in section["zones"]:
        cell = section["zones"][str(zone)]
    else:
        raise ConstraintlabError(
            f"no layer map for zone {zone}; the report keeps maps for zones "
            f"{', '.join(section['zones']) or '(none)'} (AnalysisConfig.layer_map_zones)")
    return pd.DataFrame(cell["share" if share else "energy"], index=index, columns=columns,
                        dtype=float)


def _example_map(report, example: int, section: dict | None, share: bool) -> pd.DataFrame:
    """Example ``example``'s row of the analyzer's table laid out on the map's grid: cell
    (layer, kind) is its column ``energy:<layer>:<kind>`` (one column per cell; 0 where the
    model has no such site). The grid is the section's, or read off the column names of a
    report without one."""
    row = report.examples.iloc[report._row(example)]
    sites = {c: parse_energy_column(c) for c in report.examples.columns}
    sites = {c: site for c, site in sites.items() if site is not None}
    if not sites:
        raise ConstraintlabError("this report has no per-site energies "
                                 "(energy:<layer>:<kind> columns in examples)")
    layers = section["layers"] if section else sorted({layer for layer, _ in sites.values()})
    kinds = section["kinds"] if section else list(dict.fromkeys(k for _, k in sites.values()))
    table = pd.DataFrame([[float(row.get(f"energy:{layer}:{kind}", 0.0)) for kind in kinds]
                          for layer in layers], index=pd.Index(layers, name="layer"),
                         columns=pd.Index(kinds, name="kind"), dtype=float)
    if share:
        total = float(table.to_numpy().sum())
        table = table / total if total > 0 else table * 0.0
    return table


def plot_layer_map(report, zone: int | None = None, example: int | None = None) -> Figure:
    """Heatmap of the layer map's shares (the dataset's, a zone's or an example's)."""
    what = ("the dataset" if zone is None and example is None
            else f"zone {zone}" if zone is not None else f"record {example}")
    table = layer_map(report, example=example, zone=zone, share=True)
    return layer_map_figure(table.to_numpy().tolist(), list(table.index),
                                  list(table.columns), title=f"Layer map of {what}")


def _figure(report) -> Figure | None:
    return plot_layer_map(report) if report.data.get("layer_map") else None


def _top(lm: dict, cell: dict) -> tuple[float, float]:
    """The shares of ``cell``'s top layer and top module kind."""
    return (cell["by_layer"][lm["layers"].index(cell["top_layer"])],
            cell["by_kind"][lm["kinds"].index(cell["top_kind"])])


def _html(v: View) -> list[str]:
    lm = v.data.get("layer_map")
    out = ["<h2>Layer map: where the constraints land in the network</h2>"]
    if not lm:
        return [*out, "<p>Not measured: the feature store has no per-site energies.</p>"]
    ds = lm["dataset"]
    out += [_img(v.figures.get("layer_map"),
                 "heatmap of the squared gradient norm by layer and module kind"),
            "<p class='muted'>Each example's squared gradient norm splits exactly over the "
            "LoRA sites (layer, module kind); the map is the dataset's sum as shares.</p>"]
    if ds["top_layer"] is not None:
        layer_share, kind_share = _top(lm, ds)
        out.append(f"<p>Top layer <b>{ds['top_layer']}</b> ({layer_share:.0%} of the "
                   f"squared gradient norm); top module kind <b>{_e(ds['top_kind'])}</b> "
                   f"({kind_share:.0%}).</p>")
    if lm["zones"]:
        out.append("<p>Highest-pressure zones:</p><table><tr><th>zone</th><th>top layer</th>"
                   "<th>its share</th><th>top module kind</th><th>its share</th>"
                   "<th>squared gradient norm</th></tr>")
        for zone, zm in lm["zones"].items():
            if zm["top_layer"] is None:
                continue
            layer_share, kind_share = _top(lm, zm)
            out.append(f"<tr><td class=num>{_e(zone)}</td><td class=num>{zm['top_layer']}</td>"
                       f"<td class=num>{layer_share:.0%}</td>"
                       f"<td>{_e(zm['top_kind'])}</td><td class=num>{kind_share:.0%}</td>"
                       f"<td class=num>{_num(zm['total'])}</td></tr>")
        out.append("</table>")
    return out


def _line(v: View) -> list[str]:
    lm = v.data.get("layer_map")
    if not lm or lm["dataset"]["top_layer"] is None:
        return []
    ds = lm["dataset"]
    layer_share, kind_share = _top(lm, ds)
    return [number_line("layer map", f"layer {ds['top_layer']}",
                        f"{layer_share:.0%} of the squared gradient norm; {ds['top_kind']} "
                        f"{kind_share:.0%}")]


_MATRIX = {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}
_VECTOR = {"type": "array", "items": {"type": "number"}}
#: One map (the dataset's, or a zone's): energy and share by (layer, kind), their margins.
_MAP = {
    "type": "object",
    "required": ["energy", "share", "total", "by_layer", "by_kind", "top_layer", "top_kind"],
    "properties": {
        "energy": _MATRIX,
        "share": _MATRIX,
        "total": {"type": "number", "minimum": 0},
        "by_layer": _VECTOR,
        "by_kind": _VECTOR,
        "top_layer": {"type": ["integer", "null"]},
        "top_kind": {"type": ["string", "null"]},
    },
}

#: The contract of ``report.json["layer_map"]`` (JSON Schema), assembled into the report's
#: by :func:`constraintlab.report.schema.report_schema`.
SCHEMA: dict = {
    "type": ["object", "null"],
    "description": (
        "Layer map: each example's squared gradient norm split over the LoRA sites (rows = layers,"
        " columns = module kinds), for the dataset and the highest-pressure zones; null when the "
        "store has no per-site energies."
    ),
    "required": ["layers", "kinds", "dataset", "zones"],
    "properties": {
        "layers": {"type": "array", "items": {"type": "integer"}},
        "kinds": {"type": "array", "items": {"type": "string"}},
        "n_sites": {"type": "integer", "minimum": 0},
        "dataset": _MAP,
        "zones": {
            "type": "object",
            "propertyNames": {"pattern": "^-?[0-9]+$"},
            "additionalProperties": _MAP,
        },
    },
}

SECTION = Section(
    "layer_map", schema=SCHEMA,
    parts=(Part("body", 130, _html), Part("numbers", 100, _line)),
    figures={"layer_map": _figure},
    methods={"layer_map": layer_map, "plot_layer_map": plot_layer_map})
