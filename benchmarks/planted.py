"""Planted data sets with known ground truth, built from ../shared/data (seeded, never shipped).

Every benchmark that checks a finding against the truth builds its sets here, so the same
construction is used everywhere and nothing is tuned to one draw: each builder takes a ``seed``
and the benchmarks run several. The rows come from the shared data sets at run time (GSM8K:
MIT; Alpaca: CC BY-NC 4.0, used only here, never written into the repository).

GSM8K rows the built-in reference model never trained on are the **test** split
(``gsm8k_test.jsonl``, 1,319 rows); its training used the train split only.

Builders return ``(records, truth)``: ``records`` a list of dicts in one schema
(``question``/``answer`` for GSM8K, ``instruction``/``input``/``output`` for Alpaca), ``truth`` a
dict of what was planted (pairs of record positions, per-row labels, groups).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
GSM8K_TRAIN = SHARED / "gsm8k_train.jsonl"
GSM8K_TEST = SHARED / "gsm8k_test.jsonl"
ALPACA = SHARED / "alpaca_5000.json"

#: the corruption kinds of :func:`corrupt`; the last two exist for GSM8K-style targets only
KINDS_ANY = ("swap", "offtopic", "truncated", "language")
KINDS_GSM8K = (*KINDS_ANY, "final_answer", "intermediate")

_FINAL = re.compile(r"####\s*(.+?)\s*$", re.S)
_CALC = re.compile(r"<<([^=<>]+)=([^<>]+)>>([0-9.,]+)")


# ----------------------------------------------------------------------------------- sources
def gsm8k_rows(split: str = "test", n: int | None = None, seed: int = 0) -> list[dict]:
    """``n`` GSM8K rows of ``split`` ("test" = never seen by the reference model, or "train"),
    drawn without replacement with ``random.Random(seed)`` (all rows, shuffled, if n is None)."""
    path = GSM8K_TEST if split == "test" else GSM8K_TRAIN
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    rows = [{"question": r["question"], "answer": r["answer"]} for r in rows]
    rng = random.Random(seed)
    return rng.sample(rows, len(rows) if n is None else min(n, len(rows)))


def alpaca_rows(n: int | None = None, seed: int = 0) -> list[dict]:
    """``n`` Alpaca rows with a non-blank output, drawn with ``random.Random(seed)``."""
    rows = json.loads(ALPACA.read_text(encoding="utf-8"))
    rows = [{"instruction": r["instruction"], "input": r.get("input", ""), "output": r["output"]}
            for r in rows if r.get("output", "").strip()]
    rng = random.Random(seed)
    return rng.sample(rows, len(rows) if n is None else min(n, len(rows)))


def final_answer(answer: str) -> str | None:
    """The text after GSM8K's ``####`` marker (None when there is none)."""
    m = _FINAL.search(answer)
    return m.group(1) if m else None


def target_key(record: dict) -> str:
    return "answer" if "answer" in record else "output"


# ------------------------------------------------------------------------- small rewrites
def cosmetic(text: str, rng: random.Random) -> str:
    """Same content, other surface: one of case change, doubled spaces, dropped final
    punctuation, a leading filler; the words are unchanged."""
    choice = rng.randrange(4)
    if choice == 0:
        words = text.split(" ")
        return " ".join(w.upper() if i % 3 == 0 else w for i, w in enumerate(words))
    if choice == 1:
        return "  ".join(text.split(" "))
    if choice == 2:
        return text.rstrip(" .?!")
    return text.lower()


def other_final(answer: str, rng: random.Random) -> str:
    """The same worked solution with another final answer after ``####``."""
    head, final = answer.rsplit("####", 1)
    digits = re.sub(r"[^0-9-]", "", final)
    value = int(digits) if re.fullmatch(r"-?\d+", digits or "x") else 0
    delta = rng.choice([-9, -7, -3, 2, 5, 8, 11, 13])
    new = value + delta if value + delta != value else value + 1
    return f"{head}#### {new}"


def changed_intermediate(answer: str, rng: random.Random) -> str | None:
    """One intermediate result ``<<a*b=c>>c`` changed to a wrong value (the final answer kept);
    None when the solution has no intermediate step before the last."""
    matches = list(_CALC.finditer(answer))
    if len(matches) < 2:
        return None
    m = matches[rng.randrange(len(matches) - 1)]
    try:
        value = float(m.group(3).replace(",", ""))
    except ValueError:
        return None
    wrong = value + rng.choice([-4, -2, 3, 6, 10])
    shown = str(int(wrong)) if wrong == int(wrong) else f"{wrong:g}"
    return answer[:m.start()] + f"<<{m.group(1)}={shown}>>{shown}" + answer[m.end():]


def truncated(text: str, rng: random.Random) -> str:
    """The first 20-45 % of the target's words (at least one word fewer than the original)."""
    words = text.split(" ")
    keep = max(1, min(len(words) - 1, int(len(words) * rng.uniform(0.2, 0.45))))
    return " ".join(words[:keep])


_LANG = [
    "Die Antwort lautet {n}. Zuerst zählen wir alles zusammen, dann teilen wir das Ergebnis.",
    "La réponse est {n}. Nous additionnons d'abord les quantités, puis nous comparons.",
    "La respuesta es {n}. Primero sumamos las cantidades y luego restamos lo que falta.",
    "De uitkomst is {n}. Eerst tellen we alles op en daarna delen we het resultaat.",
]


def other_language(record: dict, rng: random.Random) -> str:
    """A reply in another language (self-written sentences), with the right number where the
    target has one."""
    key = target_key(record)
    n = final_answer(record[key]) if key == "answer" else None
    if n is None:
        nums = re.findall(r"\d+", record[key])
        n = nums[-1] if nums else str(rng.randrange(2, 90))
    return rng.choice(_LANG).format(n=n)


# --------------------------------------------------------------------------- corruptions
def corrupt(rows: list[dict], rate: float, kinds: tuple[str, ...], seed: int,
            donors: list[dict] | None = None) -> tuple[list[dict], list[str | None]]:
    """Replace the targets of ``rate`` of the rows by wrong ones, the kinds in equal shares.

    Parameters
    ----------
    rows : list of dict
        Clean records (GSM8K or Alpaca schema).
    rate : float
        Share of rows corrupted.
    kinds : tuple of str
        ``swap`` (the target of another row of the set), ``offtopic`` (a target from another
        task, taken from ``donors``), ``truncated``, ``language`` (a reply in another language),
        ``final_answer`` (GSM8K: another final number), ``intermediate`` (GSM8K: one wrong
        intermediate result, same final answer).
    donors : list of dict, optional
        Records of another task for ``offtopic`` (required when it is among the kinds).

    Returns
    -------
    records : list of dict
        A copy of ``rows`` with the corrupted targets (same order, same length).
    labels : list of (str or None)
        The corruption kind of each row, None for clean rows.
    """
    rng = random.Random(seed)
    out = [dict(r) for r in rows]
    labels: list[str | None] = [None] * len(rows)
    order = list(range(len(rows)))
    rng.shuffle(order)
    n_bad = round(rate * len(rows))
    chosen = order[:n_bad]
    for j, i in enumerate(chosen):
        kind = kinds[j % len(kinds)]
        key = target_key(out[i])
        if kind == "swap":
            other = rng.choice([x for x in order if x != i and labels[x] is None][:50])
            new = rows[other][target_key(rows[other])]
        elif kind == "offtopic":
            assert donors, "offtopic needs donors"
            d = rng.choice(donors)
            new = d[target_key(d)]
        elif kind == "truncated":
            new = truncated(rows[i][key], rng)
        elif kind == "language":
            new = other_language(rows[i], rng)
        elif kind == "final_answer":
            new = other_final(rows[i][key], rng)
        elif kind == "intermediate":
            new = changed_intermediate(rows[i][key], rng)
            if new is None:  # a one-step solution: change the final answer instead
                new, kind = other_final(rows[i][key], rng), "final_answer"
        else:
            raise ValueError(f"unknown corruption kind {kind!r}")
        if new.strip() == rows[i][key].strip():
            continue
        out[i][key] = new
        labels[i] = kind
    return out, labels


# ------------------------------------------------------------------------ validity sets
def with_contradictions(rows: list[dict], rate: float, seed: int,
                        cosmetic_share: float = 0.5) -> tuple[list[dict], list[tuple[int, int]]]:
    """``rows`` plus ``rate * len(rows)`` contradicting copies: the same question (a cosmetic
    surface edit in ``cosmetic_share`` of them) with another final answer. Returns the records
    (copies appended, then the whole set shuffled) and the planted pairs as positions."""
    rng = random.Random(seed)
    n_new = max(1, round(rate * len(rows)))
    src = rng.sample(range(len(rows)), n_new)
    records = [dict(r) for r in rows]
    pairs = []
    for i in src:
        q = rows[i]["question"]
        if rng.random() < cosmetic_share:
            q = cosmetic(q, rng)
        records.append({"question": q, "answer": other_final(rows[i]["answer"], rng)})
        pairs.append((i, len(records) - 1))
    return _shuffle_pairs(records, pairs, rng)


def style_clash(rows: list[dict], share: float, seed: int) -> tuple[list[dict], list[bool]]:
    """``share`` of the rows answered tersely ("The answer is N.") instead of the worked
    solution. Returns the records and a per-row flag (True = terse)."""
    rng = random.Random(seed)
    out = [dict(r) for r in rows]
    terse = [False] * len(rows)
    for i in rng.sample(range(len(rows)), round(share * len(rows))):
        n = final_answer(rows[i]["answer"])
        if n is None:
            continue
        out[i]["answer"] = f"The answer is {n}."
        terse[i] = True
    return out, terse


def _shuffle_pairs(records: list[dict], pairs: list[tuple[int, int]], rng: random.Random):
    order = list(range(len(records)))
    rng.shuffle(order)
    where = {old: new for new, old in enumerate(order)}
    shuffled = [records[i] for i in order]
    return shuffled, sorted(tuple(sorted((where[a], where[b]))) for a, b in pairs)


# Self-written word problems in GSM8K's style (answers computed, <<calc>> annotations): a
# template filled twice with other names, items and numbers gives two *different* problems of the
# same shape ("sibling problems"); many fills of a few templates give a set whose constraints
# should saturate.
_NAMES = ["Ava", "Ben", "Carla", "Dev", "Elif", "Femi", "Gus", "Hana", "Ivan", "Jade", "Kofi",
          "Lena", "Milo", "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sami", "Tara", "Uma",
          "Victor", "Wren", "Yusuf", "Zoe"]
_ITEMS = ["apple", "pencil", "marble", "sticker", "cookie", "book", "card", "shell", "ribbon",
          "stamp"]


def _t_age(r, a, b):
    x, y = r.randint(2, 15), r.randint(5, 40)
    return (f"{a} is {x} years older than {b}. If {b} is {y} years old, how old is {a}?",
            f"{a} is {y} + {x} = <<{y}+{x}={y + x}>>{y + x} years old.\n#### {y + x}")


def _t_buy(r, a, b):
    n, p, it = r.randint(2, 12), r.randint(2, 9), r.choice(_ITEMS)
    return (f"{a} buys {n} {it}s for ${p} each. How much money does {a} spend?",
            f"{a} spends {n} * {p} = $<<{n}*{p}={n * p}>>{n * p}.\n#### {n * p}")


def _t_give(r, a, b):
    n, it = r.randint(10, 60), r.choice(_ITEMS)
    m = r.randint(1, n - 1)
    return (f"{a} has {n} {it}s and gives {m} of them to {b}. How many {it}s does {a} have "
            f"left?",
            f"{a} has {n} - {m} = <<{n}-{m}={n - m}>>{n - m} {it}s left.\n#### {n - m}")


def _t_speed(r, a, b):
    v, t = r.randint(20, 70), r.randint(2, 6)
    return (f"{a} drives at {v} miles per hour for {t} hours. How many miles does {a} drive?",
            f"{a} drives {v} * {t} = <<{v}*{t}={v * t}>>{v * t} miles.\n#### {v * t}")


def _t_save(r, a, b):
    s, w, c = r.randint(3, 25), r.randint(3, 12), r.randint(5, 40)
    total = s * w + c
    return (f"{a} has ${c} and saves ${s} every week. How much money will {a} have after {w} "
            f"weeks?",
            f"In {w} weeks {a} saves {s} * {w} = $<<{s}*{w}={s * w}>>{s * w}.\n"
            f"{a} will have {c} + {s * w} = $<<{c}+{s * w}={total}>>{total}.\n#### {total}")


def _t_more(r, a, b):
    x, d, it = r.randint(5, 30), r.randint(2, 15), r.choice(_ITEMS)
    y = x + d
    return (f"{a} has {x} {it}s. {b} has {d} more {it}s than {a}. How many {it}s do they have "
            f"together?",
            f"{b} has {x} + {d} = <<{x}+{d}={y}>>{y} {it}s.\n"
            f"Together they have {x} + {y} = <<{x}+{y}={x + y}>>{x + y} {it}s.\n#### {x + y}")


def _t_share(r, a, b):
    k, e, it = r.randint(2, 8), r.randint(2, 9), r.choice(_ITEMS)
    n = k * e
    return (f"{a} shares {n} {it}s equally among {k} friends. How many {it}s does each friend "
            f"get?",
            f"Each friend gets {n} / {k} = <<{n}/{k}={e}>>{e} {it}s.\n#### {e}")


def _t_pages(r, a, b):
    p, d, t = r.randint(5, 40), r.randint(2, 9), r.randint(1, 3)
    total = p * d * t
    return (f"{a} reads {p} pages a day, {t} times a week is a reading day for each of {d} "
            f"weeks. How many pages does {a} read?",
            f"{a} reads on {t} * {d} = <<{t}*{d}={t * d}>>{t * d} days.\n"
            f"That is {p} * {t * d} = <<{p}*{t * d}={total}>>{total} pages.\n#### {total}")


TEMPLATES = (_t_age, _t_buy, _t_give, _t_speed, _t_save, _t_more, _t_share, _t_pages)


def fill(template_index: int, rng: random.Random) -> dict:
    """One fill of a self-written template: other names, items and numbers."""
    a, b = rng.sample(_NAMES, 2)
    q, ans = TEMPLATES[template_index % len(TEMPLATES)](rng, a, b)
    return {"question": q, "answer": ans}


def sibling_pairs(n_pairs: int, seed: int) -> tuple[list[dict], list[tuple[int, int]]]:
    """``n_pairs`` pairs of sibling problems: one template filled twice with other names and
    numbers (two different problems of the same shape; the questions always differ)."""
    rng = random.Random(seed)
    records, pairs = [], []
    while len(pairs) < n_pairs:
        t = len(pairs) % len(TEMPLATES)
        a, b = fill(t, rng), fill(t, rng)
        if a["question"] == b["question"] or a["answer"] == b["answer"]:
            continue
        records += [a, b]
        pairs.append((len(records) - 2, len(records) - 1))
    return records, pairs


def template_fills(n: int, n_templates: int, seed: int) -> list[dict]:
    """``n`` distinct fills of the first ``n_templates`` templates, round robin."""
    rng = random.Random(seed)
    seen, out = set(), []
    while len(out) < n:
        r = fill(len(out) % n_templates, rng)
        if r["question"] not in seen:
            seen.add(r["question"])
            out.append(r)
    return out


def write_jsonl(records: list[dict], path: Path) -> Path:
    """Write records as JSON Lines (UTF-8) and return the path."""
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                    encoding="utf-8")
    return path
