"""report.html leads with what to do: the advice box right under the verdict, its record ids
linked to rows that exist, a table of contents and KPI cards linking to sections that exist,
one inline script (sorting, filtering; no network), and every data text escaped."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from conftest import HOSTILE_RECORD

from constraintlab.report.html import _JS, record_links
from constraintlab.report.report import Report


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.order: list[tuple[str, str]] = []       # (tag, id or class) of landmarks
        self.ids: list[str] = []
        self.hrefs: list[str] = []
        self.scripts: list[dict] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.append(a["id"])
        if tag == "a" and a.get("href", "").startswith("#"):
            self.hrefs.append(a["href"][1:])
        if tag == "script":
            self.scripts.append(a)
        if tag in ("h2", "nav") or (tag == "div" and a.get("class") in ("kpi", "next")) or (
                tag == "p" and "verdict" in (a.get("class") or "").split()):
            self.order.append((tag, a.get("id") or a.get("class") or ""))


def test_page_leads_with_the_advice_and_every_link_lands(gate_report: Path) -> None:
    report = Report.load(gate_report)
    page = report.to_html()
    parsed = _Page()
    parsed.feed(page)
    parsed.close()
    landmarks = [x for _, x in parsed.order]
    # verdict, then the advice box and its heading, then the KPI cards, the contents, sections
    assert landmarks[:5] == ["verdict", "next", "what-to-do-next", "kpi", "toc"]
    sections = [x for t, x in parsed.order if t == "h2"]
    assert sections[0] == "what-to-do-next" and sections[1] == "spectrum"
    assert sections.index("pressure-zones") < sections.index("contradictions")
    assert len(set(parsed.ids)) == len(parsed.ids)                  # anchors are unique
    assert set(parsed.hrefs) <= set(parsed.ids)                     # every link lands
    toc = re.search(r"<nav class='toc'>(.*?)</nav>", page).group(1)
    assert re.findall(r"href='#([^']+)'", toc) == sections[1:]      # the contents, in order
    kpi = page.split("<div class='kpi'>", 1)[1].split("<nav", 1)[0]
    assert {"spectrum", "contradictions", "pressure-zones"} <= set(
        re.findall(r"href='#([^']+)'", kpi))
    # the advice as in report.json, its record ids linked to the records table
    advice = report.advice()
    box = page.split("<div class='next'>", 1)[1].split("</div>", 1)[0]
    assert box.count("<li>") == len(advice)
    named = [i for a in advice for i in record_links(a)[1]]
    assert all(f"record-{i}" in parsed.ids for i in named)
    # one script, the page's own, inline; the hostile record's text only escaped
    assert parsed.scripts == [{}] and page.count("<script>") == 1 and f"<script>{_JS}" in page
    import html

    # the hostile record is shown as escaped text: its input whole, its target (a volatile
    # one) token by token in the volatility view
    assert html.escape(HOSTILE_RECORD["question"], quote=True) in page
    pieces = re.findall(r'title="nll [0-9.]+">(.*?)</span>', page, flags=re.S)
    assert HOSTILE_RECORD["answer"] in "".join(html.unescape(p) for p in pieces)
    scrubbed = re.sub(r"<script>.*?</script>|<style>.*?</style>", "", page, flags=re.S)
    assert not re.search(r"<(?!/?(?:" + "|".join(_TAGS) + r")\b)", scrubbed)   # no other tag


#: Every tag the page writes itself; anything else would be markup from the data.
_TAGS = ("html", "head", "meta", "title", "body", "h1", "h2", "h3", "p", "b", "div", "nav", "a",
         "ol", "ul", "li", "table", "tr", "th", "td", "img", "span", "br", "code", "pre", "del",
         "ins", "details", "summary", "!DOCTYPE")


def test_record_links_are_escaped_and_only_on_record_ids() -> None:
    html, ids = record_links("Resolve <b>2</b> pairs (records 8 & 298, 9 & 300 and 1 more); "
                             "base record 13, zone 4, 0.5 of it; family 0 (base record 231, 4 "
                             "records); records 5, 6 and 2 more.")
    assert ids == [8, 298, 9, 300, 13, 231, 5, 6]
    assert "&lt;b&gt;2&lt;/b&gt;" in html and "<b>" not in html
    assert "<a href='#record-298'>298</a>" in html and "zone 4," in html
