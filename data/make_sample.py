"""Rebuild data/gsm8k_sample.jsonl from ../shared/data/gsm8k_train.jsonl (GSM8K, MIT).

306 records: 288 rows drawn with a seeded generator, plus 18 planted rows that make the sample
show what constraintlab finds: 4 exact duplicates, 4 cosmetic near duplicates (case, spacing,
punctuation), 4 contradictions (same question, another final answer) and two variant families
of 3 added variants each (a marked word, a synonym, an appended instruction): one where every
variant keeps the answer, one where two variants change it. Each planted row says what it is in
a "planted" field (ignored by the reader); run from the repository root:

    python data/make_sample.py
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent
SOURCE = ROOT.parent.parent / "shared" / "data" / "gsm8k_train.jsonl"
OUT = ROOT / "gsm8k_sample.jsonl"


def cosmetic(text: str) -> str:
    """Same content, other surface: first word upper-cased, doubled spaces, no final period."""
    words = text.split(" ")
    words[0] = words[0].upper()
    return "  ".join(words).rstrip(".")


def other_answer(answer: str) -> str:
    """The same worked solution with a different final number after '####'."""
    head, final = answer.rsplit("####", 1)
    value = int(re.sub(r"[^0-9-]", "", final) or 0)
    return f"{head}#### {value + 7}"


def variants(question: str) -> list[str]:
    """Three deliberate variants of a question: a marked word, a synonym, an added step."""
    words = question.split(" ")
    marked = list(words)
    marked[2] = f"**{marked[2]}**"
    synonyms = {"has": "owns", "bought": "purchased", "buys": "purchases", "each": "every",
                "makes": "earns", "gave": "handed", "wants": "would like"}
    swapped = [synonyms.get(w, w) for w in words]
    if swapped == words:
        swapped.insert(1, "really")
    return [" ".join(marked), " ".join(swapped), question + " Explain each step."]


def main() -> None:
    rows = [json.loads(line) for line in SOURCE.read_text(encoding="utf-8").splitlines()]
    rng = random.Random(20261123)
    base = [{"question": r["question"], "answer": r["answer"]} for r in rng.sample(rows, 288)]
    planted = []
    for i, r in enumerate(base[:4]):
        planted.append({**r, "planted": f"exact duplicate of sample row {i}"})
    for i, r in enumerate(base[4:8], start=4):
        planted.append({"question": cosmetic(r["question"]), "answer": r["answer"],
                        "planted": f"cosmetic near duplicate of sample row {i}"})
    for i, r in enumerate(base[8:12], start=8):
        planted.append({"question": r["question"], "answer": other_answer(r["answer"]),
                        "planted": f"contradiction of sample row {i}"})
    for i, flip in ((12, False), (13, True)):
        r = base[i]
        for j, q in enumerate(variants(r["question"])):
            changed = flip and j != 1
            planted.append({"question": q,
                            "answer": other_answer(r["answer"]) if changed else r["answer"],
                            "planted": f"variant {j + 1} of sample row {i}"
                            + (" with another final answer" if changed else "")})
    records = base + planted
    order = list(range(len(records)))
    rng.shuffle(order)
    with OUT.open("w", encoding="utf-8") as f:
        for j in order:
            f.write(json.dumps(records[j], ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
