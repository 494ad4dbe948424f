"""``zones``: pressure zones, where constraints collide."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import matplotlib
import networkx as nx
import pandas as pd
from matplotlib.figure import Figure

from constraintlab.errors import ConfigError
from constraintlab.report._format import _e, _img, _num, _text, number_line
from constraintlab.report.plots import OKABE_ITO, STYLE
from constraintlab.report.sections import Part, Section, View


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
    with matplotlib.rc_context({**STYLE, "axes.grid": False}):
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
    with matplotlib.rc_context({**STYLE, "axes.grid": False}):
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

def zones(report) -> pd.DataFrame:
    """The zones, ranked by pressure (highest first), index = zone id."""
    cols = ["id", "rank", "label", "size", "pressure", "internal_conflict_share",
            "mean_alignment", "density", "is_pressure_zone", "members"]
    return pd.DataFrame(report.data["zones"]["zones"], columns=cols).set_index("id")


def zone_examples(report, zone: int) -> pd.DataFrame:
    """The examples of one zone (rows of :attr:`examples`)."""
    return report.examples[report.examples["zone"] == zone]


def zone_members(report, zone: int) -> list[int]:
    """Example indices of zone ``zone`` (``zones.zones[*].id``), as listed in report.json.

    Raises
    ------
    ConfigError
        The report has no zones section, no such zone, or the zone is empty.
    """
    try:
        found = report.data["zones"]["zones"]
    except (KeyError, TypeError):
        raise ConfigError("the report has no zones section (zones.zones)") from None
    for z in found:
        if z.get("id") == zone:
            members = [int(m) for m in z.get("members", [])]
            if not members:
                raise ConfigError(f"zone {zone} has no members")
            return members
    if not found:
        raise ConfigError(f"zone {zone} not found: the report has no zones (no group of "
                          "examples was coupled strongly enough); choose examples instead")
    ids = ", ".join(str(z.get("id")) for z in found)
    raise ConfigError(f"zone {zone} not found in the report (zones: {ids})")


def _zone_of(report) -> dict[int, int]:
    return {int(i): int(z) for i, z in report.examples["zone"].items() if z == z}


def plot_zones(report) -> Figure:
    """The constraint graph coloured by zone (highest-pressure zones first)."""
    ranked = [z["id"] for z in report.data["zones"]["zones"]]
    return zones_figure(list(report.examples.index),
                              report.edges.itertuples(index=False), _zone_of(report), ranked)


def plot_zone_map(report) -> Figure:
    """One node per zone (the 15 most pressing), joined by the links between members."""
    return zone_map_figure(report.data["zones"]["zones"],
                                 report.edges.itertuples(index=False), _zone_of(report))


def _kpi(v: View) -> list[str]:
    z = v.data["zones"]
    return [f"<div>pressure zones<b>{z['pressure_zones']}</b>of {z['count']} zones</div>"]


def _html(v: View, shown: int = 4) -> list[str]:
    """Zones as a table a person reads (rank, label, size, pressure, a few member records with
    their inputs), the graph of the examples behind an expander."""
    z, examples = v.data["zones"], v.examples
    png, zone_map = v.figures.get("zones"), v.figures.get("zone_map")
    out = ["<h2>Pressure zones: where constraints collide</h2>",
           "<p class='muted'>A zone is a community of the constraint graph (examples that pull "
           "the adapter the same way); a pressure zone (⚠) is one whose members conflict with "
           "each other more than the data's noise allows. Most pressing first.</p>"]
    if not z["zones"]:
        return [*out, _img(png, "constraint graph"),
                "<p>No zones: the constraint graph has no edges above the noise floor.</p>"]
    if zone_map:
        out.append(_img(zone_map, "map of the zones: one node per zone, links between them"))
    members: dict[int, list[int]] = {}
    if examples is not None and "zone" in examples.columns:
        for idx, zone in examples["zone"].items():
            if pd.notna(zone) and int(zone) >= 0:
                members.setdefault(int(zone), []).append(int(idx))
    out.append("<table><tr><th>rank</th><th>zone</th><th>label</th><th>size</th>"
               "<th>pressure</th><th>internal conflict share</th><th>mean alignment</th>"
               "<th>density</th><th>some members (record: input)</th></tr>")
    for zone in z["zones"][:15]:
        flag = " ⚠" if zone["is_pressure_zone"] else ""
        ids = members.get(int(zone["id"]), [])
        who = "".join(f"<span class=one title=\"{_e(_text(examples, i, 'input', 400))}\">"
                      f"{i}: {_e(_text(examples, i, 'input', 200))}</span>"
                      for i in ids[:shown]) if examples is not None else ""
        more = f"<span class='muted'>… {len(ids) - shown} more</span>" \
            if len(ids) > shown else ""
        out.append(f"<tr{' class=bad' if flag else ''}><td class=num>{zone['rank']}</td>"
                   f"<td class=num>{zone['id']}{flag}</td>"
                   f"<td>{_e(zone['label'])}</td><td class=num>{zone['size']}</td>"
                   f"<td class=num>{_num(zone['pressure'])}</td>"
                   f"<td class=num>{_num(zone['internal_conflict_share'])}</td>"
                   f"<td class=num>{_num(zone['mean_alignment'])}</td>"
                   f"<td class=num>{_num(zone['density'])}</td><td>{who}{more}</td></tr>")
    out.append("</table>")
    if len(z["zones"]) > 15:
        out.append(f"<p class='muted'>… {len(z['zones']) - 15} more zones in report.json "
                   "(zones.zones) and column zone of examples.csv.</p>")
    if png:
        out.append("<details><summary>The constraint graph of the examples (one dot per "
                   "example, coloured by zone)</summary>" + _img(png, "constraint graph")
                   + "</details>")
    if z["outliers"]:
        out.append(f"<p class='muted'>{len(z['outliers'])} outliers (no neighbour above the "
                   f"noise floor): {_e(', '.join(map(str, z['outliers'][:30])))}"
                   f"{' …' if len(z['outliers']) > 30 else ''}</p>")
    return out


def _line(v: View) -> list[str]:
    m = v.metrics
    return [number_line("pressure zones", f"{m['pressure_zones']:d}", f"of {m['zones']} zones")]


#: The contract of ``report.json["zones"]`` (JSON Schema), assembled into the report's
#: by :func:`constraintlab.report.schema.report_schema`.
SCHEMA: dict = {
    "type": "object",
    "required": ["count", "pressure_zones", "zones", "outliers"],
    "properties": {
        "refine_rule": {
            "type": ["string", "null"],
            "description": (
                "which zones the refinement compared each row with (every zone, or above "
                "zone_refine_exact_max_cells its own and its top-m neighbours' zones); null "
                "without features"
            ),
        },
        "count": {"type": "integer", "minimum": 0},
        "pressure_zones": {"type": "integer", "minimum": 0},
        "outliers": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "zones": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    "id",
                    "rank",
                    "label",
                    "size",
                    "members",
                    "pressure",
                    "internal_conflict_share",
                    "mean_alignment",
                    "density",
                    "is_pressure_zone",
                ],
                "properties": {
                    "id": {"type": "integer", "minimum": 0},
                    "rank": {"type": "integer", "minimum": 0},
                    "label": {"type": "string"},
                    "size": {"type": "integer", "minimum": 0},
                    "members": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                    "pressure": {"type": "number"},
                    "internal_conflict_share": {"type": "number"},
                    "mean_alignment": {"type": "number"},
                    "density": {"type": "number"},
                    "is_pressure_zone": {"type": "boolean"},
                },
            },
        },
    },
}


SECTION = Section(
    "zones", schema=SCHEMA,
    parts=(Part("kpi", 80, _kpi), Part("body", 70, _html), Part("numbers", 60, _line)),
    figures={"zones": plot_zones, "zone_map": plot_zone_map},
    methods={"zone_examples": zone_examples, "zone_members": zone_members,
             "plot_zones": plot_zones, "plot_zone_map": plot_zone_map},
    properties={"zones": zones},
    kpi_links={"pressure zones": "pressure-zones"})
