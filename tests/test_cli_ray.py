"""The CLI's Ray flags without a cluster: ``--ray`` when Ray is not installed, and the pool
flags without ``--ray``; both exit 2 with a message saying what to do, before any data is read
or model loaded (DATA does not even exist here; --model is the built-in one, since a --model
directory that does not exist is refused first)."""

from __future__ import annotations

import sys

import pytest

import constraintlab
from constraintlab import encode
from constraintlab.cli.main import main
from constraintlab.errors import ConfigError


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


@pytest.mark.parametrize(("ray", "flags", "kwargs", "message"), [
    (True, ["--workers", "0"], {"workers": 0}, "{workers} must be a positive integer, got 0"),
    (True, ["--gpus-per-worker", "-1"], {"gpus_per_worker": -1.0},
     "{gpus_per_worker} must be a number >= 0, got -1.0"),
    (True, ["--cpus-per-worker", "0"], {"cpus_per_worker": 0.0},
     "a worker needs {cpus_per_worker} > 0 or {gpus_per_worker} > 0"),
    (False, ["--workers", "2", "--cpus-per-worker", "1"], {"workers": 2, "cpus_per_worker": 1.0},
     "{workers} and {cpus_per_worker} only apply to extraction on Ray: add {ray} (needs pip "
     "install 'constraintlab[ray]'), or drop {workers} and {cpus_per_worker} to extract in this "
     "process"),
])
@pytest.mark.parametrize("command", ["extract", "analyze"])
def test_library_and_cli_refuse_the_same_ray_settings(command, ray, flags, kwargs, message,
                                                      tmp_path, capsys) -> None:
    """One check for both: the CLI names its flags, the library its arguments; neither needs
    Ray installed to refuse, nor reads the data (it does not exist)."""
    names = ("workers", "gpus_per_worker", "cpus_per_worker")
    data, out = tmp_path / "missing.jsonl", tmp_path / "out"
    code = main([command, str(data), "--out", str(out), *(["--ray"] if ray else []), *flags])
    err = capsys.readouterr().err
    as_flags = {n: "--" + n.replace("_", "-") for n in names}
    assert (code, err) == (2, f"constraintlab {command}: error: "
                              + message.format(ray="--ray", **as_flags) + "\n")
    run = encode.extract if command == "extract" else constraintlab.analyze
    with pytest.raises(ConfigError) as caught:
        run(data, ray="auto" if ray else None, **kwargs)
    assert str(caught.value) == message.format(ray="ray='auto'", **{n: n for n in names})
    assert not out.exists()
