#!/usr/bin/env bash
# Student on a GPU machine: the CUDA tests (AMP + distillation, GPU evaluation/recommend, resume)
# and the games-dealrec epoch/eval benchmark of issue 2 (target: <= 2 s per epoch on one H100),
# eager and with train.compile=reduce-overhead (CUDA graphs), and the serving latency (serve_bench).
#
# The device machines have torch/pandas/pyarrow/pytest but no pydantic: the wheels prepared by
# `bash scripts/gpu_teacher_bench.sh prepare` travel in cache/gpu_carry/wheels. The benchmark's
# dataset is the DROS-window games-dealrec prepared here (never committed):
#   .venv/bin/dllm2rec data prepare --reader presplit --path ../shared/data/games-dealrec \
#       --untitled keep --given-train windows --out cache/gpu_carry/games-data
# Device call: carry ["cache/gpu_carry/wheels", "cache/gpu_carry/games-data"]
#              command: bash scripts/gpu_student_check.sh   (results in $OUT/student_gpu.*)
set -uo pipefail
CARRY=cache/gpu_carry
PY=${PY:-python3}
OUT=${OUT:-/tmp/gpu_student_out}; mkdir -p "$OUT"
if [ -z "${SKIP_WHEELS:-}" ] && [ ! -d /tmp/site/pydantic ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$CARRY"/wheels/*.whl || exit 1
fi
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv || true
"$PY" -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_recommend.py tests/test_models.py 2>&1 \
  | tee "$OUT/student_gpu_tests.log" | tail -15
"$PY" benchmarks/student_bench.py --data "$CARRY/games-data" --device cuda --cache /tmp/student_bench \
  --out "$OUT/student_gpu.json" ${STUDENT_BENCH_ARGS:-} 2>&1 | grep -v -E "sample/s\]|it/s\]" | tee "$OUT/student_gpu.log"
# the same SASRec + DRO + KD + ED epoch replayed as CUDA graphs (train.compile; compilation is untimed warm-up)
"$PY" benchmarks/student_bench.py --data "$CARRY/games-data" --device cuda --cache /tmp/student_bench \
  --models sasrec --distill on --compile reduce-overhead --out "$OUT/student_gpu_graphs.json" 2>&1 \
  | grep -v -E "sample/s\]|it/s\]" | tee "$OUT/student_gpu_graphs.log"
# serving latency on the GPU (SKIP_SERVE=1 leaves it out): one request / batched, demo students (trained here, 2 epochs), baked and as trained
[ -n "${SKIP_SERVE:-}" ] && exit 0
for mode in "" "--no-bake"; do
  "$PY" benchmarks/serve_bench.py --device cuda --cache /tmp/student_bench $mode 2>&1 | tail -5 | tee -a "$OUT/serve_gpu.log"
done
