"""The library and the command line accept and refuse the same settings: each case runs
``constraintlab.analyze(DATA, **kwargs)`` and ``constraintlab analyze DATA FLAGS`` (in process)
up to the point where the data would be read, which comes after every config check and before
any model loads. A refusal is a ConfigError in the library and, on the CLI, exit 2 with one
line naming the flag."""

from __future__ import annotations

from pathlib import Path

import pytest

import constraintlab
from constraintlab import api
from constraintlab.cli.main import main
from constraintlab.errors import ConfigError

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "gsm8k_sample.jsonl"


class _Reached(BaseException):
    """Raised where the data would be read: every setting was accepted."""


#: (library kwargs, CLI flags, None when both accept / the flag the CLI must name)
CASES = [
    ({"max_length": 16384}, ["--max-length", "16384"], None),
    ({"max_length": 1}, ["--max-length", "1"], "--max-length"),
    ({"max_length": 512, "max_batch_tokens": 4096},
     ["--max-length", "512", "--max-batch-tokens", "4096"], None),
    ({"max_length": 512, "max_batch_tokens": 100},
     ["--max-length", "512", "--max-batch-tokens", "100"], "--max-batch-tokens"),
    ({"k": 0}, ["-k", "0"], "-k"),
    ({"k": 64, "projection": "gaussian"}, ["-k", "64", "--projection", "gaussian"], None),
    ({"projection": "sparse"}, ["--projection", "sparse"], "--projection"),
    ({"dtype": "int8"}, ["--dtype", "int8"], "--dtype"),
    ({"lora_r": 0}, ["--lora-r", "0"], "--lora-r"),
    ({"lora_alpha": 0.0}, ["--lora-alpha", "0"], "--lora-alpha"),
    ({"batch_size": 0}, ["--batch-size", "0"], "--batch-size"),
    ({"target_modules": ["q_proj", "v_proj"]}, ["--target-modules", "q_proj", "v_proj"], None),
    ({"device": "cuda:7"}, ["--device", "cuda:7"], "--device"),
    ({"model": "./no-such-model-dir"}, ["--model", "./no-such-model-dir"], "--model"),
    ({"projection_seed": 3}, ["--projection-seed", "3"], None),
    ({"projection_seed": -1}, ["--projection-seed", "-1"], "--projection-seed"),
    ({"lora_init_seed": -1}, ["--lora-init-seed", "-1"], "--lora-init-seed"),
    ({"tau": 0.2}, ["--tau", "0.2"], None),
    ({"tau": 1.5}, ["--tau", "1.5"], "tau"),
    ({"top_m": 0}, ["--top-m", "0"], "top_m"),
    ({"lsh_bands": 21}, ["--set", "lsh_bands=21"], "lsh_bands"),
    ({"lsh_bands": 21, "lsh_rows": 6}, ["--set", "lsh_bands=21", "--set", "lsh_rows=6"], None),
    ({"analysis_seed": 2}, ["--set", "seed=2"], None),
    ({"analysis_seed": -2}, ["--set", "seed=-2"], "seed"),
    ({"limit": 0}, ["--limit", "0"], "--limit"),
    ({"limit": 5, "sample": 5}, ["--limit", "5", "--sample", "5"], "--limit"),
    ({"sample": 5, "sample_seed": 1}, ["--sample", "5", "--sample-seed", "1"], None),
    ({"sample_seed": -1}, ["--sample-seed", "-1"], "--sample-seed"),
    ({"train_on": "first-user"}, ["--train-on", "first-user"], "--train-on"),
]


@pytest.fixture()
def stop_before_reading(monkeypatch):
    def reached(*_a, **_k):
        raise _Reached

    monkeypatch.setattr(api, "read_examples", reached)


def _library(kwargs: dict, tmp_path: Path) -> str | None:
    try:
        constraintlab.analyze(SAMPLE, out=tmp_path / "lib", cache=False, **kwargs)
    except _Reached:
        return None
    except ConfigError as err:
        return str(err)
    raise AssertionError("analyze() returned without reading the data")


def _cli(flags: list[str], tmp_path: Path, capsys) -> tuple[int, str]:
    try:
        code = main(["analyze", str(SAMPLE), "--out", str(tmp_path / "cli"), "--no-cache", "-q",
                     *flags])
    except _Reached:
        return 0, ""
    except SystemExit as exit_:            # argparse: a bad choice or type
        code = exit_.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize(("kwargs", "flags", "named"), CASES,
                         ids=[" ".join(f) for _, f, _ in CASES])
def test_library_and_cli_accept_and_refuse_the_same(kwargs, flags, named, tmp_path, capsys,
                                                    stop_before_reading) -> None:
    refused = _library(kwargs, tmp_path)
    code, err = _cli(flags, tmp_path, capsys)
    assert (refused is not None) == (named is not None), (kwargs, refused)
    assert (code != 0) == (named is not None), (flags, code, err)
    if named is not None:
        assert any(k in refused for k in kwargs), refused     # the library names the keyword
        # one line (argparse's own refusals print the usage above it)
        last = err.strip().splitlines()[-1]
        assert code == 2 and last.startswith("constraintlab analyze: error: ") and named in last, \
            err
        assert "Traceback" not in err
        assert not any(tmp_path.iterdir())


def test_the_old_seed_kwarg_warns_and_keeps_its_meaning(tmp_path, stop_before_reading,
                                                        monkeypatch) -> None:
    seen = {}

    def split(settings, **stages):
        seen.update(settings)
        return real(settings, **stages)

    real = api.split_settings
    monkeypatch.setattr(api, "split_settings", split)
    with pytest.warns(DeprecationWarning, match="projection_seed"), pytest.raises(_Reached):
        constraintlab.analyze(SAMPLE, out=tmp_path, cache=False, seed=4)
    with pytest.warns(DeprecationWarning):
        read, encode, analysis = real(dict(seen))
    assert (encode.seed, analysis.seed, read.sample_seed) == (4, 4, 0)
    read, encode, analysis = real({"projection_seed": 4})
    assert (encode.seed, analysis.seed) == (4, 0)
    read, encode, analysis = real({"analysis_seed": 4})
    assert (encode.seed, analysis.seed) == (0, 4)
    with pytest.warns(DeprecationWarning, match="order_seed"), pytest.raises(_Reached):
        constraintlab.order(SAMPLE, "random", out=tmp_path, cache=False, seed=4)


def test_every_encode_setting_has_a_generated_flag_or_a_stated_reason(capsys) -> None:
    import dataclasses

    from constraintlab.cli._common import ENCODE_GROUPS, ENCODE_NOT_FLAGS, encode_flags
    from constraintlab.encode import EncodeConfig

    flagged = [n for names in ENCODE_GROUPS.values() for n in names]
    assert sorted(flagged + list(ENCODE_NOT_FLAGS)) == sorted(
        f.name for f in dataclasses.fields(EncodeConfig))
    with pytest.raises(SystemExit):
        main(["analyze", "--help"])
    text = capsys.readouterr().out
    for title in ENCODE_GROUPS:
        assert f"\n{title}:\n" in text
    for name in flagged:
        assert all(flag in text for flag in encode_flags(name)), name
