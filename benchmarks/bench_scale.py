"""Scale-out on Ray: what Ray costs here, and how the work-unit plan scales.

(a) **This machine**: the same GSM8K examples through the built-in reference model, once in
    this process (torch on every core) and once on a local Ray with 2 workers (one CPU and one
    torch thread each). Prints both times, their ratio, Ray's start-up (``ray.init``, the
    driver's model load, actors loading the model) and the Ray overhead per unit: worker time
    not spent inside units, ``(workers * T_work - sum of unit seconds) / units``. Checks that
    both stores are byte-identical.
(b) **Simulation with the real plan**: GSM8K's token lengths (reference tokenizer, the real
    renderer), repeated to ``--sim-n`` examples, cut into work units of ``unit_size`` and packed
    by :func:`~constraintlab.encode.plan_batches` exactly as extraction does. A unit's cost is
    its padded tokens (sum of rows x longest over its batches). Each unit becomes a sleep of
    ``cost * scale`` in a Ray actor of 0.25 CPU (a sleep uses no CPU, so 8 actors fit on 2
    cores) dispatched through the same ``run_units`` as extraction, for 1, 2, 4 and 8 workers.
    Parallel efficiency ``T(1) / (w T(w))`` over the work window (first unit start to last
    unit end; the pool is started before the clock runs, as a model load would be), the
    dispatch overhead per unit, and the plan's load balance: ``sum(cost) / (w * max load)``
    when units go, in order, to whichever worker is free first (what the pool does), for
    w = 8 and 64. Targets: efficiency >= 0.85 at 8, balance >= 0.95.

    python benchmarks/bench_scale.py [--part a|b|all] [--n 192] [--sim-n 131072] [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
GSM8K = ROOT.parent / "shared" / "data" / "gsm8k_train.jsonl"

from constraintlab.encode import EncodeConfig, plan_batches  # noqa: E402
from constraintlab.encode.distributed import run_units  # noqa: E402
from constraintlab.encode.extraction import plan_units  # noqa: E402
from constraintlab.io import read_examples  # noqa: E402
from constraintlab.progress import set_progress  # noqa: E402

#: --quick: small sizes, to check the benchmark runs (its numbers are not the ones to report)
QUICK = {"n": 48, "unit_size": 12, "sim_n": 8192, "unit_seconds": 0.05}
STORE_FILES = ("features.npy", "input_factors.npy", "output_factors.npy", "examples.csv",
               "tokens.npz", "tokens.jsonl")


# ---- (b) the plan, simulated -------------------------------------------------------------------

def gsm8k_lengths(cfg: EncodeConfig) -> list[int]:
    """Token lengths of every GSM8K training example as the encoder renders them."""
    from transformers import AutoTokenizer

    from constraintlab.encode.model import resolve_model
    from constraintlab.encode.tokenize import Renderer

    tok = AutoTokenizer.from_pretrained(resolve_model(cfg.model))
    renderer = Renderer(tok, max_length=cfg.max_length, use_chat_template=cfg.use_chat_template)
    return [e.n_tokens for e in renderer.encode_all(read_examples(GSM8K).examples)]


def unit_costs(lengths: list[int], cfg: EncodeConfig) -> tuple[np.ndarray, int]:
    """Padded tokens of each work unit under the real plan, and the number of batches."""
    costs, n_batches = [], 0
    for a, b in plan_units(len(lengths), cfg.unit_size):
        part = lengths[a:b]
        batches = plan_batches(part, cfg.batch_size, cfg.max_batch_tokens)
        costs.append(sum(len(bt) * max(part[i] for i in bt) for bt in batches))
        n_batches += len(batches)
    return np.asarray(costs, dtype=np.float64), n_batches


def balance(costs: np.ndarray, workers: int) -> float:
    """``sum / (w * makespan)`` when units go in order to the first free worker."""
    free = [0.0] * workers
    for c in costs:
        heapq.heapreplace(free, free[0] + c)
    return float(costs.sum() / (workers * max(free)))


class SleepWorker:
    """A stand-in for UnitWorker: each unit sleeps ``cost * scale`` seconds."""

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def __call__(self, rows):
        start = time.time()
        time.sleep(float(rows["cost"][0]) * self.scale)
        return {"unit": rows["unit"], "start": np.asarray([start]),
                "end": np.asarray([time.time()])}


def simulate(ray, costs: np.ndarray, workers: int, scale: float, in_flight: int) -> dict:
    rows = [{"unit": u, "cost": float(c)} for u, c in enumerate(costs)]
    t0 = time.time()
    out = list(run_units(ray, rows, SleepWorker, {"scale": scale}, workers=workers, gpus=0.0,
                         cpus=0.25, in_flight=in_flight))
    wall = time.time() - t0
    start = min(r["start"] for r in out)
    window = max(r["end"] for r in out) - start
    busy = float(costs.sum() * scale)
    return {"workers": workers, "window_s": window, "wall_s": wall,
            "startup_s": start - t0, "overhead_ms_per_unit": 1e3 * (workers * window - busy)
            / len(costs), "units": len(out)}


def part_b(args) -> None:
    import ray

    cfg = EncodeConfig()
    t = time.perf_counter()
    base = gsm8k_lengths(cfg)
    reps = -(-args.sim_n // len(base))
    lengths = (base * reps)[:args.sim_n]
    costs, n_batches = unit_costs(lengths, cfg)
    print(f"(b) plan: {len(base)} GSM8K lengths (mean {np.mean(base):.0f}, max {max(base)} "
          f"tokens; tokenised in {time.perf_counter() - t:.1f} s) repeated to {len(lengths)} "
          f"examples: {len(costs)} units of {cfg.unit_size}, {n_batches} batches "
          f"(batch_size {cfg.batch_size}, max_batch_tokens {cfg.max_batch_tokens}); padded "
          f"tokens per unit {costs.min():.0f}..{costs.max():.0f}, padding "
          f"{1 - sum(lengths) / costs.sum():.1%}")
    for w in (8, 64):
        print(f"    plan balance at w={w}: {balance(costs, w):.3f} "
              f"({len(costs) / w:.0f} units per worker)")
    scale = args.unit_seconds / costs.mean()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.wait_for_min_actors_s = 300          # start the pool before the clock runs
        results = [simulate(ray, costs, w, scale, args.in_flight) for w in (1, 2, 4, 8)]
    finally:
        ray.shutdown()
    t1 = results[0]["window_s"]
    print(f"    each unit sleeps {args.unit_seconds:.3f} s on average "
          f"(total {costs.sum() * scale:.1f} s of work), {args.in_flight} unit(s) in flight "
          "per actor")
    print("    workers  T(w) s  wall s  efficiency  overhead ms/unit")
    for r in results:
        eff = t1 / (r["workers"] * r["window_s"])
        print(f"    {r['workers']:7d}  {r['window_s']:6.2f}  {r['wall_s']:6.2f}  {eff:10.3f}  "
              f"{r['overhead_ms_per_unit']:16.1f}")


# ---- (a) this machine: one process vs 2 Ray workers ----------------------------------------------

def digests(path: Path) -> dict:
    out = {n: hashlib.sha256((path / n).read_bytes()).hexdigest() for n in STORE_FILES}
    manifest = json.loads((path / "manifest.json").read_text())
    manifest.pop("stats")
    out["manifest"] = manifest
    return out


def part_a(args) -> None:
    import ray
    import torch

    from constraintlab.encode import extract

    records = [json.loads(line) for _, line in zip(range(args.n), GSM8K.open(), strict=False)]
    cfg = EncodeConfig(unit_size=args.unit_size)
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        data = Path(tmp) / "data.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in records))
        ds = read_examples(data)
        t = time.perf_counter()
        single = extract(ds, cfg, Path(tmp) / "single")
        t_single = time.perf_counter() - t
        t = time.perf_counter()
        ray.init(address="local", num_cpus=3, include_dashboard=False, logging_level="ERROR")
        t_init = time.perf_counter() - t
        try:
            t = time.perf_counter()
            on_ray = extract(ds, cfg, Path(tmp) / "ray", ray="auto", workers=2,
                             cpus_per_worker=1)
            t_ray = time.perf_counter() - t
        finally:
            ray.shutdown()
        same = digests(Path(tmp) / "single") == digests(Path(tmp) / "ray")
        s1, s2 = single.manifest["stats"], on_ray.manifest["stats"]
        units = s2["units_computed"]
        work = s2["seconds"]
        unit_seconds = s2["runs"][0]["worker_seconds"]
        print(f"(a) {len(ds)} GSM8K examples, reference model, unit_size {cfg.unit_size} "
              f"({units} units), torch {torch.get_num_threads()} threads in-process")
        print(f"    single process: {t_single:6.1f} s  (extraction {s1['seconds']:.1f} s, "
              f"{s1['examples_per_s']:.1f} ex/s)")
        print(f"    Ray, 2 workers x 1 CPU: {t_ray:6.1f} s + ray.init {t_init:.1f} s  "
              f"(units {work:.1f} s, {s2['examples_per_s']:.1f} ex/s)")
        print(f"    time ratio Ray / single: {t_ray / t_single:.2f} (with ray.init "
              f"{(t_ray + t_init) / t_single:.2f}); units alone {work / s1['seconds']:.2f}")
        print(f"    Ray overhead per unit: {(2 * work - unit_seconds) / units * 1e3:.0f} ms "
              f"(worker time outside units: actor start and model load included)")
        print(f"    stores byte-identical: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["a", "b", "all"], default="all")
    parser.add_argument("--n", type=int, default=192, help="(a) examples")
    parser.add_argument("--unit-size", type=int, default=32, help="(a) examples per unit")
    parser.add_argument("--sim-n", type=int, default=131072, help="(b) simulated examples")
    parser.add_argument("--unit-seconds", type=float, default=0.25,
                        help="(b) mean sleep per unit")
    parser.add_argument("--in-flight", type=int, default=None,
                        help="(b) units queued per actor (default: what extraction uses)")
    parser.add_argument("--quick", action="store_true",
                        help=f"a short check that everything runs (a: --n {QUICK['n']} "
                             f"--unit-size {QUICK['unit_size']}; b: --sim-n {QUICK['sim_n']} "
                             f"--unit-seconds {QUICK['unit_seconds']}); the numbers are "
                             "not the ones to report")
    args = parser.parse_args()
    if args.quick:      # sizes given on the command line win
        for name, value in QUICK.items():
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)
    if args.in_flight is None:
        from constraintlab.encode.distributed import IN_FLIGHT

        args.in_flight = IN_FLIGHT
    set_progress(False)
    if args.part in ("b", "all"):
        part_b(args)
    if args.part in ("a", "all"):
        part_a(args)


if __name__ == "__main__":
    main()
