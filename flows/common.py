"""What every flow shares: I/O retries, the GPU concurrency tag, and stage timing.

The GPU is guarded by a *tag-based* task concurrency limit: every task that may hold the
GPU carries the tag `gpu`, and the server lets at most `GPU_SLOTS` such tasks run at once
(created by `ensure_gpu_limit`, which the deployments and the pipeline call).

    >>> with timed() as t:
    ...     pass
    >>> t.seconds >= 0
    True
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from prefect import get_run_logger
from prefect.logging.loggers import get_logger

GPU_TAG = "gpu"
GPU_SLOTS = int(os.environ.get("DLLM2REC_GPU_SLOTS", "1"))


def retry_on_io(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a task only for I/O errors (a flaky disk or network share), never for bad data, bugs,
    or a file that is simply not there (a missing model or dataset will not appear on retry)."""
    exc = getattr(state, "data", None)
    return isinstance(exc, OSError) and not isinstance(exc, (FileNotFoundError, PermissionError))


# Keyword arguments for tasks that read or write files.
IO_RETRIES: dict[str, Any] = dict(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_on_io)


def device_tags(device: str) -> list[str]:
    """Tags of a task that runs on `device` ('auto' counts as GPU when CUDA is visible)."""
    if device == "cpu":
        return []
    if device == "auto":
        try:
            import torch

            return [GPU_TAG] if torch.cuda.is_available() else []
        except ImportError:  # pragma: no cover - torch is a dependency
            return []
    return [GPU_TAG]


def ensure_gpu_limit(slots: int = GPU_SLOTS) -> None:
    """Create the `gpu` tag concurrency limit on the current API if it is missing (idempotent)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_concurrency_limit_by_tag(GPU_TAG)
        except ObjectNotFound:
            client.create_concurrency_limit(tag=GPU_TAG, concurrency_limit=slots)


def logger():
    """The run logger inside a flow/task (shows in the UI), a plain Prefect logger outside."""
    try:
        return get_run_logger()
    except Exception:  # noqa: BLE001 - MissingContextError outside a run
        return get_logger("dllm2rec.flows")


@dataclass
class Timer:
    seconds: float = 0.0


@contextmanager
def timed() -> Iterator[Timer]:
    """Measure the wall time of a block (cost per stage in the report)."""
    t, start = Timer(), time.perf_counter()
    try:
        yield t
    finally:
        t.seconds = time.perf_counter() - start
