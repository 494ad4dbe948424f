"""Extraction on Ray: the same store bit for bit, resume across modes and faults.

One local Ray (2 CPUs) for the whole session; actors take 0.5 CPU each (two actors at one CPU
each would leave Ray Data no CPU and hang on 2 cores) and use one torch thread, as the
single-process reference run does. Every store is compared byte for byte with the one
single-process store of the same data and settings, built once per module (all arrays,
examples.csv, token profiles; the manifest apart from ``stats``).

What costs time here is starting processes (each Ray actor and the killed driver import torch,
transformers and peft and load the model), so the faults are chained into two tests with few
actors (6 process starts in all, 10 before):

- one process stopped after a unit, then 1 Ray worker whose unit keeps dying until the retries
  are out (a clear error), then one process again: resume local -> Ray -> local;
- a driver on 1 worker killed with -9 in its second unit, then a rerun on 2 workers, one of
  which exits mid-unit and is retried: at most the unit in flight is lost, and the store that
  1 and 2 Ray workers computed (every unit on Ray) is the single-process one.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from tiny_models import build_model, gsm8k_records

from constraintlab.encode import EncodeConfig, FeatureStore, extract
from constraintlab.encode import extraction as extraction_mod
from constraintlab.encode.distributed import RayExtractionError, RayOptions, UnitWorker
from constraintlab.errors import ConfigError
from constraintlab.io import read_examples

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
STORE_FILES = ("features.npy", "input_factors.npy", "output_factors.npy", "examples.csv",
               "tokens.npz", "tokens.jsonl")
N_EXAMPLES, UNIT, BATCH = 16, 4, 2   # 4 units of 4 examples, 2 batches each
N_UNITS = N_EXAMPLES // UNIT


def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    return before


@pytest.fixture(scope="session")
def ray_address():
    """One local Ray for the session: 2 CPUs, no dashboard; workers import this checkout."""
    ray = pytest.importorskip("ray")
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(TESTS)] + ([old] if old else []))
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING",
             object_store_memory=200 * 1024 ** 2)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Tiny Qwen3, 16 short GSM8K examples, and their single-process store (one thread)."""
    import torch

    root = tmp_path_factory.mktemp("ray")
    model = build_model("qwen3", root / "model", hidden=16, layers=1, seed=4)
    short = [r for r in gsm8k_records(80) if len(r["question"]) + len(r["answer"]) < 450]
    data = root / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in short[:N_EXAMPLES]))
    cfg = EncodeConfig(model=str(model), k=32, batch_size=BATCH, max_batch_tokens=4096,
                       unit_size=UNIT, seed=3)
    ds = read_examples(data)
    before = _one_thread()
    try:
        extract(ds, cfg, root / "reference")
    finally:
        torch.set_num_threads(before)
    return {"root": root, "model": str(model), "data": data, "cfg": cfg, "ds": ds,
            "reference": root / "reference"}


def digests(path: Path) -> dict:
    """sha256 of every store file, and the manifest without its run statistics."""
    out = {name: hashlib.sha256((path / name).read_bytes()).hexdigest() for name in STORE_FILES}
    manifest = json.loads((path / "manifest.json").read_text())
    manifest.pop("stats")
    out["manifest"] = manifest
    return out


def assert_same_store(path: Path, reference: Path) -> dict:
    assert digests(path) == digests(reference)
    assert not (path / "shards").exists()
    return FeatureStore.open(path).manifest["stats"]


def on_ray(env, out: Path, **kw):
    return extract(env["ds"], env["cfg"], out, ray=kw.pop("ray", "auto"),
                   cpus_per_worker=0.5, **kw)


class DieOnce(UnitWorker):
    """Exits (as a crash would) after computing and storing a batch, once per flag file."""

    def on_batch(self, unit, batch, n_examples, computed):
        if not computed:          # a batch found stored already: not this one
            return
        flag = self.out_dir.parent / f"{self.out_dir.name}.die-once"
        try:
            os.rename(flag, flag.with_suffix(".died"))      # only one actor claims it
        except OSError:
            return
        os._exit(1)


class DieInUnit2(UnitWorker):
    """Always exits after the first batch of unit 2."""

    def on_batch(self, unit, batch, n_examples, computed):
        if unit == 2:
            os._exit(1)


def local(env, out: Path) -> None:
    """Extraction in this process with one torch thread (as the reference was built)."""
    import torch

    before = _one_thread()
    try:
        extract(env["ds"], env["cfg"], out)
    finally:
        torch.set_num_threads(before)


# ---- without a cluster ------------------------------------------------------------------------

def test_missing_ray_is_a_clear_error_naming_the_extra(env, monkeypatch, tmp_path):
    from constraintlab.encode import distributed

    monkeypatch.setitem(sys.modules, "ray", None)          # import ray -> ImportError
    with pytest.raises(ConfigError, match=r"constraintlab\[ray\]"):
        distributed.import_ray()
    with pytest.raises(ConfigError, match=r"pip install 'constraintlab\[ray\]'"):
        extract(env["ds"], env["cfg"], tmp_path / "s", ray="auto")
    assert not (tmp_path / "s").exists()


def test_ray_options_and_units():
    assert extraction_mod.plan_units(13, 6) == [(0, 6), (6, 12), (12, 13)]
    opts = RayOptions.build("auto", workers=3, cpus_per_worker=0.5)
    assert (opts.address, opts.workers, opts.cpus_per_worker) == ("auto", 3, 0.5)
    cpu = EncodeConfig()
    assert RayOptions(cpus_per_worker=0.5).resources(cpu, {"CPU": 2}) == (2, 0.0, 0.5)
    assert RayOptions().resources(cpu, {"CPU": 8}) == (7, 0.0, 1.0)
    gpu = EncodeConfig(device="cuda")
    assert RayOptions(gpus_per_worker=0.5).resources(gpu, {"CPU": 8, "GPU": 2}) == (4, 0.5, 1.0)
    with pytest.raises(ConfigError, match="GPU"):
        RayOptions().resources(gpu, {"CPU": 8})
    with pytest.raises(ConfigError, match="workers"):
        RayOptions(workers=0)
    with pytest.raises(ConfigError, match="workers only applies to extraction on Ray: add "
                       "ray='auto'"):
        extract([], EncodeConfig(), "x", workers=2)


# ---- on the session's local Ray ---------------------------------------------------------------

@pytest.mark.ray
def test_resume_local_then_ray_until_retries_are_out_then_local(env, ray_address, tmp_path,
                                                                monkeypatch):
    """A store started in one process is continued by one Ray worker; its worker dies in
    unit 2 until the retries are out (clear error, finished units kept); one process
    finishes it: the reference store, each run's units in ``stats.runs``."""
    from constraintlab.encode.distributed import extract_on_ray

    out = tmp_path / "cross"
    real, calls = extraction_mod.run_unit, []

    def stop_after_one_unit(*args, **kw):
        if len(calls) == 1:
            raise KeyboardInterrupt
        calls.append(args[2])
        return real(*args, **kw)

    monkeypatch.setattr(extraction_mod, "run_unit", stop_after_one_unit)
    with pytest.raises(KeyboardInterrupt):
        local(env, out)
    monkeypatch.setattr(extraction_mod, "run_unit", real)
    assert sorted(p.name for p in (out / "shards").glob("*.done")) == ["000000.done"]
    with pytest.raises(RayExtractionError,
                       match=r"unit 2 .* died.*[1-3] of 4 work units are finished and kept "
                             r"in .*run the same command again to resume"):
        extract_on_ray(env["ds"], env["cfg"], out, worker_cls=DieInUnit2,
                       options=RayOptions(workers=1, cpus_per_worker=0.5, max_retries=0))
    # unit 2 is not finished; units 1 and 3 are when Ray Data handed them out before unit 2
    # gave up (it may hand out units in any order)
    done = sorted(int(p.name[:6]) for p in (out / "shards").glob("*.done"))
    assert done[0] == 0 and 2 not in done
    local(env, out)                                          # finished in this process
    stats = assert_same_store(out, env["reference"])
    left = N_UNITS - len(done)
    assert stats["mode"] == "local" and stats["units_computed"] == left
    # unit 2's first batch, stored before its worker died, is kept: not computed again
    assert stats["examples_computed"] == left * UNIT - BATCH
    ray_units = len(done) - 1
    assert [(r["mode"], r["units"]) for r in stats["runs"]] == [
        ("local", 1), *([("ray", ray_units)] if ray_units else []), ("local", left)]


DRIVER = textwrap.dedent("""
    import sys, time
    from constraintlab.encode import EncodeConfig
    from constraintlab.encode.distributed import RayOptions, UnitWorker, extract_on_ray
    from constraintlab.io import read_examples

    class Hold(UnitWorker):
        # finishes the first unit it gets (Ray Data may hand out any unit first), stores the
        # first batch of the next one, then never goes on (the test kills the driver)
        def on_batch(self, unit, batch, n_examples, computed):
            if any((self.out_dir / "shards").glob("*.done")):
                time.sleep(3600)

    model, data, out, address, batch, unit = sys.argv[1:7]
    cfg = EncodeConfig(model=model, k=32, batch_size=int(batch), max_batch_tokens=4096,
                       unit_size=int(unit), seed=3)
    extract_on_ray(read_examples(data), cfg, out, worker_cls=Hold,
                   options=RayOptions(address=address, workers=1, cpus_per_worker=0.5))
""")


@pytest.fixture(scope="module")
def held_driver(env, ray_address):
    """A driver process extracting on 1 Ray worker that finishes one unit and then holds in
    the next (to be killed with -9); its output goes to ``driver.log``."""
    out = env["root"] / "killed"
    script = env["root"] / "driver.py"
    script.write_text(DRIVER)
    penv = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(TESTS)]))
    log = (env["root"] / "driver.log").open("wb")   # a file: a full pipe would block it
    proc = subprocess.Popen([sys.executable, str(script), env["model"], str(env["data"]),
                             str(out), ray_address, str(BATCH), str(UNIT)], env=penv,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc, out
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        log.close()


@pytest.mark.ray
def test_driver_killed_then_two_workers_one_crashing_give_the_single_process_store(
        env, ray_address, held_driver):
    """A driver on 1 worker killed with -9 loses at most the unit in flight (its stored batch
    is kept); the rerun on 2 workers, one of which exits mid-unit (Ray retries its unit),
    finishes the store: every unit computed on Ray, by 1 and by 2 workers, and the store is
    the single-process one."""
    from constraintlab.encode.distributed import extract_on_ray

    proc, out = held_driver
    shards = out / "shards"

    def held() -> bool:        # one unit done, one batch of another stored
        done = [p.name[:6] for p in shards.glob("*.done")]
        return len(done) == 1 and any(p.name[:6] != done[0] for p in shards.glob("*.ok"))

    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not held():
        time.sleep(0.05)
    assert proc.poll() is None and held(), (
        (env["root"] / "driver.log").read_text(errors="replace")[-3000:])
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(list(shards.glob("*.done"))) == 1
    (out.parent / "killed.die-once").touch()
    extract_on_ray(env["ds"], env["cfg"], out, worker_cls=DieOnce,
                   options=RayOptions(address=ray_address, workers=2, cpus_per_worker=0.5))
    assert (out.parent / "killed.died").exists()           # an actor did exit mid-unit
    stats = assert_same_store(out, env["reference"])
    assert stats["mode"] == "ray" and stats["workers"] == 2
    assert stats["units_computed"] == N_UNITS - 1
    # computed again: nothing of the finished unit, nor the batch of the unit in flight
    # stored before the kill, nor the batch the crashing actor had stored
    assert stats["examples_computed"] == N_EXAMPLES - UNIT - 2 * BATCH
    runs = stats["runs"]
    assert [(r["mode"], r["units"]) for r in runs] == [("ray", 1), ("ray", N_UNITS - 1)]
