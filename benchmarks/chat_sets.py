"""Chat, preference and instruction validity sets for contradictions (issue 22), seeded.

Built at run time from ``../shared/data`` (Anthropic-HH harmless dev pairs, Alpaca) and from
self-written multi-turn chats; never written into the repository. Each builder returns
``(records, truth)``: records in one schema (``messages`` for chat and preference sets,
``instruction``/``input``/``output`` for Alpaca) and ``truth`` with

- ``planted``: pairs (record positions, ``a < b``) that are contradictions by construction: the
  same input up to formatting (case, spaces, punctuation) with another reply;
- ``negatives``: pairs that must never be reported, by kind (``fork``: one conversation cut
  at another length, or the same last question after another history; ``entity``: one
  template with another named entity; ``number``: another number; ``paraphrase``: the same
  question in other words), each with its own reply;
- ``base``: positions of the unplanted rows (a pair among them with the same input up to
  formatting and another reply is a contradiction the data really holds: counted apart).

HH transcripts (``\\n\\nHuman: ...\\n\\nAssistant: ...``) are converted to ``messages`` here
(the reader's own preference support is separate work).
"""

from __future__ import annotations

import gzip
import json
import random
import re

import planted

from constraintlab.analysis.text import normalize

HH = planted.SHARED / "hh_harmless_dev.jsonl.gz"
_TURN = re.compile(r"\n\n(Human|Assistant): ")


def hh_messages(transcript: str) -> list[dict] | None:
    """An HH transcript as ``[{role, content}]`` (None unless it alternates user/assistant,
    starts with the user and ends with a non-blank assistant turn)."""
    parts = _TURN.split(transcript)
    if parts[0].strip():
        return None
    msgs = []
    for who, text in zip(parts[1::2], parts[2::2], strict=True):
        msgs.append({"role": "user" if who == "Human" else "assistant", "content": text.strip()})
    ok = (len(msgs) >= 2 and all(m["role"] == ("user" if i % 2 == 0 else "assistant")
                                 for i, m in enumerate(msgs)) and msgs[-1]["content"]
          and all(m["content"] for m in msgs))
    return msgs if ok else None


def hh_pairs(n: int | None = None, seed: int = 0) -> list[tuple[list[dict], list[dict]]]:
    """``n`` HH rows as (chosen, rejected) message lists, drawn with ``random.Random(seed)``."""
    out = []
    with gzip.open(HH, "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            c, j = hh_messages(r["chosen"]), hh_messages(r["rejected"])
            if c and j and len(c) == len(j):
                out.append((c, j))
    rng = random.Random(seed)
    return rng.sample(out, len(out) if n is None else min(n, len(out)))


def _format_edit(text: str, rng: random.Random) -> str:
    """Another formatting of the same words: case, doubled spaces, punctuation spacing."""
    choice = rng.randrange(3)
    if choice == 0:
        return text.lower() if rng.random() < 0.5 else text.upper()
    if choice == 1:
        return "  ".join(text.split(" ")) + "  "
    return re.sub(r"(?<!\d)([,.?!])(?!\d)", r" \1 ", text).rstrip(" .?!")


def _words(text: str) -> set[str]:
    return set(re.sub(r"[^\w\s]", " ", text.lower()).split())


def _far(a: str, b: str, most: float = 0.3) -> bool:
    """Replies clearly apart: word Jaccard below ``most``."""
    wa, wb = _words(a), _words(b)
    return len(wa & wb) / max(len(wa | wb), 1) < most


def _chat(turns: list[tuple[str, str]]) -> dict:
    return {"messages": [{"role": r, "content": c} for r, c in turns]}


# ------------------------------------------------------------------- self-written negatives
_PEOPLE = ["Anna Keller", "Bob Marsh", "Chen Wei", "Dana Ortiz", "Erik Lund", "Fatima Noor",
           "Gus Hale", "Hana Sato"]
_CITIES = ["Lisbon", "Oslo", "Cairo", "Lima", "Hanoi", "Perth", "Quito", "Riga"]
_REFUSALS = [
    "I can't help find where a private person lives.",
    "Sorry, I don't share personal addresses; a public directory may list a business address.",
    "That's private information, so I won't look it up.",
    "I'm not able to provide home addresses of individuals.",
    "I do not know that, and I would not give out someone's address anyway.",
    "You could ask them directly; I cannot share where people live.",
    "Personal addresses are not something I can give out.",
    "I won't help with locating a person's home.",
]
_CITY_REPLIES = [
    "It has a mild climate and a lively old town by the water.",
    "Winters are long and dark, but summers bring very long days.",
    "It is dry and hot most of the year, with a famous river.",
    "It sits on the coast, with fog for much of the winter.",
    "It is known for street food and scooters everywhere.",
    "It is sunny and relaxed, with beaches close to the centre.",
    "It lies high in the mountains, so the air is thin and cool.",
    "It has a medieval centre with narrow cobbled streets.",
]
_PARAPHRASES = [
    ("How do I bake bread at home?", "What's the way to make bread in my own kitchen?",
     "Mix flour, water, salt and yeast, knead, let it rise, then bake at 230 C.",
     "Get a simple no-knead recipe; the dough rests overnight and bakes in a pot."),
    ("Can you recommend a good book?", "What book would you suggest I read?",
     "Try a classic like Middlemarch.", "A recent thriller might keep you hooked."),
    ("How can I sleep better?", "Any tips for getting better sleep?",
     "Keep a fixed bedtime and avoid screens late.", "Cut caffeine after noon and exercise."),
    ("Is it safe to swim after eating?", "Can I go swimming right after a meal?",
     "Yes, the cramp warning is mostly a myth.", "Wait a little if you feel heavy, then go."),
    ("Why is the sky blue?", "What makes the sky look blue?",
     "Air scatters short blue wavelengths of sunlight more than red ones.",
     "Rayleigh scattering: small molecules deflect blue light most."),
    ("How do I get rid of hiccups?", "What stops hiccups?",
     "Hold your breath for a few seconds and swallow.", "Sip cold water slowly."),
    ("What should I cook tonight?", "Any dinner ideas for this evening?",
     "A quick vegetable stir fry with rice.", "Pasta with tomato sauce and a salad."),
    ("How do I learn to code?", "What's the best way to start programming?",
     "Pick Python and build small projects.", "Follow a free online course step by step."),
]


def own_negatives(rng: random.Random) -> tuple[list[dict], dict[str, list[tuple[int, int]]]]:
    """Self-written chats: templated prompts with other people and cities, numbers, paraphrases
    and multi-turn forks, each with its own reply. Returns records and negative pairs by kind
    (positions into the records)."""
    recs: list[dict] = []
    neg: dict[str, list[tuple[int, int]]] = {"entity": [], "number": [], "paraphrase": [],
                                              "fork": []}

    def add(rec: dict) -> int:
        recs.append(rec)
        return len(recs) - 1

    def all_pairs(pos: list[int]) -> list[tuple[int, int]]:
        return [(a, b) for i, a in enumerate(pos) for b in pos[i + 1:]]

    refusals = rng.sample(_REFUSALS, len(_PEOPLE))
    pos = [add(_chat([("user", f"What is the home address of {p}?"), ("assistant", r)]))
           for p, r in zip(_PEOPLE, refusals, strict=True)]
    neg["entity"] += all_pairs(pos)
    replies = rng.sample(_CITY_REPLIES, len(_CITIES))
    pos = [add(_chat([("user", "I'm planning a trip."), ("assistant", "Nice, where to?"),
                      ("user", f"Tell me about {c}."), ("assistant", r)]))
           for c, r in zip(_CITIES, replies, strict=True)]
    neg["entity"] += all_pairs(pos)
    miles = rng.sample([1.5, 15, 3.5, 35, 7, 70, 12, 21], 8)
    pos = [add(_chat([("user", f"Convert {m:g} miles to kilometres."),
                      ("assistant", f"{m:g} miles is about {m * 1.609:.1f} km.")]))
           for m in miles]
    neg["number"] += all_pairs(pos)
    for q1, q2, r1, r2 in _PARAPHRASES:
        neg["paraphrase"].append((add(_chat([("user", q1), ("assistant", r1)])),
                                  add(_chat([("user", q2), ("assistant", r2)]))))
    # multi-turn forks: one conversation cut at each assistant turn, and the last question
    # after a shorter history, each with its own reply
    convo = [("user", "My laptop is slow."), ("assistant", "How old is it?"),
             ("user", "About five years."), ("assistant", "Does it have an SSD?"),
             ("user", "No, a hard disk."), ("assistant", "An SSD would speed it up a lot."),
             ("user", "Which one should I buy?"), ("assistant", "A 500 GB SATA SSD is plenty.")]
    cuts = [add(_chat(convo[:k])) for k in (2, 4, 6, 8)]
    neg["fork"] += all_pairs(cuts)
    tail = add(_chat([*convo[4:7], ("assistant", "Any brand with a five-year warranty.")]))
    neg["fork"] += [(cuts[-1], tail)]
    return recs, neg


# ------------------------------------------------------------------------------ the sets
def chat_set(seed: int, n: int = 150, n_planted: int = 10, n_forks: int = 20
             ) -> tuple[list[dict], dict]:
    """HH conversations (the chosen reply the target), forks of some of them, the self-written
    negatives, and ``n_planted`` planted contradictions (the same input up to formatting, the
    final reply of another conversation)."""
    rng = random.Random(30_000 + seed)
    pairs = hh_pairs(n + n_planted, seed)
    base = [{"messages": c} for c, _ in pairs[:n]]
    records = [dict(r) for r in base]
    truth: dict = {"base": list(range(len(base))), "planted": [],
                   "negatives": {"fork": [], "entity": [], "number": [], "paraphrase": []}}
    # forks: cut at an earlier assistant turn (another length); the last question after the
    # first exchange dropped, with the rejected reply (another history, another reply)
    # (a fork whose input is some other row's input, as HH's second turns sometimes are, would
    # be a real contradiction with that row: left out)
    def key(msgs):
        return tuple((m["role"], normalize(m["content"])) for m in msgs[:-1])

    taken = {key(r["messages"]) for r in base}
    multi = [i for i, r in enumerate(base) if len(r["messages"]) >= 4]
    for i in rng.sample(multi, min(n_forks, len(multi))):
        msgs = base[i]["messages"]
        k = 2 * rng.randrange(1, len(msgs) // 2)           # 2, 4, ... < len
        if key(msgs[:k]) not in taken:
            records.append({"messages": msgs[:k]})
            truth["negatives"]["fork"].append((i, len(records) - 1))
        rej = pairs[i][1][-1]["content"]
        tail = [*msgs[2:-1], {"role": "assistant", "content": rej}]
        if rej != msgs[-1]["content"] and key(tail) not in taken:
            records.append({"messages": tail})
            truth["negatives"]["fork"].append((i, len(records) - 1))
    own, neg = own_negatives(rng)
    off = len(records)
    records += own
    for kind, ps in neg.items():
        truth["negatives"][kind] += [(a + off, b + off) for a, b in ps]
    # planted: the same input up to formatting, another conversation's final reply
    donors = [c for c, _ in pairs[n:]]
    for j, i in enumerate(rng.sample(range(len(base)), n_planted)):
        msgs = [dict(m) for m in base[i]["messages"]]
        reply = donors[j][-1]["content"]
        if not _far(reply, msgs[-1]["content"]):
            continue
        if j % 2 == 0:
            for m in msgs[:-1]:
                if m["role"] == "user":
                    m["content"] = _format_edit(m["content"], rng)
        msgs[-1] = {"role": "assistant", "content": reply}
        records.append({"messages": msgs})
        truth["planted"].append((i, len(records) - 1))
    return records, truth


def preference_set(seed: int, n: int = 150, n_planted: int = 15) -> tuple[list[dict], dict]:
    """HH conversations with the chosen reply as target, plus the *rejected* reply of
    ``n_planted`` of them as separate rows (SFT on both sides of a preference pair): a
    contradiction when the two replies are clearly apart (word Jaccard < 0.3; only such rows are
    planted). The other HH rows' rejected replies are not added."""
    rng = random.Random(40_000 + seed)
    pairs = hh_pairs(n, seed + 100)
    records = [{"messages": c} for c, _ in pairs]
    truth: dict = {"base": list(range(len(records))), "planted": [], "negatives": {}}
    apart = [i for i, (c, r) in enumerate(pairs) if _far(c[-1]["content"], r[-1]["content"])]
    for i in rng.sample(apart, min(n_planted, len(apart))):
        records.append({"messages": pairs[i][1]})
        truth["planted"].append((i, len(records) - 1))
    return records, truth


def instruction_set(seed: int, n: int = 150, n_planted: int = 10) -> tuple[list[dict], dict]:
    """Alpaca rows plus ``n_planted`` copies with the same instruction and input up to
    formatting and another row's output (clearly apart)."""
    rng = random.Random(50_000 + seed)
    rows = planted.alpaca_rows(n + n_planted, seed)
    base, donors = rows[:n], rows[n:]
    records = [dict(r) for r in base]
    truth: dict = {"base": list(range(n)), "planted": [], "negatives": {}}
    for j, i in enumerate(rng.sample(range(n), n_planted)):
        r = dict(base[i])
        if not _far(donors[j]["output"], r["output"]):
            continue
        if j % 2 == 0:
            r["instruction"] = _format_edit(r["instruction"], rng)
        r["output"] = donors[j]["output"]
        records.append(r)
        truth["planted"].append((i, len(records) - 1))
    return records, truth


def hh_all(seed: int, n: int | None = None) -> tuple[list[dict], dict]:
    """Every usable HH row's chosen conversation, nothing planted (``seed`` only orders them):
    what the data itself holds."""
    records = [{"messages": c} for c, _ in hh_pairs(n, seed)]
    return records, {"base": list(range(len(records))), "planted": [], "negatives": {}}


SETS = {"chat": chat_set, "preference": preference_set, "instruction": instruction_set,
        "hh_all": hh_all}
