#!/usr/bin/env bash
# Teacher throughput on a GPU machine (HF backend): fine-tune + beam-4 generation at several batch
# sizes + embed + ground.
#
# The device machines (see the device tool) have torch/transformers/peft but no network, no vLLM,
# no gguf and no pydantic, and carry at most 64 MiB per call. The 98 MB SmolLM2 GGUF therefore
# travels in PARTS (default 2, ~49 MB each) parts, one per call, each copied to /tmp (which survives
# while the machine stays warm, ~30 s between calls); the last call joins them, installs the wheels
# with pip --no-index --target, converts the GGUF and runs scripts/teacher_bench.py on CUDA.
#
# Here (once):      bash scripts/gpu_teacher_bench.sh prepare
# Device call 1:    carry ["cache/gpu_carry/part0"]  command: bash scripts/gpu_teacher_bench.sh stash
#                   (the student check can share this call: scripts/gpu_student_check.sh)
# Device call 2:    carry ["cache/gpu_carry/part1", "cache/gpu_carry/wheels"]
#                   command: bash scripts/gpu_teacher_bench.sh run   (results in $OUT/teacher_gpu.json)
# Optional BENCH_ARGS="..." overrides the benchmark arguments of `run`.
#
# Issue 5 (teacher artifacts from generation on real data): with `run` add TEACHER_DATA=cache/gpu_carry/toys-data
# (a prepared dataset carried along) and `run` goes on with `dllm2rec teacher run --mode generate` on it. Its train
# budget is sized from the beam-4 rate just measured: max_samples = rate x GEN_SECONDS x RATE_FACTOR - 2 x MAX_EVAL.
# RATE_FACTOR (default 0.33) is for titles longer than the demo's: on 64-token titles the rate is about a third of
# the demo's (Games 2026-11-29: 87 against 290 samples/s; Toys 2026-11-30: 121 against 361; the 0.5 used then
# oversized Toys by 2 shards), so leave TEACHER_TIMEOUT room beyond GEN_SECONDS for the fine-tune (~70 s) and the
# ground step; a run stopped by the timeout still packs its finished shards, and on a machine still warm the same
# `python3 -m teacher.cli run` resumes at the first unfinished shard.
# The teacher folder (adapter, generations, artifacts; not the recomputable work files) comes back as
# $OUT/teacher_out.tgz.part* (<= 15 MB each): `cat teacher_out.tgz.part* | tar xz -C runs/<name>`. HYBRID=1 then
# runs the hybrid mode on a copy (same adapter, generations and title embeddings; seconds on a GPU, ~11 min on
# this CPU for Toys) and packs it as teacher_hybrid/ beside teacher_out/.
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
  local parts=${PARTS:-2} last
  last=$((parts - 1))
  split -n "$parts" -d -a 1 "$gguf" "$CARRY/$GGUF_NAME.part"
  for i in $(seq 0 "$last"); do mkdir -p "$CARRY/part$i" && mv "$CARRY/$GGUF_NAME.part$i" "$CARRY/part$i/"; done
  sha256sum "$gguf" | cut -d' ' -f1 > "$CARRY/part$last/$GGUF_NAME.sha256"
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
  cat "$STASH/$GGUF_NAME".part? > "$gguf"   # part0, part1, ... in order
  echo "$(cat "$STASH/$GGUF_NAME.sha256")  $gguf" | sha256sum -c -
  if [ -z "${SKIP_WHEELS:-}" ]; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$CARRY"/wheels/*.whl
  fi
  export PYTHONPATH="/tmp/site:$PWD" DLLM2REC_SMOLLM2_GGUF=$gguf DLLM2REC_CACHE=/tmp/dllm2rec_cache HF_HUB_OFFLINE=1
  export PYTHONUNBUFFERED=1
  nvidia-smi --query-gpu=name,memory.total --format=csv || true
  local out=${OUT:-/tmp}; mkdir -p "$out"
  # shellcheck disable=SC2086
  "$py" scripts/teacher_bench.py --device "${DEVICE:-cuda}" --backends hf \
    ${BENCH_ARGS:---n-train 1024 --epochs 1 --train-batch 32 --n-prompts 4096 --prompt-split train --beams 4 \
      --batch-size 512,1024 --prefill shared,per-beam --embed-batch 256} \
    --out "$out/teacher_gpu.json" 2>&1 | grep -v -E "it/s\]|batch/s\]" | tee "$out/teacher_gpu.log"
  if [ -n "${TEACHER_DATA:-}" ]; then teacher_run "$py" "$out"; fi
}

teacher_run() {  # the generate-mode teacher on $TEACHER_DATA, budgeted by the measured beam-4 rate
  local py=$1 out=$2 rate n max_eval=${MAX_EVAL:-3000} dest=/tmp/teacher_out finetune=${FINETUNE_JSON:-"{}"}
  rate=$("$py" -c "import json; print(json.load(open('$out/teacher_gpu.json'))['generate_hf_beams4']['samples_per_s'])")
  n=$("$py" -c "import json; from pathlib import Path; c = json.loads(Path('$TEACHER_DATA/manifest.json').read_text())['counts']; \
print(max(${MIN_SAMPLES:-256}, min(c['train'], int($rate * ${GEN_SECONDS:-180} * ${RATE_FACTOR:-0.33}) - 2 * $max_eval)))")
  echo "teacher run on $TEACHER_DATA: beam-4 rate $rate samples/s -> max_samples $n, max_eval_samples $max_eval"
  cat > /tmp/teacher_gpu_config.json <<JSON
{"mode": "generate", "max_samples": $n, "max_eval_samples": $max_eval, "shard_size": 4096,
 "generation": {"backend": "hf", "num_beams": 4, "batch_size": ${GEN_BATCH:-512}},
 "ground": {"embedding_dtype": "float16", "embed_batch_size": 256}, "finetune": $finetune}
JSON
  timeout "${TEACHER_TIMEOUT:-330}" "$py" -m teacher.cli run --data "$TEACHER_DATA" --out "$dest" \
    --config /tmp/teacher_gpu_config.json 2>&1 | grep -v -E "it/s\]|batch/s\]|sample/s\]" | tee "$out/teacher_run.log" \
    || echo "teacher run stopped early (timeout or error): packing what is there"
  cp "$dest/teacher_manifest.json" "$out/" 2>/dev/null || echo "no teacher manifest: the run did not finish"
  local folders=teacher_out
  if [ -n "${HYBRID:-}" ] && [ -f "$dest/teacher_manifest.json" ]; then  # hybrid reuses adapter, generations, title embeddings
    rm -rf /tmp/teacher_hybrid && cp -r "$dest" /tmp/teacher_hybrid && rm /tmp/teacher_hybrid/teacher_manifest.json
    sed 's/"mode": "generate"/"mode": "hybrid"/' /tmp/teacher_gpu_config.json > /tmp/teacher_gpu_hybrid.json
    timeout "${HYBRID_TIMEOUT:-120}" "$py" -m teacher.cli run --data "$TEACHER_DATA" --out /tmp/teacher_hybrid \
      --config /tmp/teacher_gpu_hybrid.json 2>&1 | grep -v -E "it/s\]|batch/s\]|sample/s\]" | tee "$out/teacher_hybrid.log" \
      && folders="teacher_out teacher_hybrid" || echo "hybrid stopped early: not packed"
  fi
  # shellcheck disable=SC2086
  tar czf - --exclude='work/items-*' --exclude='work/gen-embed-*' --exclude='work/ground-*' --exclude='work/finetune-*' -C /tmp $folders \
    | split -b 15M - "$out/teacher_out.tgz.part"
  ls -la "$out"
}

case "${1:-}" in
  prepare) prepare ;;
  stash) stash ;;
  run) run ;;
  *) echo "usage: $0 prepare|stash|run" >&2; exit 2 ;;
esac
