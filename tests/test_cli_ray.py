"""The CLI's Ray flags without a cluster: ``--ray`` when Ray is not installed, and the pool
flags without ``--ray``; both exit 2 with a message saying what to do, before any data is read
or model loaded (DATA does not even exist here; --model is the built-in one, since a --model
directory that does not exist is refused first)."""

from __future__ import annotations

import sys

import pytest

from constraintlab.cli.main import main


@pytest.fixture()
def no_ray(monkeypatch):
    """``import ray`` fails as it does where the extra is not installed."""
    for name in ("ray", "ray.data"):
        monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.parametrize("command", ["extract", "analyze"])
def test_ray_without_the_extra_names_it(command, no_ray, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    code = main([command, str(tmp_path / "missing.jsonl"), "--out", str(out), "--ray",
                 "--workers", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.startswith(f"constraintlab {command}: error: --ray needs Ray with Ray Data, an "
                          "optional dependency of constraintlab: pip install "
                          "'constraintlab[ray]'"), err
    assert not out.exists()


@pytest.mark.parametrize(("flags", "named"), [
    (["--workers", "2"], "--workers only applies"),
    (["--cpus-per-worker", "0.5", "--gpus-per-worker", "1"],
     "--gpus-per-worker and --cpus-per-worker only apply"),
])
@pytest.mark.parametrize("command", ["extract", "analyze"])
def test_pool_flags_without_ray_are_refused(command, flags, named, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    code = main([command, str(tmp_path / "missing.jsonl"), "--out", str(out), *flags])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.startswith(f"constraintlab {command}: error: {named} to extraction on Ray: add "
                          "--ray (needs pip install 'constraintlab[ray]'), or drop"), err
    assert not out.exists()
