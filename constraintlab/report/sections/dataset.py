"""``dataset``: what io and encode read, and the records they could not use."""

from __future__ import annotations

from constraintlab._text import visible
from constraintlab.report._format import _e
from constraintlab.report.sections import Part, Section, View


def _html(v: View, limit: int = 50) -> list[str]:
    """Records that could not be used (left out of the analysis) and records used with a note."""
    ds = v.data["dataset"]
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


def _finding_lines(v: View, limit: int = 10) -> list[str]:
    """The records left out, ``path:line: reason`` each (the first ``limit``)."""
    findings = v.data["dataset"].get("findings") or []
    if not findings:
        return []
    lines = [f"records left out ({len(findings)}, gate metric invalid_records):"]
    for f in findings[:limit]:
        where = f"{f['source']}:{f['line']}" if f.get("line") else str(f["source"])
        lines.append(f"  {visible(where)}: {visible(f['message'])}")
    if len(findings) > limit:
        lines.append(f"  ... and {len(findings) - limit} more (report.json dataset.findings)")
    return [*lines, ""]


#: The contract of ``report.json["dataset"]`` (JSON Schema), assembled into the report's
#: by :func:`constraintlab.report.schema.report_schema`.
SCHEMA: dict = {
    "type": "object",
    "required": [
        "source",
        "sha256",
        "schema",
        "n_records",
        "n_examples",
        "invalid_records",
        "findings",
        "skipped",
    ],
    "properties": {
        "source": {"type": "string"},
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "schema": {"enum": ["chat", "sharegpt", "prompt_completion", "alpaca", "qa", "text"]},
        "n_records": {"type": "integer", "minimum": 0},
        "n_examples": {"type": "integer", "minimum": 0},
        "skipped": {
            "type": "array",
            "items": {"type": "string"},
            "description": "the findings as 'path:line: message' strings",
        },
        "invalid_records": {
            "type": "integer",
            "minimum": 0,
            "description": "records that could not be used (len(findings)); metric invalid_records",
        },
        "truncated_examples": {
            "type": "integer",
            "minimum": 0,
            "description": "examples cut at max_length (kept; n_truncated in examples.csv)",
        },
        "findings": {
            "type": "array",
            "items": {"$ref": "#/$defs/finding"},
            "description": (
                "one object per unusable record (io and encode), excluded from the analysis"
            ),
        },
        "notes": {
            "type": "array",
            "items": {"$ref": "#/$defs/finding"},
            "description": "records that are odd but were used (empty input, content parts)",
        },
    },
}


SECTION = Section("dataset", schema=SCHEMA,
                  parts=(Part("body", 60, _html), Part("tail", 10, _finding_lines)))
