#!/usr/bin/env bash
# Extraction throughput, memory and the per-example loop for four real model shapes on one GPU
# (issue 25). Models are built from configs on the device (random bf16 weights), saved with the
# project's tokenizer and loaded by path; data: data/gsm8k_sample.jsonl. No network, no pip.
#
#   OUT=/some/dir bash benchmarks/gpu_extract.sh      # from the repository root
#
# Each shape runs in its own process under its own timeout, so one failure does not stop the
# rest; logs and one JSON per shape go to $OUT (default ./gpu_extract_out); a Markdown table is
# printed at the end (and saved as $OUT/table.md). Sized to finish in about 4 minutes on an H200.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_extract_out}
mkdir -p "$OUT"
export PYTHONPATH=.
export TOKENIZERS_PARALLELISM=false
PY=${PYTHON:-python3}
START=$(date +%s)
{ nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv 2>&1 || true; } > "$OUT/gpu.txt"
cat "$OUT/gpu.txt"
# shape  rows  loop-rows  timeout(s)  deadline for the loop (s)  second budget (tokens; the
# issue's comparison rows: 32,768 for the small shapes, the old default 8,192 for the large)
for spec in "qwen3-0.6b 306 24 50 35 32768" "pythia-1b 306 24 45 32 32768" \
            "qwen3-4b 256 16 60 45 8192" "qwen3-8b 192 12 80 62 8192"; do
  set -- $spec
  echo "== $1 (n=$2, timeout $4 s) at +$(( $(date +%s) - START )) s"
  timeout --kill-after=5 "$4" "$PY" benchmarks/bench_extract.py --device cuda --shape "$1" \
      --n "$2" --loop-n "$3" --deadline "$5" --extra-tokens "$6" --json "$OUT/$1.json" \
      > "$OUT/$1.log" 2>&1
  rc=$?
  echo "   exit $rc"
  if [ $rc -ne 0 ]; then tail -n 5 "$OUT/$1.log"; fi
done
echo "== total $(( $(date +%s) - START )) s"
"$PY" benchmarks/bench_extract.py --table "$OUT" | tee "$OUT/table.md"
