"""The exit-code contract for configuration: an option this machine cannot honour (a device
that is not there, a local model directory that does not exist, an invalid ``-k``) is one line
naming the flag, exit 2, no traceback, and no model is loaded first."""

from __future__ import annotations

from pathlib import Path

import pytest

from constraintlab.cli.main import SUBCOMMANDS, main
from constraintlab.encode import config as encode_config

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "gsm8k_sample.jsonl"

#: The arguments each model-loading subcommand needs besides DATA (a subcommand not listed
#: gets ``-o OUT``, as ``clean``/``select``/``order`` take).
_NEEDS = {"analyze": ["--out", "{tmp}/rep"], "gate": ["--out", "{tmp}/rep", "--fail-on",
                                                      "examples > 0"],
          "extract": ["--out", "{tmp}/store"], "probe": ["--examples", "0,1"],
          "select": ["-o", "{tmp}/out.jsonl", "--budget", "0.5"]}
COMMANDS = [m.__name__.rsplit(".", 1)[1] for m in SUBCOMMANDS
            if m.__name__.rsplit(".", 1)[1] != "inspect"]

BAD = [
    (["--device", "cuda:7"], "--device cuda:7: this machine has"),
    (["--device", "gpu"], "--device gpu: not a torch device"),
    (["--model", "./no-such-model-dir"], "--model ./no-such-model-dir: no such directory"),
    (["-k", "0"], "-k must be a positive integer, got 0"),
]


@pytest.fixture()
def no_model_load(monkeypatch):
    """Loading a model fails the test: the checks must come first."""
    from constraintlab.encode import model

    def refuse(*_a, **_k):
        raise AssertionError("a model was loaded before the options were checked")

    monkeypatch.setattr(model, "_load", refuse)


def _one_line_error(command: str, extra: list[str], flags: list[str], message: str,
                    capsys) -> pytest.CaptureResult:
    """Run ``command`` on the sample; exit 2 and one stderr line starting with ``message``."""
    code = main([command, str(SAMPLE), *extra, *flags, "--quiet"])
    out = capsys.readouterr()
    assert code == 2, out
    lines = out.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"constraintlab {command}: error: {message}"), \
        out.err
    return out


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(("flags", "message"), BAD, ids=["device", "device-type", "model", "k"])
def test_bad_configuration_is_one_line_naming_the_flag(command, flags, message, tmp_path,
                                                       capsys, no_model_load) -> None:
    extra = [a.format(tmp=tmp_path) for a in _NEEDS.get(command, ["-o", "{tmp}/out.jsonl"])]
    out = _one_line_error(command, extra, flags, message, capsys)
    assert out.out == "" and not any(tmp_path.iterdir())


def test_device_check_follows_torch(monkeypatch) -> None:
    """cuda:N is there exactly when torch counts more than N devices (reference: torch)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert [encode_config.check_device(d) is None
            for d in ("cpu", "cuda", "cuda:0", "cuda:1", "cuda:2")] == [True] * 4 + [False]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert encode_config.check_device("cuda") == ("this machine has no CUDA devices; use "
                                                  "--device cpu")


@pytest.mark.parametrize(("name", "looks"), [
    ("Qwen/Qwen3-0.6B", False), ("gpt2", False), ("./m", True), ("/abs/m", True),
    ("~/m", True), ("a/b/c", True), ("m/", True), ("C:\\m", True)])
def test_model_names_that_can_only_be_paths(name, looks) -> None:
    assert encode_config._looks_like_path(name) is looks


def test_api_refuses_a_missing_device_before_reading(monkeypatch, no_model_load) -> None:
    import constraintlab
    from constraintlab.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^device 'cuda:9': this machine has"):
        constraintlab.analyze([{"question": "q", "answer": "a"}], device="cuda:9")


@pytest.mark.parametrize("command", ["analyze", "gate"])
@pytest.mark.parametrize(("flags", "message"), [
    (["--set", "factor_input_min=-5"], "--set factor_input_min: factor_input_min must be"),
    (["--tau", "5"], "--tau: tau must be"),
    (["--top-m", "0"], "--top-m: top_m must be"),
], ids=["set", "tau", "top-m"])
def test_an_analysis_setting_out_of_range_names_its_flag(command, flags, message, tmp_path,
                                                         capsys, no_model_load) -> None:
    extra = [a.format(tmp=tmp_path) for a in _NEEDS[command]]
    _one_line_error(command, extra, flags, message, capsys)


@pytest.mark.parametrize("command", ["clean", "select", "order"])
@pytest.mark.parametrize("where", ["input", "directory"])
def test_an_output_over_the_input_or_a_directory_is_refused_first(command, where, tmp_path,
                                                                   capsys, no_model_load) -> None:
    data = tmp_path / "data.jsonl"
    data.write_bytes(SAMPLE.read_bytes())
    output = data if where == "input" else tmp_path
    extra = ["--budget", "0.5"] if command == "select" else []
    code = main([command, str(data), "-o", str(output), *extra, "--quiet"])
    out = capsys.readouterr()
    which = "an input" if command == "select" else "the input"   # select also reads --target
    message = (f"{output}: refusing to overwrite {which}; choose another -o" if where == "input"
               else f"-o {output}: is a directory; give a file name")
    assert code == 2, out
    assert out.err.splitlines() == [f"constraintlab {command}: error: {message}"], out.err
    assert data.read_bytes() == SAMPLE.read_bytes()
