"""notebooks/explore.ipynb runs top to bottom on the shipped sample (any cell error fails)."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from constraintlab.reference import is_installed

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not is_installed(), reason="the reference model weights are not installed")
def test_explore_notebook_runs(tmp_path: Path) -> None:
    # Run a copy beside a copy of the data, so the report is written under tmp_path.
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "data").mkdir()
    shutil.copy(REPO / "data" / "gsm8k_sample.jsonl", tmp_path / "data")
    nb = nbformat.read(REPO / "notebooks" / "explore.ipynb", as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path / "notebooks")}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # the spectrum and the cosine histogram were drawn
    assert (tmp_path / "data" / "constraintlab-report" / "report.json").is_file()
