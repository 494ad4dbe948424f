"""``volatility``: how far the targets lie from what the model predicts, token by token."""

from __future__ import annotations

import json

import pandas as pd

from constraintlab.report._format import _e, _num, _text, number_line
from constraintlab.report.sections import Part, Section, View


def volatile_examples(report) -> pd.DataFrame:
    """The most volatile examples (highest score first), index = example index.

    Columns: ``volatility``, ``percentile`` (share of examples scoring as low or lower),
    ``mean_nll``, ``max_nll``, ``topk_miss_share``, ``grad_norm``, ``n_tokens`` and
    ``worst_tokens`` (the most surprising target tokens as ``"piece" nll``).
    """
    cols = ["volatility", "percentile", "mean_nll", "max_nll", "topk_miss_share",
            "grad_norm", "n_tokens", "worst_tokens"]
    rows = [{**{k: v[k] for k in cols[:-1]}, "index": v["id"],
             "worst_tokens": ", ".join(f"{json.dumps(t['text'], ensure_ascii=False)} "
                                       f"{t['nll']:.2f}" for t in v["tokens"])}
            for v in report._section("volatility")["most_volatile"]]
    return pd.DataFrame(rows, columns=["index", *cols]).set_index("index")


def _predicts_targets_false(v: View) -> bool:
    cap = (v.data.get("suspects") or {}).get("capability") or {}
    return cap.get("predicts_targets") is False


def _kpi(v: View) -> list[str]:
    vol = v.data.get("volatility")
    if not vol:
        return []
    p = vol["percentiles"]["volatility"]
    why = ("restates that the model does not know this text" if _predicts_targets_false(v)
           else f"max {p['max']:.3f}")
    return [f"<div>volatility p99<b>{p['p99']:.3f}</b>{_e(why)}</div>"]


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


def _html(v: View, limit: int = 10) -> list[str]:
    vol, examples = v.data.get("volatility"), v.examples
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
    for x in listed:
        worst = ", ".join(f"<code>{_e(json.dumps(t['text'], ensure_ascii=False))}</code> "
                          f"{t['nll']:.2f} (rank {t['rank']})" for t in x["tokens"])
        more = (f" <span class='muted'>[first {len(x['profile'])} of {x['n_tokens']} tokens]"
                "</span>" if x["profile_truncated"] else "")
        out += [f"<h3>record {x['id']} <span class='muted'>volatility {x['volatility']:.3f} "
                f"(percentile {x['percentile']:.0%}) · mean NLL {x['mean_nll']:.2f} · max NLL "
                f"{x['max_nll']:.2f} · top-{vol['top_k']} miss {x['topk_miss_share']:.0%} · "
                f"gradient norm {_num(x['grad_norm'])}</span></h3>",
                f"<div class='input'><pre>{_e(_text(examples, x['id'], 'input', 300))}</pre>"
                "</div>",
                f"<div class='tokens'>{_shaded_tokens(x['profile'], vol['ln_vocab'])}{more}"
                "</div>",
                f"<p class='muted'>most surprising tokens: {worst}</p>"]
    return out


def _line(v: View) -> list[str]:
    if not v.data.get("volatility"):
        return []
    m = v.metrics
    return [number_line("volatility p99", f"{m['volatility_p99']:.3f}",
                        f"max {m['max_volatility']:.3f} (0 = predicted, 1 = unknown to the model"
                        + ("; here it restates that the model does not know this text)"
                           if _predicts_targets_false(v) else ")"))]


#: The contract of ``report.json["volatility"]`` (JSON Schema), assembled into the report's
#: by :func:`constraintlab.report.schema.report_schema`.
SCHEMA: dict = {
    "type": ["object", "null"],
    "description": (
        "Token volatility: how far each target lies from what the model already predicts (0 = "
        "predicted, 1 = unknown to the model); null when the feature store has no token profiles."
    ),
    "required": [
        "formula",
        "top_k",
        "weights",
        "ln_vocab",
        "grad_norm_median",
        "percentiles",
        "most_volatile",
    ],
    "properties": {
        "formula": {"type": "string"},
        "top_k": {"type": "integer", "minimum": 1},
        "weights": {
            "type": "object",
            "required": ["mean_nll", "max_nll", "topk_miss_share", "grad_norm"],
            "additionalProperties": {"type": "number", "minimum": 0},
        },
        "ln_vocab": {"type": "number", "exclusiveMinimum": 0},
        "vocab_size": {"type": "integer", "minimum": 2},
        "grad_norm_median": {"type": "number", "minimum": 0},
        "percentiles": {
            "type": "object",
            "required": ["volatility", "mean_nll", "max_nll", "topk_miss_share", "grad_norm"],
            "additionalProperties": {
                "type": "object",
                "required": ["p50", "p90", "p95", "p99", "max", "mean"],
                "properties": {
                    "p50": {"type": "number"},
                    "p90": {"type": "number"},
                    "p95": {"type": "number"},
                    "p99": {"type": "number"},
                    "max": {"type": "number"},
                    "mean": {"type": "number"},
                },
            },
        },
        "most_volatile": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    "id",
                    "volatility",
                    "percentile",
                    "mean_nll",
                    "max_nll",
                    "topk_miss_share",
                    "grad_norm",
                    "n_tokens",
                    "tokens",
                    "profile",
                    "profile_truncated",
                ],
                "properties": {
                    "id": {"type": "integer", "minimum": 0},
                    "volatility": {"type": "number", "minimum": 0, "maximum": 1},
                    "percentile": {"type": "number", "minimum": 0, "maximum": 1},
                    "mean_nll": {"type": "number"},
                    "max_nll": {"type": "number"},
                    "topk_miss_share": {"type": "number", "minimum": 0, "maximum": 1},
                    "grad_norm": {"type": "number", "minimum": 0},
                    "n_tokens": {"type": "integer", "minimum": 1},
                    "tokens": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["position", "text", "nll", "rank"],
                            "properties": {
                                "position": {"type": "integer", "minimum": 0},
                                "text": {"type": "string"},
                                "nll": {"type": "number"},
                                "rank": {"type": "integer", "minimum": 0},
                            },
                        },
                    },
                    "profile": {
                        "type": "array",
                        "maxItems": 400,
                        "items": {
                            "type": "array",
                            "prefixItems": [{"type": "string"}, {"type": "number"}],
                            "minItems": 2,
                            "maxItems": 2,
                        },
                    },
                    "profile_truncated": {"type": "boolean"},
                },
            },
        },
    },
}


SECTION = Section(
    "volatility", schema=SCHEMA,
    parts=(Part("kpi", 50, _kpi), Part("body", 110, _html), Part("numbers", 80, _line)),
    methods={"volatile_examples": volatile_examples},
    kpi_links={"volatility p99": "token-volatility"})
