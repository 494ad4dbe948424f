"""``report.html``: one self-contained page a person reads top-down.

This module is the page's frame (style, script, header, verdict box, KPI cards, table of
contents); each section's part of the page is declared beside the section, in
:mod:`constraintlab.report.sections`. Every piece of dataset text goes through :func:`html.escape`
(``_e``); figures are embedded as base64 PNG. The page reads numbers from the report dict and
texts from the examples table: it computes nothing.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any

import pandas as pd

from constraintlab.report._format import _e, record_links
from constraintlab.report.sections import View, render, sections
from constraintlab.report.sections.system import verdict_sentence

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
th.sort{cursor:pointer}th.sort:after{content:" \\25B4\\25BE";color:#aaa;
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


__all__ = ["record_links", "render_html", "verdict_sentence"]


def _slug(title: str) -> str:
    """``Pressure zones: where ...`` -> ``pressure-zones``: the anchor of a section."""
    head = re.split(r"[:(]", html.unescape(title), maxsplit=1)[0]
    return re.sub(r"[^a-z0-9]+", "-", head.lower()).strip("-") or "section"


def render_html(report: Mapping[str, Any], examples: pd.DataFrame,
                figures: Mapping[str, bytes]) -> str:
    """The whole page.

    Parameters
    ----------
    report : dict
        The ``report.json`` content.
    examples : DataFrame
        Indexed by example index, with ``input`` and ``target`` text columns.
    figures : dict name -> PNG bytes
        The sections' figures (any may be missing).
    """
    view = View(data=report, examples=examples, figures=figures)
    s, ds, model = report["system"], report["dataset"], report["model"]
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
             f"{_e(verdict_sentence(report))}{''.join(render('verdict', view))}</p>",
             f"<p class='muted'>Rule: {_e(s['rule'])}</p>",
             *render("top", view),
             "<div class='kpi'>", *render("kpi", view), "</div>",
             _TOC,
             *render("body", view),
             *render("end", view),
             f"<script>{_JS}</script></body></html>"]
    return _finish("\n".join(parts))


#: Placeholder filled once the page is built: the table of contents.
_TOC = "<!--constraintlab:toc-->"


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
    links = {label: slug for sec in sections() for label, slug in sec.kpi_links.items()}
    page = page.replace(_TOC, "<nav class='toc'><b>Contents</b>" + "".join(toc) + "</nav>", 1)

    def card(m: re.Match) -> str:
        target = links.get(m.group(1).strip())
        if target is None or f"id='{target}'" not in page:
            return m.group(0)
        return f"<a href='#{target}'>{m.group(0)}</a>"

    head, sep, rest = page.partition("<div class='kpi'>")
    if sep:
        cards, end, tail = rest.partition("</div>\n<nav")
        cards = re.sub(r"<div>([^<]+)<b>.*?</div>", card, cards)
        page = head + sep + cards + end + tail
    return page
