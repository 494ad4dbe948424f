"""Small promises to a first-time user: ``dir(constraintlab)`` lists the API, no tqdm
IProgress warning without ipywidgets, the notebook's text describes the sample as it is, and
``max_length`` never runs past the model's positions."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "gsm8k_sample.jsonl"


def test_dir_lists_the_public_api() -> None:
    import constraintlab

    names = [n for n in dir(constraintlab) if not n.startswith("_")]
    assert names == sorted(n for n in constraintlab.__all__ if not n.startswith("_"))
    assert "__version__" in dir(constraintlab)
    assert all(getattr(constraintlab, n) is not None for n in names)


def test_progress_without_ipywidgets_is_plain_tqdm(monkeypatch) -> None:
    import importlib.util

    import tqdm.std

    from constraintlab import progress

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ipywidgets" else real(name, *a))
    try:
        importlib.reload(progress)
        assert progress.tqdm is tqdm.std.tqdm
        with warnings.catch_warnings():
            warnings.simplefilter("error")           # tqdm.auto's TqdmWarning would raise
            assert list(progress.progress(range(3))) == [0, 1, 2]
    finally:
        monkeypatch.undo()
        importlib.reload(progress)


def test_notebook_text_matches_the_sample() -> None:
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    planted = [r["planted"] for r in rows if "planted" in r]
    kinds = {k: sum(p.startswith(k) for p in planted)
             for k in ("exact duplicate", "cosmetic near duplicate", "contradiction")}
    nb = json.loads((REPO / "notebooks" / "explore.ipynb").read_text(encoding="utf-8"))
    intro = "".join(nb["cells"][0]["source"])
    match = re.search(r"(\d+) records: (\d+) drawn from GSM8K and (\d+) planted, namely (\d+) "
                      r"exact and (\d+) near duplicates, (\d+) contradictions", intro)
    assert match, intro
    assert [int(g) for g in match.groups()] == [
        len(rows), len(rows) - len(planted), len(planted), kinds["exact duplicate"],
        kinds["cosmetic near duplicate"], kinds["contradiction"]]


def test_max_length_is_clamped_to_the_model_positions(tmp_path, caplog) -> None:
    """A model of 64 positions: max_length 2048 cuts at 64 (reference: the model config)."""
    from tiny_models import build_model

    from constraintlab.encode import EncodeConfig
    from constraintlab.encode.extraction import Encoder

    path = build_model("qwen3", tmp_path / "m")
    cfg = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**cfg, "max_position_embeddings": 64}))
    enc = Encoder(EncodeConfig(model=str(path), k=8, max_length=2048))
    assert enc.loaded.max_positions == 64 and enc.renderer.max_length == 64
    assert enc.loaded.max_length(32) == 32
    enc.loaded._clamp_logged = False                # a length the user chose: a warning
    with caplog.at_level("INFO", logger="constraintlab.encode.model"):
        assert enc.loaded.max_length(100) == 64
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "--max-length 100 is above the model's 64 positions" in caplog.text


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])
