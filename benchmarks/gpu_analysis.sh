#!/usr/bin/env bash
# Issue 26 on one GPU machine (one H200, 16 cores): the torch pass over X @ X.T against the bare
# tiled GEMM at N = 1,000,000, k = 1,024 (goal <= 2x), the whole analysis at N = 1,000,000 on
# the GPU (goal < 5 min), and the 16-core CPU row of bench_pairs --stage-only.
#
#   OUT=/some/dir bash benchmarks/gpu_analysis.sh        # from the repository root
#
# Needs python3 with torch (CUDA), numba, scikit-learn, networkx; no pip, no network, no Ray.
# Every step is guarded (a failure or a timeout is logged and the next step runs) and logs to
# $OUT/<step>.log; $OUT/summary.log collects the tails. The whole script stays inside
# BUDGET seconds (default 290): the last step gets what is left.
# Small CPU dry run of every code path (what the tests of this script do):
#   DEVICE=cpu N=2000 N_SMALL=1000 K=64 ANALYSIS_N='800 1500' CPU_N=1500 BUDGET=900 \
#     OUT=/tmp/g bash benchmarks/gpu_analysis.sh
set -u
OUT=${OUT:-./gpu-analysis-out}
DEVICE=${DEVICE:-cuda}
N=${N:-1000000}
N_SMALL=${N_SMALL:-262144}
K=${K:-1024}
ANALYSIS_N=${ANALYSIS_N:-100000 1000000}
CPU_N=${CPU_N:-20000}
PRECISION=${PRECISION:-tf32}
BUDGET=${BUDGET:-290}
PY=${PY:-python3}
export PYTHONPATH=${PYTHONPATH:-.}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.log"
START=$(date +%s)

left() { echo $(( BUDGET - ($(date +%s) - START) )); }

step() {  # step NAME LIMIT_SECONDS command...
  local name=$1 limit=$2
  shift 2
  local l
  l=$(left)
  if [ "$limit" -gt "$l" ]; then limit=$l; fi
  if [ "$limit" -lt 10 ]; then
    echo "== $name: skipped (budget spent)" | tee -a "$SUMMARY"
    return
  fi
  echo "== $name (limit ${limit} s): $*" | tee -a "$SUMMARY"
  local t0 rc
  t0=$(date +%s)
  timeout -k 5 "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  tail -n 40 "$OUT/$name.log" | tee -a "$SUMMARY"
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    echo "== $name: TIMED OUT after ${limit} s (lines above: what it reached)" | tee -a "$SUMMARY"
  else
    echo "== $name: rc $rc, $(( $(date +%s) - t0 )) s" | tee -a "$SUMMARY"
  fi
}

step env 20 bash -c "nvidia-smi --query-gpu=name,memory.total --format=csv 2>&1 | head -3; \
  nproc; $PY -c 'import torch, numba, sklearn, networkx, numpy; \
print(\"torch\", torch.__version__, \"cuda\", torch.cuda.is_available(), \"numba\", \
numba.__version__, \"numpy\", numpy.__version__)'"
# a smaller N first: a ratio even if the big one runs out of time
step pass_small 70 "$PY" benchmarks/bench_gpu_pass.py --n "$N_SMALL" --k "$K" --device "$DEVICE" \
  --precision "$PRECISION" --stage --json "$OUT/pass_small.json"
step pass_1m 90 "$PY" benchmarks/bench_gpu_pass.py --n "$N" --k "$K" --device "$DEVICE" \
  --precision "$PRECISION" --json "$OUT/pass_1m.json"
step cpu_pairs 40 "$PY" benchmarks/bench_pairs.py --stage-only --reps 1 --n "$CPU_N" --k "$K"
# N = 100,000 in full, then as far as the budget goes at 1,000,000 (one line per analyzer as it
# finishes; BUDGET=900 for the whole 1M analysis)
# shellcheck disable=SC2086
step analysis 300 "$PY" benchmarks/bench_analysis_scale.py --n $ANALYSIS_N --k "$K" \
  --device "$DEVICE" --precision "$PRECISION" --warmup 300 --json "$OUT/analysis.json"
echo "== total $(( $(date +%s) - START )) s (budget $BUDGET s)" | tee -a "$SUMMARY"
