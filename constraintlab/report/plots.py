"""Figures of a report. Each takes plain numbers from ``report.json`` and returns a figure.

Colours are the Okabe-Ito palette (distinguishable with the common colour-vision deficiencies)
and every mark that carries meaning also differs in line style or hatch, so the figures read in
grey-scale print too. Figures are built with matplotlib's object-oriented API (no pyplot, no
global backend), so they render alike in a terminal, a CI job and Jupyter. Nothing here computes
a finding.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import matplotlib
import networkx as nx
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

OKABE_ITO = {"black": "#000000", "orange": "#E69F00", "sky": "#56B4E9", "green": "#009E73",
             "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00",
             "purple": "#CC79A7"}
_STYLE = {"figure.dpi": 110, "axes.spines.top": False, "axes.spines.right": False,
          "axes.grid": True, "grid.alpha": 0.3, "font.size": 9}


def spectrum_figure(system: Mapping[str, Any]) -> Figure:
    """Singular values (log scale) with the numerical rank and effective rank marked.

    Parameters
    ----------
    system : dict
        ``report["system"]``: needs ``singular_values`` (descending), ``rank``,
        ``effective_rank``, ``rank_tolerance``.
    """
    s = [float(v) for v in system["singular_values"]]
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(6.4, 3.4))
        ax = fig.subplots()
        xs = range(1, len(s) + 1)
        positive = [(x, v) for x, v in zip(xs, s, strict=True) if v > 0]
        if positive:
            ax.semilogy(*zip(*positive, strict=True), color=OKABE_ITO["blue"], lw=1.6,
                        label="singular values")
        tol = system.get("rank_tolerance")
        if tol:
            ax.axhline(tol, color=OKABE_ITO["black"], ls=":", lw=1,
                       label=f"rank tolerance {tol:.3g}")
        ax.axvline(system["rank"], color=OKABE_ITO["vermillion"], ls="--", lw=1.4,
                   label=f"rank {system['rank']}")
        ax.axvline(system["effective_rank"], color=OKABE_ITO["green"], ls="-.", lw=1.4,
                   label=f"effective rank {system['effective_rank']:.1f}")
        ax.set_xlabel("direction (sorted by strength)")
        ax.set_ylabel("singular value")
        ax.set_title("How many independent constraints the data imposes")
        ax.legend(loc="upper right", frameon=False)
        fig.tight_layout()
    return fig


def growth_figure(growth: Mapping[str, Any]) -> Figure:
    """The saturation curve: independent directions against examples, on nested subsamples.

    Parameters
    ----------
    growth : dict
        ``report["growth"]``: ``curve`` (``n``, ``rank``, ``effective_rank``, ``energy_rank``,
        ``energy``), ``verdict``, ``slope_per_100``; ``capacity`` when known.
    """
    c = growth["curve"]
    n = [int(v) for v in c["n"]]
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(6.4, 3.4))
        ax = fig.subplots()
        ax.plot(n, n, color=OKABE_ITO["black"], ls=":", lw=1,
                label="one new direction per example")
        ax.plot(n, c["rank"], color=OKABE_ITO["vermillion"], ls="--", marker="s", ms=3,
                lw=1.2, label="rank")
        ax.plot(n, c["effective_rank"], color=OKABE_ITO["green"], ls="-.", marker="^", ms=3,
                lw=1.2, label="effective rank")
        ax.plot(n, c["energy_rank"], color=OKABE_ITO["blue"], ls="-", marker="o", ms=4,
                lw=2.0, label=f"directions carrying {100 * float(c['energy']):.0f} % of the "
                              "energy (the verdict's curve)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("examples (seeded nested subsamples)")
        ax.set_ylabel("independent directions")
        slope = growth.get("slope_per_100")
        ax.set_title(f"{str(growth['verdict']).replace('_', ' ')}"
                     + (f": about {slope:.1f} new directions per 100 more examples"
                        if slope is not None else ""))
        ax.legend(loc="upper left", frameon=False, fontsize=8)
        fig.tight_layout()
    return fig


def cosine_histogram_figure(conflict: Mapping[str, Any]) -> Figure:
    """Histogram of pair cosines with the conflict and alignment thresholds (``+-tau``).

    Parameters
    ----------
    conflict : dict
        ``report["conflict"]``: needs ``histogram`` {``edges`` (B+1,), ``counts`` (B,)} and
        ``tau``.
    """
    edges = [float(e) for e in conflict["histogram"]["edges"]]
    counts = [float(c) for c in conflict["histogram"]["counts"]]
    tau = float(conflict["tau"])
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(6.4, 3.2))
        ax = fig.subplots()
        widths = [b - a for a, b in itertools.pairwise(edges)]
        colours = [OKABE_ITO["vermillion"] if b <= -tau else OKABE_ITO["sky"] if a >= tau
                   else "#999999" for a, b in itertools.pairwise(edges)]
        hatches = ["////" if b <= -tau else "" for b in edges[1:]]
        bars = ax.bar(edges[:-1], counts, width=widths, align="edge", color=colours,
                      edgecolor="white", linewidth=0.2)
        for bar, hatch in zip(bars, hatches, strict=True):
            bar.set_hatch(hatch)
        if any(c > 0 for c in counts):
            ax.set_yscale("log")
        ax.axvline(-tau, color=OKABE_ITO["black"], ls="--", lw=1,
                   label=f"conflict: cos < -{tau:.3g}")
        ax.axvline(tau, color=OKABE_ITO["black"], ls=":", lw=1,
                   label=f"aligned: cos > {tau:.3g}")
        ax.set_xlim(-1, 1)
        ax.set_xlabel("cosine of two examples' constraints")
        ax.set_ylabel("pairs")
        ax.set_title("Do examples pull together or against each other?")
        ax.legend(loc="upper left", frameon=False)
        fig.tight_layout()
    return fig


def zones_figure(nodes: Iterable[int], edges: Iterable[tuple[int, int, float]],
                 zone_of: Mapping[int, int], ranked_zones: Sequence[int],
                 seed: int = 0) -> Figure:
    """The constraint graph, nodes coloured by zone, conflict edges dashed.

    Only examples with at least one edge are drawn (outliers are listed in the report).

    Parameters
    ----------
    nodes : iterable of int
        Example indices.
    edges : iterable of (a, b, cos)
        Signed edges of the constraint graph.
    zone_of : mapping index -> zone id
    ranked_zones : sequence of zone ids, highest pressure first (the first five get colours).
    seed : int
        Seed of the (spring) layout, so the drawing is the same every time.
    """
    g = nx.Graph()
    g.add_nodes_from(nodes)
    g.add_weighted_edges_from((int(a), int(b), float(w)) for a, b, w in edges)
    g.remove_nodes_from([n for n in list(g) if g.degree(n) == 0])
    positions = nx.spring_layout(g, seed=seed, weight=None) if len(g) else {}
    palette = [OKABE_ITO[c] for c in ("vermillion", "blue", "green", "orange", "purple")]
    markers = ["o", "s", "^", "D", "v"]
    with matplotlib.rc_context({**_STYLE, "axes.grid": False}):
        fig = Figure(figsize=(6.4, 4.6))
        ax = fig.subplots()
        for a, b, w in g.edges(data="weight"):
            (xa, ya), (xb, yb) = positions[a], positions[b]
            ax.plot([xa, xb], [ya, yb], lw=0.4 + 1.2 * abs(w),
                    color=OKABE_ITO["vermillion"] if w < 0 else "#BBBBBB",
                    ls="--" if w < 0 else "-", alpha=0.7, zorder=1)
        style = {z: (palette[i], markers[i]) for i, z in enumerate(ranked_zones[:5])}
        labels = {st: f"zone {z}" for z, st in style.items()}
        groups: dict[tuple[str, str], list[int]] = {}
        for n in g:
            groups.setdefault(style.get(zone_of.get(n, -1), ("#999999", ".")), []).append(n)
        for (colour, marker), members in groups.items():
            xs, ys = zip(*(positions[n] for n in members), strict=True)
            ax.scatter(xs, ys, s=18, c=colour, marker=marker, zorder=2, edgecolors="white",
                       linewidths=0.3, label=labels.get((colour, marker), "other zones"))
        if not len(g):
            ax.text(0.5, 0.5, "no edges above the noise floor", ha="center", va="center",
                    transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title("Constraint graph: top zones by pressure; conflicts dashed red")
        if len(g):
            ax.legend(loc="best", frameon=False, fontsize=7)
        fig.tight_layout()
    return fig


def zone_map_figure(zones: Sequence[Mapping[str, Any]],
                    edges: Iterable[tuple[int, int, float]], zone_of: Mapping[int, int],
                    limit: int = 15, seed: int = 0) -> Figure:
    """The zones as one node each (area ~ members, pressure zones vermillion), joined by the
    constraint-graph links between their members: line width ~ links, dashed red where most of
    them conflict. A map of the data's regions, not of its examples.

    Parameters
    ----------
    zones : report.json ``zones.zones`` entries (``id``, ``size``, ``label``,
        ``is_pressure_zone``), most pressing first; the first ``limit`` are drawn.
    edges : iterable of (a, b, cos) between examples.
    zone_of : mapping example index -> zone id.
    seed : seed of the spring layout.
    """
    shown = list(zones[:limit])
    ids = {int(z["id"]) for z in shown}
    links: dict[tuple[int, int], list[int]] = {}
    for a, b, w in edges:
        za, zb = zone_of.get(int(a), -1), zone_of.get(int(b), -1)
        if za == zb or za not in ids or zb not in ids:
            continue
        entry = links.setdefault((min(za, zb), max(za, zb)), [0, 0])
        entry[0] += 1
        entry[1] += float(w) < 0
    g = nx.Graph()
    g.add_nodes_from(int(z["id"]) for z in shown)
    for (za, zb), (n, bad) in links.items():
        g.add_edge(za, zb, n=n, bad=bad, weight=float(n))
    positions = nx.spring_layout(g, seed=seed, weight="weight") if len(g) else {}
    most = max((d["n"] for *_, d in g.edges(data=True)), default=1)
    with matplotlib.rc_context({**_STYLE, "axes.grid": False}):
        fig = Figure(figsize=(6.4, 4.2))
        ax = fig.subplots()
        for za, zb, d in g.edges(data=True):
            (xa, ya), (xb, yb) = positions[za], positions[zb]
            conflict = d["bad"] > d["n"] / 2
            ax.plot([xa, xb], [ya, yb], lw=0.5 + 4.0 * d["n"] / most, zorder=1, alpha=0.7,
                    color=OKABE_ITO["vermillion"] if conflict else "#AAAAAA",
                    ls="--" if conflict else "-")
        for z in shown:
            x, y = positions[int(z["id"])]
            ax.scatter([x], [y], s=60 + 25 * z["size"], zorder=2, edgecolors="white",
                       c=OKABE_ITO["vermillion"] if z["is_pressure_zone"] else OKABE_ITO["blue"],
                       marker="s" if z["is_pressure_zone"] else "o", alpha=0.85)
            ax.annotate(f"zone {z['id']} ({z['size']})\n{str(z['label'])[:28]}", (x, y),
                        xytext=(0, 12), textcoords="offset points", ha="center", fontsize=7,
                        zorder=3)
        if not shown:
            ax.text(0.5, 0.5, "no zones", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.margins(0.18)
        for side in ("left", "bottom"):
            ax.spines[side].set_visible(False)
        ax.set_title("Zones: size = members; red squares = pressure zones;\n"
                     "line width = links between them, dashed red = mostly conflicts")
        fig.tight_layout()
    return fig


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
    with matplotlib.rc_context({**_STYLE, "axes.grid": False}):
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


def figure_to_png(fig: Figure) -> bytes:
    """PNG bytes of a figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()
