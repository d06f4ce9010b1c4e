#!/usr/bin/env bash
# Teacher throughput on a GPU machine (HF backend): fine-tune + generate (greedy, beam-4) + embed + ground.
#
# The device machines (see the device tool) have torch/transformers/peft but no network, no vLLM,
# no gguf and no pydantic, and carry at most 64 MiB per call. The 98 MB SmolLM2 GGUF therefore
# travels in three ~33 MB parts, one per call, each copied to /tmp (which survives while the
# machine stays warm, ~30 s between calls); the last call joins them, installs the wheels with
# pip --no-index --target, converts the GGUF and runs scripts/teacher_bench.py on CUDA.
#
# Here (once):      bash scripts/gpu_teacher_bench.sh prepare
# Device call 1:    carry ["cache/gpu_carry/part0"]  command: bash scripts/gpu_teacher_bench.sh stash
# Device call 2:    carry ["cache/gpu_carry/part1"]  command: bash scripts/gpu_teacher_bench.sh stash
# Device call 3:    carry ["cache/gpu_carry/part2", "cache/gpu_carry/wheels"]
#                   command: bash scripts/gpu_teacher_bench.sh run   (results in $OUT/teacher_gpu.json)
# Optional BENCH_ARGS="..." overrides the benchmark arguments of `run`.
set -euo pipefail
CARRY=cache/gpu_carry                     # git-ignored (cache/)
STASH=/tmp/dllm2rec_gguf_parts
GGUF_NAME=SmolLM2-135M-Instruct.Q4_1.gguf
WHEELS="gguf==0.19.0 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0"

prepare() {
  local py=${PYTHON:-.venv/bin/python}
  local gguf
  gguf=$("$py" -c "import sys; sys.path.insert(0, '.'); from teacher.model import smollm2_gguf; print(smollm2_gguf())")
  rm -rf "$CARRY" && mkdir -p "$CARRY/wheels"
  split -n 3 -d -a 1 "$gguf" "$CARRY/$GGUF_NAME.part"
  for i in 0 1 2; do mkdir -p "$CARRY/part$i" && mv "$CARRY/$GGUF_NAME.part$i" "$CARRY/part$i/"; done
  sha256sum "$gguf" | cut -d' ' -f1 > "$CARRY/part2/$GGUF_NAME.sha256"
  # shellcheck disable=SC2086
  "$py" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$CARRY/wheels" $WHEELS
  du -sh "$CARRY"/*
}

stash() {  # copy whatever part this call carried to /tmp
  mkdir -p "$STASH"
  cp "$CARRY"/part*/* "$STASH"/
  ls -la "$STASH"
}

run() {  # PY and SKIP_WHEELS=1 allow a local dry run of this step (e.g. PY=.venv/bin/python)
  local py=${PY:-python3}
  stash
  local gguf=/tmp/$GGUF_NAME
  cat "$STASH/$GGUF_NAME".part0 "$STASH/$GGUF_NAME".part1 "$STASH/$GGUF_NAME".part2 > "$gguf"
  echo "$(cat "$STASH/$GGUF_NAME.sha256")  $gguf" | sha256sum -c -
  if [ -z "${SKIP_WHEELS:-}" ]; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$CARRY"/wheels/*.whl
  fi
  export PYTHONPATH="/tmp/site:$PWD" DLLM2REC_SMOLLM2_GGUF=$gguf DLLM2REC_CACHE=/tmp/dllm2rec_cache HF_HUB_OFFLINE=1
  export PYTHONUNBUFFERED=1
  nvidia-smi --query-gpu=name,memory.total --format=csv || true
  local out=${OUT:-/tmp}
  # shellcheck disable=SC2086
  "$py" scripts/teacher_bench.py --device cuda --backends hf --beams 1,4 \
    ${BENCH_ARGS:---n-train 1024 --epochs 1 --train-batch 32 --n-prompts 2048 --prompt-split train --batch-size 256} \
    --out "$out/teacher_gpu.json" 2>&1 | grep -v -E "it/s\]|batch/s\]" | tee "$out/teacher_gpu.log"
}

case "${1:-}" in
  prepare) prepare ;;
  stash) stash ;;
  run) run ;;
  *) echo "usage: $0 prepare|stash|run" >&2; exit 2 ;;
esac
