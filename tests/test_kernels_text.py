"""The byte-level normaliser against its twin and against the regex reference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from constraintlab._kernels.text import ASCII_TABLE, normalize_ascii, normalize_ascii_numpy
from constraintlab.analysis.text import _normalize_regex, normalize, normalize_many

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

CASES = ["", "a", "  ", "A,000", "1,000", "1,0000", "12,345,678 and 3,45", "x_y", "don't",
         "\x00a\x1db", "Hi!!\n\n  There", "ends with space ", " ,1,234,", "9,999", "1',000",
         "naïve Café ’twas ＡＢＣ１２３ x\u2028y \u00a0z", "Straße İ", "٣,٠٠٠ 1,٠٠٠", "a\u0301"]


def test_kernel_matches_twin_on_cases():
    data = "\x1e".join(c for c in CASES if c.isascii()).encode("ascii")
    buf = np.frombuffer(data, dtype=np.uint8)
    np.testing.assert_array_equal(normalize_ascii(buf, ASCII_TABLE), normalize_ascii_numpy(buf))


def test_normalize_many_matches_regex_reference():
    assert normalize_many(CASES) == _normalize_regex(CASES)
    assert normalize("  The ANSWER, is: 1,000!! ") == "the answer is 1000"
    assert normalize("Ｔｈｅ　ａｎｓｗｅｒ’s") == normalize("the answers")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=30), max_size=8),
       st.lists(st.text(alphabet="aZ09 ,.'`_\n\t!\u2019\u00e9\u00a0\uff11", max_size=30),
                max_size=8))
def test_normalize_many_property(random_texts, typed_texts):
    texts = random_texts + typed_texts
    assert normalize_many(texts) == _normalize_regex(texts)
    ascii_texts = [t for t in texts if t.isascii()]
    buf = np.frombuffer("\x1e".join(t.replace("\x1e", " ") for t in ascii_texts).encode(),
                        dtype=np.uint8)
    np.testing.assert_array_equal(normalize_ascii(buf, ASCII_TABLE), normalize_ascii_numpy(buf))


def test_real_corpora_match_reference():
    path = DATA / "alpaca_5000.json"
    if not path.exists():
        pytest.skip(f"shared data folder {DATA} is absent")
    rows = json.loads(path.read_text())[:1500]
    texts = [f"{r['instruction']}\n{r['input']}\n{r['output']}" for r in rows]
    assert normalize_many(texts) == _normalize_regex(texts)
