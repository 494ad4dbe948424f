"""Shared fixtures: where the real datasets live (../shared/data beside the checkout)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# The shared feature-store cache of this test session (CLI subprocesses inherit it): never the
# user's ~/.cache, and stores are shared between the tests of one run only.
os.environ["CONSTRAINTLAB_CACHE"] = tempfile.mkdtemp(prefix="constraintlab-test-cache-")
atexit.register(shutil.rmtree, os.environ["CONSTRAINTLAB_CACHE"], True)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests that need it are skipped (with the reason) when it is absent."""
    if not (SHARED_DATA / "gsm8k_train.jsonl").exists():
        pytest.skip(f"real datasets not found at {SHARED_DATA}")
    return SHARED_DATA


#: The record of formula and terminal-escape text the gate/escape tests plant beside 12 GSM8K
#: training records.
HOSTILE_RECORD = {"question": "=cmd|' /C calc'!A0 \x1b]0;pwned\x07",
                  "answer": "-2+3 @SUM(A1) \x1b[2J"}


@pytest.fixture(scope="session")
def gate_report(tmp_path_factory) -> Path:
    """A real report directory (``constraintlab analyze`` of the first 12 GSM8K training
    records and :data:`HOSTILE_RECORD` on a tiny Qwen3, k = 32), built once per session;
    tests copy it before damaging it."""
    import json

    from tiny_models import build_model, gsm8k_records

    import constraintlab

    root = tmp_path_factory.mktemp("gate_report")
    data = root / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in [*gsm8k_records(12), HOSTILE_RECORD]),
                    encoding="utf-8")
    model = build_model("qwen3", root / "tiny-qwen3")
    out = root / "report"
    constraintlab.analyze(data, model=str(model), out=out, k=32)
    return out
