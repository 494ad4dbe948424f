"""Stage configs: declared types drive ``--set`` and the checks; the declarative tables accept
exactly what the hand-written checks they replaced accepted; ``from_dict`` refuses unknown keys.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path

import numpy as np
import pytest

from constraintlab._config import coerce, field_types
from constraintlab._json import plain
from constraintlab.analysis import AnalysisConfig
from constraintlab.cli._common import parse_set_options
from constraintlab.cli.main import main
from constraintlab.encode import EncodeConfig
from constraintlab.errors import ConfigError
from constraintlab.io import ReadConfig
from constraintlab.probe import ProbeConfig

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "gsm8k_sample.jsonl"
CONFIGS = (ReadConfig, EncodeConfig, AnalysisConfig, ProbeConfig)


#: Fields added to AnalysisConfig after 58e4150, each with the check written out by hand.
ADDED_SINCE: dict[str, typing.Callable[[typing.Any], bool]] = {
    "volatility_advice_p99": lambda v: 0 <= v <= 1,
    "null_rows_total": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
    "interference_null_draws": lambda v: (isinstance(v, int) and not isinstance(v, bool)
                                          and v >= 1),
    "interference_null_sigmas": lambda v: v >= 0,
}


def legacy_analysis_ok(c: typing.Any) -> bool:
    """The hand-written ``AnalysisConfig.__post_init__`` of 58e4150 (about 70 lines), as the
    reference for what the constraint table must accept (values of the declared type)."""
    def need(ok: bool) -> None:
        if not ok:
            raise ValueError

    try:
        for name in ("top_m", "block_size", "hist_bins", "max_pairs", "exact_max_n",
                     "sample_pairs", "sample_reference", "svd_exact_max_dim", "svd_components",
                     "shingle_size", "input_shingle_size", "num_perm", "max_group", "zone_terms",
                     "response_top_m", "response_list", "volatility_top_k", "volatility_list",
                     "volatility_tokens", "layer_map_zones", "zone_refine_exact_max_cells"):
            v = getattr(c, name)
            need(isinstance(v, int) and not isinstance(v, bool) and v >= 1)
        need(c.block_size >= 16)
        need(isinstance(c.seed, int) and c.seed >= 0)
        need(0.0 < c.tau_min <= c.tau_max < 1.0)
        need(c.tau_sigmas > 0)
        if c.tau is not None:
            need(0.0 < c.tau < 1.0)
        need(0.0 < c.eps < 1.0)
        if c.tau is not None:
            need(1.0 - c.eps > c.tau)
        need(c.rank_noise >= 0)
        need(c.growth_steps >= 2 and c.growth_min_examples >= 4)
        need(0 <= c.growth_saturating_below <= c.growth_growing_from)
        need(c.null_draws >= 1 and c.interference_excess_min > 0)
        need(isinstance(c.null_max_n, int) and c.null_max_n >= 16)
        need(isinstance(c.zone_refine_iters, int) and c.zone_refine_iters >= 0)
        need(isinstance(c.zone_refine_largest, int) and not isinstance(c.zone_refine_largest, bool)
             and c.zone_refine_largest >= 0)
        need(c.pressure_null_sigmas >= 0)
        for name in ("leverage_unique", "zone_conflict_share", "inconsistent_contradiction_share",
                     "growth_sketch_fill", "growth_adapter_fill", "growth_energy",
                     "growth_sketch_effective",
                     "minhash_threshold", "contradiction_jaccard",
                     "lsh_min_recall", "near_input_min"):
            v = getattr(c, name)
            need(0 < v <= 1)
        need(-1 < c.factor_output_max < c.factor_input_min < 1)
        need((c.lsh_bands is None) == (c.lsh_rows is None))
        if c.lsh_bands is not None:
            need(c.lsh_bands >= 1 and c.lsh_rows >= 1 and c.lsh_bands * c.lsh_rows <= c.num_perm)
        if c.zone_edge_min is not None:
            need(0 <= c.zone_edge_min < 1)
        need(c.louvain_resolution > 0)
        w = tuple(float(x) for x in c.volatility_weights)
        need(len(w) == 4 and all(math.isfinite(x) and x >= 0 for x in w) and sum(w) > 0)
        need(0 < c.family_jaccard <= 1)
        need(isinstance(c.family_min_size, int) and c.family_min_size >= 2)
        need(-1 <= c.family_coherence_min <= 1)
        need(math.isfinite(c.order_volatility_weight) and c.order_volatility_weight >= 0)
        for name, ok in ADDED_SINCE.items():
            need(ok(getattr(c, name)))
        # the suspect score's settings (SuspectsConfig.__post_init__ before they moved here)
        need(0.0 < c.suspect_alpha < 1.0)
        need(0.0 < c.suspect_rule_p <= c.suspect_alpha)
        for name in ("suspect_ending_tokens", "suspect_list", "suspect_tokens"):
            v = getattr(c, name)
            need(isinstance(v, int) and not isinstance(v, bool) and v >= 1)
        need(c.suspect_ending_floor > 0)
        need(0 <= c.capability_min_gain < 1 and c.capability_max_nll_ratio > 0)
        need(math.isfinite(c.capability_near_zero) and c.capability_near_zero >= 0)
        need(c.capability_max_result_nll > 0)
        # issue 26's fields, written out by hand
        need(isinstance(c.device, str) and (c.device in ("cpu", "cuda", "mps") or (
            c.device.startswith("cuda:") and c.device[5:].isdigit())))
        need(c.device_precision in ("float32", "tf32", "bfloat16"))
        need(c.device_block >= 16)
    except ValueError:
        return False
    return True


INTS = (-1, 0, 1, 2, 3, 15, 16, 17, 128, 200)
FLOATS = (-1.5, -1.0, -0.5, 0.0, 0.02, 0.5, 0.95, 1.0, 1.5, 4.0, math.inf, math.nan)


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(AnalysisConfig)])
def test_analysis_table_accepts_what_the_hand_written_checks_accepted(name) -> None:
    hint = field_types(AnalysisConfig)[name]
    base = str(hint).replace("typing.", "")
    if "tuple" in base:
        values = [tuple(v) for v in ((1, 1, 1, 1), (0, 0, 0, 0), (0, 1, 0, 2), (1, -1, 1, 1),
                                     (1, math.inf, 1, 1), (0.5, 0.5, 0.5, 0.5))]
    elif "bool" in base:
        values = [True, False]
    elif "int" in base:
        values = list(INTS)
    elif base in ("str", "<class 'str'>"):
        values = ["cpu", "cuda", "cuda:1", "cuda:x", "mps", "tpu", "float32", "tf32", "bfloat16",
                  "fp8", ""]
    else:
        values = list(FLOATS)
    if "None" in base:
        values.append(None)
    checked = 0
    for v in values:
        partner = {}
        if name in ("lsh_bands", "lsh_rows") and v is not None:   # the pair goes together
            partner = {"lsh_rows" if name == "lsh_bands" else "lsh_bands": 4}
        fake = AnalysisConfig()
        for key, value in {**partner, name: v}.items():  # bypass the new checks
            object.__setattr__(fake, key, value)
        want = legacy_analysis_ok(fake)
        try:
            AnalysisConfig(**{name: v, **partner})
            got = True
        except ConfigError:
            got = False
        assert got == want, (name, v)
        checked += 1
    assert checked == len(values)


def test_set_coerces_by_declared_type() -> None:
    got = parse_set_options(["lsh_bands=21", "lsh_rows=6", "tau=0.2", "top-m=20",
                             "zone_edge_min=none", "families_are_duplicates=yes",
                             "volatility_weights=1,2,0.5,1", "interference_excess_min=1.2"],
                            AnalysisConfig)
    assert got == {"lsh_bands": 21, "lsh_rows": 6, "tau": 0.2, "top_m": 20,
                   "zone_edge_min": None, "families_are_duplicates": True,
                   "volatility_weights": (1.0, 2.0, 0.5, 1.0),
                   "interference_excess_min": 1.2}
    assert type(got["lsh_bands"]) is int and type(got["interference_excess_min"]) is float
    cfg = AnalysisConfig(**got)
    assert cfg.bands_rows() == (21, 6) and all(type(x) is int for x in cfg.bands_rows())
    for bad, why in (("lsh_bands=21.0", "not an integer or None"),
                     ("lsh_bands=21.5", "not an integer"),
                     ("top_m=ten", "not an integer"),
                     ("families_are_duplicates=maybe", "not true or false"),
                     ("volatility_weights=1,1,1", "not 4 numbers"),
                     ("tau=", "not a number or None"),
                     ("no_such_setting=1", "expected NAME=VALUE"),
                     ("tau", "expected NAME=VALUE")):
        with pytest.raises(ConfigError, match=why):
            parse_set_options([bad], AnalysisConfig)
    assert coerce(ProbeConfig, "betas", "0.8, 0.99") == (0.8, 0.99)
    assert coerce(EncodeConfig, "target_modules", "q_proj,v_proj") == ("q_proj", "v_proj")
    assert coerce(EncodeConfig, "revision", "null") is None


def test_set_with_a_bad_type_exits_2_before_any_model_loads(capsys) -> None:
    code = main(["analyze", str(SAMPLE), "--set", "lsh_bands=21.5", "--out", "/nonexistent/x"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--set 'lsh_bands=21.5'" in err and "not an integer" in err
    code = main(["analyze", str(SAMPLE), "--set", "lsh_bands=0", "--set", "lsh_rows=6"])
    assert code == 2 and "lsh_bands must be a positive integer" in capsys.readouterr().err


@pytest.mark.parametrize("cls", CONFIGS)
def test_declared_types_are_enforced_and_normalised(cls) -> None:
    default = cls()
    for name in field_types(cls):
        value = getattr(default, name)
        if type(value) is int and not isinstance(value, bool):
            with pytest.raises(ConfigError, match=f"{name} must be"):
                cls(**{name: float(value) + 0.5})
            assert getattr(cls(**{name: np.int64(value)}), name) == value
            assert type(getattr(cls(**{name: np.int64(value)}), name)) is int
        elif type(value) is float:
            assert type(getattr(cls(**{name: int(value) if value == int(value) else value}),
                                name)) is float
            with pytest.raises(ConfigError, match=f"{name} must be"):
                cls(**{name: "1"})
        elif type(value) is bool:
            with pytest.raises(ConfigError, match=f"{name} must be true or false"):
                cls(**{name: int(value)})


@pytest.mark.parametrize("cls", CONFIGS)
def test_from_dict_round_trips_and_refuses_unknown_keys(cls) -> None:
    cfg = cls()
    saved = plain(dataclasses.asdict(cfg))        # as a report/manifest stores it (lists)
    assert cls.from_dict(saved) == cfg
    assert cls.from_dict({}) == cfg
    with pytest.raises(ConfigError, match=r"unknown setting.*not_a_field"):
        cls.from_dict({**saved, "not_a_field": 1})
    assert cfg.to_dict() == saved


def test_analysis_config_from_a_report_dict() -> None:
    cfg = AnalysisConfig(volatility_weights=(1, 0, 2, 1), lsh_bands=21, lsh_rows=6, tau=0.2)
    back = AnalysisConfig.from_dict(plain(vars(cfg)))
    assert back == cfg and back.volatility_weights == (1.0, 0.0, 2.0, 1.0)
    with pytest.raises(ConfigError, match="unknown setting"):
        AnalysisConfig.from_dict({"tau": 0.2, "taux": 0.3})


def test_dead_exports_are_gone() -> None:
    import constraintlab.analysis as analysis
    import constraintlab.analysis.config as config

    assert not hasattr(analysis, "optimal_bands") and not hasattr(config, "optimal_bands")
