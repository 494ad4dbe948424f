"""Shared fixtures: where the real datasets live (../shared/data beside the checkout)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests that need it are skipped (with the reason) when it is absent."""
    if not (SHARED_DATA / "gsm8k_train.jsonl").exists():
        pytest.skip(f"real datasets not found at {SHARED_DATA}")
    return SHARED_DATA
