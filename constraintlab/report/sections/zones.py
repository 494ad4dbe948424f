"""``zones``: pressure zones, where constraints collide."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from constraintlab.errors import ConfigError
from constraintlab.report import plots
from constraintlab.report._format import _e, _img, _num, _text, number_line
from constraintlab.report.sections import Part, Section, View


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
    return plots.zones_figure(list(report.examples.index),
                              report.edges.itertuples(index=False), _zone_of(report), ranked)


def plot_zone_map(report) -> Figure:
    """One node per zone (the 15 most pressing), joined by the links between members."""
    return plots.zone_map_figure(report.data["zones"]["zones"],
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


SECTION = Section(
    "zones",
    parts=(Part("kpi", 80, _kpi), Part("body", 70, _html), Part("numbers", 60, _line)),
    figures={"zones": plot_zones, "zone_map": plot_zone_map},
    methods={"zone_examples": zone_examples, "zone_members": zone_members,
             "plot_zones": plot_zones, "plot_zone_map": plot_zone_map},
    properties={"zones": zones},
    kpi_links={"pressure zones": "pressure-zones"})
