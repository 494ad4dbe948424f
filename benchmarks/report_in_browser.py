"""Look at a report as a person would: render ``report.html`` in headless Chromium (Debian's
``/usr/bin/chromium``; no network, no download), save a screenshot of the top, and check in the
browser that the page's own script works: a numeric column sorts as numbers both ways, the
filter box hides the rows that do not match, "What to do next" comes right after the verdict
and before the first analysis section, every contents link and KPI card points at a section
that exists, no table is wider than the page's column.

    python benchmarks/report_in_browser.py OUT_DIR [--png top.png] [--chromium PATH]

OUT_DIR is an ``analyze`` output folder (it holds ``report.html``). Prints one line per check
and exits 1 when one fails, 2 when Chromium is not there. Not a test: CI machines have no
browser.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]

#: Runs after the page's own script; writes what it saw into <pre id="probe"> as JSON.
PROBE = r"""<script>
(function(){var out={};
function visible(t,i){return [].slice.call(t.rows,1).filter(function(r){
  return r.style.display!=='none'}).map(function(r){return r.cells[i].textContent.trim()})}
function num(s){var n=parseFloat(s.replace(/[,%\u00d7\u2009]/g,''));return isNaN(n)?null:n}
var tables=[].slice.call(document.querySelectorAll('table'));
var big=tables.filter(function(t){return t.rows.length>7&&t.previousSibling&&
  t.previousSibling.tagName==='INPUT'});
out.tables=tables.length;out.filterable=big.length;
var t=null,ci=-1;
big.forEach(function(tb){if(t)return;for(var i=0;i<tb.rows[0].cells.length;i++){
  var v=visible(tb,i).map(num);if(v.length>3&&v.every(function(x){return x!==null})&&
  new Set(v).size>2){t=tb;ci=i;return}}});
if(t){var th=t.rows[0].cells[ci];th.click();var a=visible(t,ci).map(num);th.click();
  var d=visible(t,ci).map(num);
  out.sort_column=th.textContent.trim();
  out.sorted_asc=a.every(function(x,i){return i===0||a[i-1]<=x});
  out.sorted_desc=d.every(function(x,i){return i===0||d[i-1]>=x});
  var q=t.rows[1].cells[0].textContent.trim();var f=t.previousSibling;f.value=q;
  f.dispatchEvent(new Event('input'));
  var shown=[].slice.call(t.rows,1).filter(function(r){return r.style.display!=='none'});
  out.filter_query=q;out.filter_shown=shown.length;out.filter_rows=t.rows.length-1;
  out.filter_ok=shown.length>0&&shown.every(function(r){
    return r.textContent.toLowerCase().indexOf(q.toLowerCase())>=0})}
out.headings=[].slice.call(document.querySelectorAll('h2')).map(function(h){
  return h.textContent.trim()});
var links=[].slice.call(document.querySelectorAll('a[href^="#"]'));
out.links=links.length;out.dead=links.filter(function(a){
  return !document.getElementById(decodeURIComponent(a.getAttribute('href').slice(1)))})
  .map(function(a){return a.getAttribute('href')});
var right=document.body.getBoundingClientRect().right;
out.too_wide=tables.filter(function(t){return t.getBoundingClientRect().right>right+1})
  .map(function(t){var h=t.previousElementSibling;while(h&&h.tagName!=='H2'&&
  h.previousElementSibling)h=h.previousElementSibling;return h?h.textContent.trim():'?'});
var pre=document.createElement('pre');pre.id='probe';pre.textContent=JSON.stringify(out);
document.body.appendChild(pre)})();
</script>"""


def run(chromium: str, args: list[str], timeout: int = 120) -> str:
    with tempfile.TemporaryDirectory() as profile:
        res = subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", *args],
                             capture_output=True, text=True, timeout=timeout)
    return res.stdout


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--png", type=Path, default=None, help="screenshot of the top (1400 x 2400)")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    a = ap.parse_args(argv)
    page = a.out_dir / "report.html"
    if not page.is_file():
        print(f"{page}: no report.html there", file=sys.stderr)
        return 2
    if not Path(a.chromium).exists():
        print(f"--chromium {a.chromium}: not found (apt install chromium)", file=sys.stderr)
        return 2
    if a.png is not None:
        run(a.chromium, ["--window-size=1400,2400", f"--screenshot={a.png.resolve()}",
                         page.resolve().as_uri()])
        print(f"screenshot: {a.png}")
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.html"
        probe.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"),
                         encoding="utf-8")
        dom = run(a.chromium, ["--window-size=1400,2400", "--dump-dom", probe.as_uri()])
    m = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    if m is None:
        print("FAIL the page's script did not run (no probe output)")
        return 1
    got = json.loads(html.unescape(m.group(1)))
    heads = got["headings"]
    nxt = next((i for i, h in enumerate(heads) if h.lower().startswith("what to do next")), None)
    checks = [
        (f"numeric column '{got.get('sort_column')}' sorts ascending then descending",
         bool(got.get("sorted_asc")) and bool(got.get("sorted_desc"))),
        (f"filter '{got.get('filter_query')}' keeps {got.get('filter_shown')} of "
         f"{got.get('filter_rows')} rows, each containing it", bool(got.get("filter_ok"))),
        (f"'What to do next' is the first section heading ({heads[:3]})", nxt == 0),
        (f"{got['links']} in-page links, none dead {got['dead'][:5]}", not got["dead"]),
        (f"every table fits the page's column at 1400 px {got['too_wide'][:3]}",
         not got["too_wide"]),
    ]
    for text, ok in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {text}")
    print(f"{got['tables']} tables, {got['filterable']} with a filter box; sections: "
          + " / ".join(heads))
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
