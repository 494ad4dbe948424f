"""``report.html``: one self-contained page a person reads top-down.

Every piece of dataset text goes through :func:`html.escape`; figures are embedded as base64 PNG.
The page reads numbers from the report dict and texts from the examples table: it computes
nothing.
"""

from __future__ import annotations

import base64
import difflib
import html
import json
import re
from collections.abc import Mapping
from typing import Any

import pandas as pd

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid
#ccc}.verdict{font-size:1.15em;padding:.8em 1em;border-left:6px solid #0072B2;background:#f3f7fb}
.verdict.bad{border-color:#D55E00;background:#fdf3ee}.muted{color:#666;font-size:.9em}
table{border-collapse:collapse;margin:.5em 0;font-size:.92em}td,th{border:1px solid #ddd;
padding:.3em .6em;vertical-align:top;text-align:left}th{background:#f5f5f5}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:.6em;margin:.6em 0 1.4em}
.pair pre,.input pre{white-space:pre-wrap;word-break:break-word;background:#fafafa;
border:1px solid #e3e3e3;padding:.5em;margin:0;font-size:.85em;max-height:18em;overflow:auto}
del{background:#fbd5c5;text-decoration:line-through}ins{background:#cde8f5;text-decoration:none}
.tokens{white-space:pre-wrap;word-break:break-word;font-family:ui-monospace,monospace;
font-size:.85em;line-height:1.7;border:1px solid #e3e3e3;padding:.5em;max-height:14em;
overflow:auto}tr.bad td{background:#fdf3ee}
img{max-width:100%;height:auto}.kpi{display:flex;flex-wrap:wrap;gap:.8em}.kpi div{border:1px solid
#ddd;border-radius:6px;padding:.5em .9em;min-width:9em}.kpi b{display:block;font-size:1.3em}
.kpi a{color:inherit;text-decoration:none}.kpi a:hover div{border-color:#0072B2;background:#f3f7fb}
.next{border:1px solid #0072B2;border-radius:6px;padding:.2em 1.2em .6em;margin:1em 0}
.next h2{border:0;margin-top:.6em}.next li{margin:.3em 0}
nav.toc{columns:2;font-size:.92em;margin:1em 0;padding:.5em 1em;background:#fafafa;
border:1px solid #e3e3e3}nav.toc a{display:block}
th.sort{cursor:pointer;white-space:nowrap}th.sort:after{content:" \\25B4\\25BE";color:#aaa;
font-size:.8em}
input.filter{margin:.6em 0 0;padding:.2em .4em;width:18em}
details.clip summary{cursor:pointer;list-style:none}details.clip summary::after{
content:" \\2026 more";color:#0072B2}details.clip[open] summary{display:none}
tr:target td{background:#fff6d5}td.text{min-width:14em}
.one{display:block;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;max-width:19em}
"""

#: Sortable (click a header) and filterable (type above a table of more than 6 rows) tables;
#: inline, no network. Numbers sort as numbers (thousands separators, %, x ignored).
_JS = """
(function(){
function key(c){var t=c?c.textContent.trim():'';var n=parseFloat(t.replace(/[,%\u00d7\u2009]/g,''));
return isNaN(n)?{s:t.toLowerCase()}:{n:n}}
function sortBy(t,i,th){var rows=Array.prototype.slice.call(t.rows,1);
var dir=th.getAttribute('data-dir')==='asc'?-1:1;th.setAttribute('data-dir',dir===1?'asc':'desc');
rows.sort(function(a,b){var x=key(a.cells[i]),y=key(b.cells[i]);
if(x.n!==undefined&&y.n!==undefined)return dir*(x.n-y.n);
if(x.n!==undefined)return -1;if(y.n!==undefined)return 1;return dir*x.s.localeCompare(y.s)});
rows.forEach(function(r){r.parentNode.appendChild(r)})}
document.querySelectorAll('table').forEach(function(t){
if(t.rows.length<3)return;var head=t.rows[0];
Array.prototype.forEach.call(head.cells,function(th,i){if(th.tagName!=='TH')return;
th.className+=' sort';th.title='sort by this column';
th.addEventListener('click',function(){sortBy(t,i,th)})});
if(t.rows.length>7){var f=document.createElement('input');f.type='search';
f.className='filter';f.placeholder='filter these rows';
f.addEventListener('input',function(){var q=f.value.toLowerCase();
for(var r=1;r<t.rows.length;r++){t.rows[r].style.display=
t.rows[r].textContent.toLowerCase().indexOf(q)<0?'none':''}});
t.parentNode.insertBefore(f,t)}})})();
"""



def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _clip(text: Any, limit: int = 160) -> str:
    """Escaped ``text``; longer than ``limit`` characters: its start, expandable to the whole
    (``<details>``), so a long cell does not wrap to a wall of lines."""
    text = str(text)
    if len(text) <= limit:
        return _e(text)
    return (f"<details class='clip'><summary>{_e(text[:limit])}</summary>{_e(text)}"
            "</details>")


def _slug(title: str) -> str:
    """``Pressure zones: where ...`` -> ``pressure-zones``: the anchor of a section."""
    head = re.split(r"[:(]", html.unescape(title), maxsplit=1)[0]
    return re.sub(r"[^a-z0-9]+", "-", head.lower()).strip("-") or "section"


def record_links(text: str) -> tuple[str, list[int]]:
    """``text`` escaped, with the record ids it names (``record 5``, ``records 3, 17 and 4
    more``, ``records 8 & 298, 9 & 300``) linked to their rows in "Records named above"
    (``#record-5``); returns the HTML and the ids in order of appearance."""
    found: list[int] = []

    def link_ids(match: re.Match) -> str:
        def one(m: re.Match) -> str:
            found.append(int(m.group(0)))
            return f"<a href='#record-{m.group(0)}'>{m.group(0)}</a>"
        return match.group(1) + re.sub(r"\d+", one, match.group(2))

    escaped = _e(text)
    ids = r"(\d+(?:(?: &amp; |, )\d+(?![.\d]| (?:records?|examples?)\b))*)"
    linked = re.sub(r"(\brecords? )" + ids, link_ids, escaped)
    return linked, list(dict.fromkeys(found))


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return _e(value)
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return _e(value)


def _img(png: bytes | None, alt: str) -> str:
    if not png:
        return ""
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _text(examples: pd.DataFrame, idx: int, column: str, limit: int = 3000) -> str:
    value = str(examples.at[idx, column]) if idx in examples.index else ""
    return value if len(value) <= limit else value[:limit] + f" [... {len(value) - limit} more]"


def _diff(a: str, b: str) -> tuple[str, str]:
    """Word-level diff of two texts, escaped, with <del>/<ins> marks."""
    wa, wb = a.split(" "), b.split(" ")
    left, right = [], []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, wa, wb, autojunk=False).get_opcodes():
        ta, tb = _e(" ".join(wa[i1:i2])), _e(" ".join(wb[j1:j2]))
        if op == "equal":
            left.append(ta)
            right.append(tb)
        else:
            if ta:
                left.append(f"<del>{ta}</del>")
            if tb:
                right.append(f"<ins>{tb}</ins>")
    return " ".join(left), " ".join(right)


def verdict_sentence(report: Mapping[str, Any]) -> str:
    """The verdict in one sentence with its numbers (plain text; used by the terminal too):
    the system's size, then the determinacy rule, consistency and interference as
    :mod:`constraintlab.analysis.spectrum` worded them."""
    s = report["system"]
    text = (f"{s['n_equations']} examples (equations) against {s['n_unknowns']:,} adapter "
            f"parameters (unknowns): rank {s['rank']}"
            f"{' (a lower bound: the sketch has k dimensions)' if s['rank_is_lower_bound'] else ''}"
            f", effective rank {s['effective_rank']:.1f}.")
    return text + (" " + s["sentence"] if s.get("sentence") else "")


def render_html(report: Mapping[str, Any], examples: pd.DataFrame,
                figures: Mapping[str, bytes], advice: list[str]) -> str:
    """The whole page.

    Parameters
    ----------
    report : dict
        The ``report.json`` content.
    examples : DataFrame
        Indexed by example index, with ``input`` and ``target`` text columns.
    figures : dict name -> PNG bytes
        ``spectrum``, ``cosines``, ``zones``, ``layer_map`` (any may be missing).
    advice : list of str
        What to do next, one plain-text sentence each.
    """
    s, c, r = report["system"], report["conflict"], report["redundancy"]
    z, ds, model = report["zones"], report["dataset"], report["model"]
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>constraintlab report: {_e(ds['source'])}</title><style>{_CSS}</style>"
             "</head><body>",
             f"<h1>constraintlab report: {_e(ds['source'])}</h1>",
             f"<p class='muted'>{ds['n_examples']} examples read as <b>{_e(ds['schema'])}</b>"
             f" ({ds['invalid_records']} records left out) · model <b>{_e(model['name'])}</b>"
             f"{' · ' + _e(model['note']) if model.get('note') else ''} · projection "
             f"{_e(report['projection']['kind'])}, k = {report['projection']['k']}, seed "
             f"{report['projection']['seed']} · constraintlab {_e(report['tool']['version'])}</p>",
             f"<p class='verdict{' bad' if s.get('consistency') == 'inconsistent' else ''}'>"
             f"{_e(verdict_sentence(report))}{_capability_headline(report)}</p>",
             f"<p class='muted'>Rule: {_e(s['rule'])}</p>",
             _NEXT,
             "<div class='kpi'>",
             f"<div>effective rank<b>{s['effective_rank']:.1f}</b>of {s['n_equations']}</div>",
             *_kpi_interference(report.get("interference"), report),
             f"<div>duplicates<b>{r['duplicates']}</b>"
             f"{r['exact_duplicates']} exact, {r['near_duplicates']} near</div>",
             *_kpi_extra(report),
             f"<div>contradictions<b>{report['contradictions']['count']}</b>pairs</div>",
             f"<div>pressure zones<b>{z['pressure_zones']}</b>of {z['count']} zones</div>",
             "</div>",
             _TOC,
             "<h2>Spectrum: independent constraints</h2>",
             _img(figures.get("spectrum"), "singular values with rank and effective rank"),
             "<table><tr><th>N equations</th><th>P unknowns</th><th>rank</th><th>effective rank"
             "</th><th>stable rank</th><th>directions for 50 / 90 / 99 % of energy</th></tr>"
             f"<tr><td class=num>{s['n_equations']}</td><td class=num>{s['n_unknowns']:,}</td>"
             f"<td class=num>{s['rank']}</td><td class=num>{s['effective_rank']:.2f}</td>"
             f"<td class=num>{s['stable_rank']:.2f}</td><td class=num>"
             + " / ".join(str(s["energy_directions"][k]) for k in ("50", "90", "99"))
             + "</td></tr></table>",
             *_growth_section(report.get("growth"), figures.get("growth")),
             *_interference_section(report.get("interference")),
             "<h2>Conflict: do examples pull against each other?</h2>",
             _img(figures.get("cosines"), "histogram of pair cosines"),
             f"<p>{c['conflicting_pairs']:,} of {c['n_pairs']:,} pairs conflict (cos &lt; "
             f"−{c['tau']:.3g}, {c['method']}); {c['aligned_pairs']:,} are aligned; "
             f"{c['conflicted_examples']} examples have at least one conflicting partner.</p>"]
    parts += _suspects_section(report.get("suspects"), examples)
    parts += _findings_section(ds)
    parts += _zones_section(z, figures.get("zones"), examples, zone_map=figures.get("zone_map"))
    parts += _pairs_section("Contradictions: same input, different target",
                            [p for p in report["pairs"] if p["kind"] == "contradiction"],
                            examples, contradiction=True)
    parts += _sets_section(r, examples)
    parts += _families_section(report.get("families"))
    parts += _volatility_section(report.get("volatility"), examples)
    parts += _response_section(report["response"], examples)
    parts += _layer_map_section(report.get("layer_map"), figures.get("layer_map"))
    items = [record_links(a) for a in advice]
    named = list(dict.fromkeys(i for _, ids in items for i in ids))
    parts += _records_section(named, examples)
    parts.append(f"<script>{_JS}</script></body></html>")
    page = "\n".join(parts)
    nxt = ("<div class='next'><h2>What to do next</h2><ol>"
           + "".join(f"<li>{text}</li>" for text, _ in items) + "</ol></div>")
    return _finish(page.replace(_NEXT, nxt, 1))


#: Placeholders filled once the page is built: the advice box and the table of contents.
_NEXT, _TOC = "<!--constraintlab:next-->", "<!--constraintlab:toc-->"

#: KPI card label -> the section it links to (the slug of the section's title).
_KPI_LINKS = {"effective rank": "spectrum", "interference": "interference",
              "duplicates": "duplicate-sets", "suspects": "examples-to-look-at",
              "volatility p99": "token-volatility", "variant families": "variant-families",
              "contradictions": "contradictions", "pressure zones": "pressure-zones"}


def _finish(page: str) -> str:
    """Anchors on every ``<h2>`` (:func:`_slug`), the table of contents from them, and the KPI
    cards linked to their sections."""
    seen: dict[str, int] = {}
    toc: list[str] = []

    def anchor(m: re.Match) -> str:
        title = m.group(1)
        slug = _slug(re.sub(r"<[^>]+>", "", title))
        seen[slug] = seen.get(slug, 0) + 1
        if seen[slug] > 1:
            slug = f"{slug}-{seen[slug]}"
        if slug != "what-to-do-next":
            toc.append(f"<a href='#{slug}'>{title}</a>")
        return f"<h2 id='{slug}'>{title}</h2>"

    page = re.sub(r"<h2>(.*?)</h2>", anchor, page)
    page = page.replace(_TOC, "<nav class='toc'><b>Contents</b>" + "".join(toc) + "</nav>", 1)

    def card(m: re.Match) -> str:
        target = _KPI_LINKS.get(m.group(1).strip())
        if target is None or f"id='{target}'" not in page:
            return m.group(0)
        return f"<a href='#{target}'>{m.group(0)}</a>"

    head, sep, rest = page.partition("<div class='kpi'>")
    if sep:
        cards, end, tail = rest.partition("</div>\n<nav")
        cards = re.sub(r"<div>([^<]+)<b>.*?</div>", card, cards)
        page = head + sep + cards + end + tail
    return page


def _records_section(ids: list[int], examples: pd.DataFrame) -> list[str]:
    """"Records named above": one row per record the advice names, the target of its links
    (``#record-<id>``), with its line, texts and flags."""
    ids = [i for i in ids if i in examples.index]
    if not ids:
        return []
    flags = (("is_contradiction", "contradiction"), ("is_exact_duplicate", "exact duplicate"),
             ("is_near_duplicate", "near duplicate"), ("is_duplicate_keeper", "keeper"),
             ("is_suspect", "suspect"), ("is_pressure_zone", "pressure zone"))
    out = ["<h2>Records named above</h2>",
           "<p class='muted'>Every record the advice names (record = 0-based index in the "
           "file; line = its line). The full table: examples.csv.</p>",
           "<table><tr><th>record</th><th>line</th><th>zone</th><th>flags</th><th>input</th>"
           "<th>target</th></tr>"]
    for i in ids:
        row = examples.loc[i]
        marks = [word for col, word in flags if col in examples.columns and bool(row[col])]
        line = row["line"] if "line" in examples.columns else ""
        zone = row["zone"] if "zone" in examples.columns else ""
        out.append(f"<tr id='record-{i}'><td class=num>{i}</td><td class=num>{_num(line)}</td>"
                   f"<td class=num>{_num(zone)}</td><td>{_e(', '.join(marks))}</td>"
                   f"<td class=text>{_clip(_text(examples, i, 'input'), 200)}</td>"
                   f"<td class=text>{_clip(_text(examples, i, 'target'), 200)}</td></tr>")
    out.append("</table>")
    return out


def _token_list(tokens: list[dict]) -> str:
    return ", ".join(f"<code>{_e(t['text'])}</code> {t['nll']:.2f}"
                     + (f" ({t['nll_noinput']:.2f} without the input)"
                        if t.get("nll_noinput") is not None else "") for t in tokens)


def _token_cell(tokens: list[dict], shown: int = 3) -> str:
    """The first ``shown`` tokens; the rest behind an expander."""
    if len(tokens) <= shown:
        return _token_list(tokens)
    return (f"<details class='clip'><summary>{_token_list(tokens[:shown])}</summary>"
            f"{_token_list(tokens)}</details>")


def _suspects_section(sus: Mapping[str, Any] | None, examples: pd.DataFrame,
                      limit: int = 20) -> list[str]:
    """'Examples to look at': the suspects with both texts, the reasons and the tokens the
    input does not explain; then what the model can and cannot judge."""
    if not sus:
        return []
    cap = sus.get("capability") or {}
    if sus.get("suspects") is None:
        head = (f"<p><b>Suspects: not measured</b>. {_e(sus.get('not_measured') or '')}. "
                f"{sus.get('flagged', 0)} examples flagged by the checks that ran.</p>")
    else:
        head = (f"<p>{sus['suspects']} of the examples ({sus['suspect_share']:.1%}) are "
                f"suspect: {_e(sus['calibration'])}.</p>")
    out = ["<h2>Examples to look at</h2>", head]
    pairs = sus.get("contradiction_pairs") or []
    if pairs:
        shown = ", ".join(f"{a} and {b}" for a, b in pairs[:10])
        out.append(f"<p>Contradiction pairs to resolve ({len(pairs)}): records {shown}"
                   f"{' …' if len(pairs) > 10 else ''}. One side of each is wrong; the pair "
                   "does not say which (section Contradictions).</p>")
    if cap.get("message"):
        out.append(f"<p class='{'verdict bad' if cap.get('limited') else 'muted'}'>"
                   f"{_e(cap['message'])}</p>")
    if not sus["listed"]:
        out.append("<p class='muted'>No example is suspect.</p>")
        return out
    out.append("<table><tr><th>record</th><th>rank</th><th>p-value</th><th>reasons</th>"
               "<th>input</th><th>target</th><th>tokens the input does not explain (NLL, "
               "nats)</th></tr>")
    for v in sus["listed"][:limit]:
        i = v["id"]
        p = v.get("p_value")
        detail = f"<br><i>{_clip(v['detail'], 120)}</i>" if v.get("detail") else ""
        out.append(f"<tr><td class=num>{i}</td><td class=num>{v.get('rank', '')}</td>"
                   f"<td class=num>{'–' if p is None else f'{p:.2g}'}</td>"
                   f"<td>{_clip(', '.join(v['reasons']), 60)}{detail}</td>"
                   f"<td class=text>{_clip(_text(examples, i, 'input', 600))}</td>"
                   f"<td class=text>{_clip(_text(examples, i, 'target', 600))}</td>"
                   f"<td>{_token_cell(v['tokens'])}</td></tr>")
    out.append("</table>")
    shown = dict.fromkeys(r for v in sus["listed"][:limit] for r in v["reasons"])
    legend = sus.get("reason_codes") or {}
    if any(r in legend for r in shown):
        out.append("<p class='muted'>" + "; ".join(
            f"<b>{_e(r)}</b>: {_e(legend[r])}" for r in shown if r in legend) + ".</p>")
    if sus.get("flagged", sus.get("suspects") or 0) > limit:
        out.append("<p class='muted'>… every suspect: column is_suspect of examples.csv, "
                   "report.suspects().</p>")
    return out


def _findings_section(ds: Mapping[str, Any], limit: int = 50) -> list[str]:
    """Records that could not be used (left out of the analysis) and records used with a note."""
    findings, notes = ds.get("findings") or [], ds.get("notes") or []
    if not findings and not notes:
        return []
    out = [f"<h2>Records left out: {len(findings)}</h2>"]
    if findings:
        out.append("<p class='muted'>Readable but unusable: left out of every number below "
                   "(gate metric <code>invalid_records</code>).</p>"
                   "<table><tr><th>where</th><th>code</th><th>what is wrong</th></tr>")
        for f in findings[:limit]:
            where = f"{f.get('source')}:{f.get('line')}" if f.get("line") else f.get("source")
            out.append(f"<tr><td>{_e(where)}</td><td>{_e(f.get('code'))}</td>"
                       f"<td>{_e(f.get('message'))}</td></tr>")
        out.append("</table>")
        if len(findings) > limit:
            out.append(f"<p class='muted'>… and {len(findings) - limit} more (report.json "
                       "dataset.findings)</p>")
    if notes:
        codes: dict[str, int] = {}
        for n in notes:
            codes[str(n.get("code"))] = codes.get(str(n.get("code")), 0) + 1
        out.append("<p class='muted'>Used, with a note: " + ", ".join(
            f"{_e(c)} × {k}" for c, k in sorted(codes.items())) + "</p>")
    return out


def _zones_section(z: Mapping[str, Any], png: bytes | None,
                   examples: pd.DataFrame | None = None, shown: int = 4, *,
                   zone_map: bytes | None = None) -> list[str]:
    """Zones as a table a person reads (rank, label, size, pressure, a few member records with
    their inputs), the graph of the examples behind an expander."""
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


def _pairs_section(title: str, pairs: list[dict], examples: pd.DataFrame, *,
                   contradiction: bool, limit: int = 10) -> list[str]:
    out = [f"<h2>{_e(title)}</h2>"]
    if not pairs:
        return [*out, "<p>None found.</p>"]
    out.append(f"<p>{len(pairs)} pairs; the {min(limit, len(pairs))} strongest:</p>")
    for p in sorted(pairs, key=lambda p: -p["score"])[:limit]:
        a, b = p["a"], p["b"]
        ta, tb = _diff(_text(examples, a, "target"), _text(examples, b, "target"))
        out.append(f"<h3>records {a} and {b} <span class='muted'>score {p['score']:.3f}"
                   "</span></h3>")
        if contradiction:   # both inputs: the reader sees that they are the same
            ia, ib = _text(examples, a, "input"), _text(examples, b, "input")
            out.append(f"<div class='pair'><pre>{_e(ia)}</pre><pre>{_e(ib)}</pre></div>")
        else:
            out.append(f"<div class='input'><pre>{_e(_text(examples, a, 'input'))}</pre></div>")
        out.append(f"<div class='pair'><pre>{ta}</pre><pre>{tb}</pre></div>")
    return out


def _response_section(resp: Mapping[str, Any], examples: pd.DataFrame,
                      limit: int = 5) -> list[str]:
    out = ["<h2>What training on one example does to the others</h2>",
           f"<p class='muted'>First order: {_e(resp['sign_convention'])}; "
           f"{_e(resp['units'])}.</p>",
           f"<p>{resp['harmful_examples']} examples raise the others' summed loss when trained "
           f"on; {resp['helpful_examples']} lower it.</p>",
           "<table><tr><th></th><th>record</th><th>net effect on the others</th>"
           "<th>input</th></tr>"]
    for title, rows in (("most harmful", resp["most_harmful"]),
                        ("most helpful", resp["most_helpful"])):
        for row in rows[:limit]:
            out.append(f"<tr><td>{title}</td><td class=num>{row['index']}</td>"
                       f"<td class=num>{_num(row['net_effect'])}</td>"
                       f"<td>{_e(_text(examples, row['index'], 'input', 160))}</td></tr>")
    out.append("</table>")
    ids, matrix = resp["zone_ids"][:8], resp["zone_matrix"]
    if len(ids) > 1:
        out.append("<p>Zone by zone (row: the zone trained on; column: the zone whose loss "
                   "changes; first eight zones):</p><table><tr><th></th>"
                   + "".join(f"<th>zone {z}</th>" for z in ids) + "</tr>")
        for i, z in enumerate(ids):
            out.append(f"<tr><th>zone {z}</th>" + "".join(
                f"<td class=num>{_num(matrix[i][j], 3)}</td>" for j in range(len(ids)))
                + "</tr>")
        out.append("</table>")
    return out


def _sets_section(r: Mapping[str, Any], examples: pd.DataFrame, limit: int = 10) -> list[str]:
    out = ["<h2>Duplicate sets</h2>",
           f"<p>{r['exact_duplicates']} exact and {r['near_duplicates']} near duplicates "
           f"(records beyond one keeper per set); redundancy ratio "
           f"{r['redundancy_ratio']:.3f}. Flagged, never deleted."
           + (f" {r['near_duplicate_pairs_in_families']} near-duplicate links inside variant "
              "families are intended variation and not counted."
              if r.get("near_duplicate_pairs_in_families") else "") + "</p>"]
    for dup in r["sets"][:limit]:
        members = dup["members"]
        out.append(f"<h3>{_e(dup['kind'])} set of {len(members)}: keep {dup['keeper']}, "
                   f"flag {_e(', '.join(str(m) for m in members if m != dup['keeper']))}</h3>")
        if dup.get("keeper_detail"):
            out.append(f"<p class=muted>kept {dup['keeper']}: {_e(dup['keeper_detail'])}</p>")
        shown = [dup["keeper"], *[m for m in members if m != dup["keeper"]][:1]]
        out.append("<div class='pair'>" + "".join(
            f"<pre>[{m}] {_e(_text(examples, m, 'input', 600))}\n→ "
            f"{_e(_text(examples, m, 'target', 600))}</pre>" for m in shown) + "</div>")
    return out


def _capability_headline(report: Mapping[str, Any]) -> str:
    """The capability statement in the verdict box when it fires (escaped, with a line
    break); "" otherwise."""
    cap = (report.get("suspects") or {}).get("capability") or {}
    if not cap.get("limited"):
        return ""
    return f"<br><b>Model capability:</b> {_e(cap.get('message', ''))}"


def _kpi_interference(inter: Mapping[str, Any] | None,
                      report: Mapping[str, Any] | None = None) -> list[str]:
    if not inter or inter.get("interference_excess") is None:
        return []
    cap = ((report or {}).get("suspects") or {}).get("capability") or {}
    note = (" — from a model that barely conditions on the input: it restates that the model "
            "does not know this data" if cap.get("limited") else "")
    return [f"<div>interference<b>{inter['interference_excess']:.2f}×</b>its null"
            f"{' (above)' if inter['interference_above_null'] else ''}{_e(note)}</div>"]


def _growth_section(g: Mapping[str, Any] | None, png: bytes | None) -> list[str]:
    """How the independent directions grow with the data (the saturation curve)."""
    if not g:
        return []
    c = g["curve"]
    rows = "".join(f"<tr><td class=num>{n}</td><td class=num>{r}</td>"
                   f"<td class=num>{_num(e, 3)}</td><td class=num>{d}</td></tr>"
                   for n, r, e, d in zip(c["n"], c["rank"], c["effective_rank"],
                                         c["energy_rank"], strict=True))
    return ["<h2>Growth: does more of this data teach new directions?</h2>",
            _img(png, "independent directions against examples on nested subsamples"),
            f"<p><b>{_e(str(g['verdict']).replace('_', ' '))}</b>: {_e(g['reason'])}.</p>",
            "<table><tr><th>examples</th><th>rank</th><th>effective rank</th>"
            f"<th>directions carrying {100 * float(c['energy']):.0f} % of the energy</th></tr>"
            f"{rows}</table>"]


def _interference_section(inter: Mapping[str, Any] | None) -> list[str]:
    """Cross-zone interference against the data's own null."""
    if not inter or inter.get("interference_excess") is None:
        return []
    lo, hi = (inter.get("null_interference_range") or [None, None])[:2]
    pair = inter.get("most_interfering_pair")
    return ["<h2>Interference: does training on some examples undo others?</h2>",
            f"<p>{_e(inter['reason'])}</p>",
            f"<p class='muted'>Interference {_num(inter['interference'])} against "
            f"{_num(inter['null_interference'])} for the data's Gaussian null (range "
            f"{_num(lo)} – {_num(hi)}): {inter['interference_excess']:.2f}× the null, "
            f"{'above' if inter['interference_above_null'] else 'near'} the data's own "
            f"baseline. {_e(inter['rule'])}"
            + (f" Most interfering: zones {pair['a']} and {pair['b']}." if pair else "")
            + "</p>"]


def _kpi_extra(report: Mapping[str, Any]) -> list[str]:
    out = []
    vol, fam, sus = report.get("volatility"), report.get("families"), report.get("suspects")
    cap = (sus or {}).get("capability") or {}
    if sus and sus.get("suspects") is None:
        out.append("<div>suspects<b>not measured</b>the model cannot judge this data</div>")
    elif sus:
        out.append(f"<div>suspects<b>{sus['suspects']}</b>{sus['suspect_share']:.1%} of the "
                   "examples</div>")
    if vol:
        p = vol["percentiles"]["volatility"]
        why = ("restates that the model does not know this text" if cap.get("predicts_targets")
               is False else f"max {p['max']:.3f}")
        out.append(f"<div>volatility p99<b>{p['p99']:.3f}</b>{_e(why)}</div>")
    if fam:
        out.append(f"<div>variant families<b>{fam['count']}</b>{fam['incoherent']} incoherent"
                   "</div>")
    return out


_PCT_ROWS = (("volatility", "volatility score"), ("mean_nll", "mean NLL (nats)"),
             ("max_nll", "max NLL (nats)"), ("topk_miss_share", "top-k miss share"),
             ("grad_norm", "gradient norm"))


def _shaded_tokens(profile: list, ln_vocab: float) -> str:
    """Each token piece, escaped, on a background whose opacity is min(1, nll / ln V) (a token
    as surprising as a uniform guess is fully shaded)."""
    spans = []
    for piece, nll in profile:
        alpha = min(1.0, max(0.0, float(nll) / ln_vocab)) if ln_vocab > 0 else 0.0
        spans.append(f'<span style="background:rgba(213,94,0,{alpha:.2f})" '
                     f'title="nll {float(nll):.2f}">{_e(piece)}</span>')
    return "".join(spans)


def _volatility_section(vol: Mapping[str, Any] | None, examples: pd.DataFrame,
                        limit: int = 10) -> list[str]:
    out = ["<h2>Token volatility: how far the targets lie from what the model predicts</h2>"]
    if not vol:
        return [*out, "<p>Not measured: the feature store has no token profiles.</p>"]
    weights = ", ".join(f"{_e(k)} {_num(w, 3)}" for k, w in vol["weights"].items())
    out += [f"<p class='muted'>{_e(vol['formula'])} (weights {weights}; top-k with k = "
            f"{vol['top_k']}; ln V = {vol['ln_vocab']:.3f} nats; median gradient norm "
            f"{_num(vol['grad_norm_median'])}). 0 = the model already predicts the target, "
            "1 = it knows nothing of it.</p>",
            "<table><tr><th></th>" + "".join(f"<th>{k}</th>" for k in
                                             ("p50", "p90", "p95", "p99", "max", "mean"))
            + "</tr>"]
    for key, title in _PCT_ROWS:
        row = vol["percentiles"].get(key)
        if row:
            out.append(f"<tr><th>{title}</th>" + "".join(
                f"<td class=num>{_num(row[k])}</td>"
                for k in ("p50", "p90", "p95", "p99", "max", "mean")) + "</tr>")
    out.append("</table>")
    listed = vol["most_volatile"][:limit]
    if not listed:
        return out
    out.append(f"<p>The {len(listed)} most volatile examples; each target token is shaded by "
               "its surprise (opacity min(1, NLL / ln V); hover for the NLL):</p>")
    for v in listed:
        worst = ", ".join(f"<code>{_e(json.dumps(t['text'], ensure_ascii=False))}</code> "
                          f"{t['nll']:.2f} (rank {t['rank']})" for t in v["tokens"])
        more = (f" <span class='muted'>[first {len(v['profile'])} of {v['n_tokens']} tokens]"
                "</span>" if v["profile_truncated"] else "")
        out += [f"<h3>record {v['id']} <span class='muted'>volatility {v['volatility']:.3f} "
                f"(percentile {v['percentile']:.0%}) · mean NLL {v['mean_nll']:.2f} · max NLL "
                f"{v['max_nll']:.2f} · top-{vol['top_k']} miss {v['topk_miss_share']:.0%} · "
                f"gradient norm {_num(v['grad_norm'])}</span></h3>",
                f"<div class='input'><pre>{_e(_text(examples, v['id'], 'input', 300))}</pre>"
                "</div>",
                f"<div class='tokens'>{_shaded_tokens(v['profile'], vol['ln_vocab'])}{more}"
                "</div>",
                f"<p class='muted'>most surprising tokens: {worst}</p>"]
    return out


def _varies(varies: Mapping[str, Any]) -> str:
    parts = []
    for kind in ("marked", "replaced", "added", "removed"):
        entry = varies.get(kind) or {}
        if entry.get("members"):
            items = ", ".join(f"<code>{_e(w)}</code>" + (f" ×{c}" if c > 1 else "")
                              for w, c in entry["top"])
            parts.append(f"<b>{kind}</b> ({entry['members']}): {items}")
    return "<br>".join(parts) or "<span class='muted'>spacing or case only</span>"


def _families_section(fam: Mapping[str, Any] | None, limit: int = 20) -> list[str]:
    out = ["<h2>Variant families: deliberate variants of one text</h2>"]
    if not fam:
        return [*out, "<p>Not measured.</p>"]
    out.append(f"<p>{fam['count']} famil{'y' if fam['count'] == 1 else 'ies'} "
               f"({fam['members']} examples; at least "
               f"{fam['min_size']} distinct variants linked by word-shingle Jaccard &ge; "
               f"{_num(fam['family_jaccard'], 3)}); <b>{fam['incoherent']} incoherent</b>.</p>"
               f"<p class='muted'>{_e(fam['coherence_rule'])}.</p>")
    if not fam["families"]:
        return out
    ranked = sorted(fam["families"], key=lambda f: (f["coherent"] is not False, f["id"]))
    out.append("<table><tr><th>family</th><th>size</th><th>base record · label</th>"
               "<th>what varies</th><th>volatility spread</th><th>mean cos</th>"
               "<th>first-direction share</th><th>coherent</th></tr>")
    for f in ranked[:limit]:
        coh, vol = f.get("coherence") or {}, f.get("volatility") or {}
        bad = f["coherent"] is False
        counts = {"contradiction": f.get("contradicting_pairs"),
                  "opposing": coh.get("opposing_pairs")}
        reasons = ", ".join(r.replace("_", " ") + (f" ({counts[r]} pairs)" if counts.get(r)
                                                   else "") for r in f["reasons"])
        verdict = ("⚠ no: " + _e(reasons) if bad
                   else "yes" if f["coherent"] else "not measured")
        members = ", ".join(map(str, f["members"][:12])) + (" …" if f["size"] > 12 else "")
        out.append(f"<tr{' class=bad' if bad else ''}><td class=num>{f['id']}</td>"
                   f"<td class=num>{f['size']} ({f['n_variants']} variants)</td>"
                   f"<td>{f['base']} · {_e(f['label'])}<br><span class='muted'>records "
                   f"{_e(members)}</span></td><td>{_varies(f['varies'])}</td>"
                   f"<td class=num>{_num(vol.get('spread'), 3)}</td>"
                   f"<td class=num>{_num(coh.get('mean_cos'), 3)}</td>"
                   f"<td class=num>{_num(coh.get('first_direction_share'), 3)}</td>"
                   f"<td>{verdict}</td></tr>")
    out.append("</table>")
    if len(ranked) > limit:
        out.append(f"<p class='muted'>{len(ranked) - limit} more in report.json.</p>")
    return out


def _layer_map_section(lm: Mapping[str, Any] | None, png: bytes | None) -> list[str]:
    out = ["<h2>Layer map: where the constraints land in the network</h2>"]
    if not lm:
        return [*out, "<p>Not measured: the feature store has no per-site energies.</p>"]
    ds = lm["dataset"]
    out += [_img(png, "heatmap of the squared gradient norm by layer and module kind"),
            "<p class='muted'>Each example's squared gradient norm splits exactly over the "
            "LoRA sites (layer, module kind); the map is the dataset's sum as shares.</p>"]
    if ds["top_layer"] is not None:
        li, ki = lm["layers"].index(ds["top_layer"]), lm["kinds"].index(ds["top_kind"])
        out.append(f"<p>Top layer <b>{ds['top_layer']}</b> ({ds['by_layer'][li]:.0%} of the "
                   f"squared gradient norm); top module kind <b>{_e(ds['top_kind'])}</b> "
                   f"({ds['by_kind'][ki]:.0%}).</p>")
    if lm["zones"]:
        out.append("<p>Highest-pressure zones:</p><table><tr><th>zone</th><th>top layer</th>"
                   "<th>its share</th><th>top module kind</th><th>its share</th>"
                   "<th>squared gradient norm</th></tr>")
        for zone, zm in lm["zones"].items():
            if zm["top_layer"] is None:
                continue
            li, ki = lm["layers"].index(zm["top_layer"]), lm["kinds"].index(zm["top_kind"])
            out.append(f"<tr><td class=num>{_e(zone)}</td><td class=num>{zm['top_layer']}</td>"
                       f"<td class=num>{zm['by_layer'][li]:.0%}</td>"
                       f"<td>{_e(zm['top_kind'])}</td><td class=num>{zm['by_kind'][ki]:.0%}</td>"
                       f"<td class=num>{_num(zm['total'])}</td></tr>")
        out.append("</table>")
    return out
