"""The teacher's steps as Prefect tasks, and the subset run behind incremental re-distillation.

`full_run` calls the teacher stage's public step functions (`finetune_step`,
`generate_step`, `ground_step`) as nested tasks, so the UI shows fine-tune -> generate ->
ground. Each step is resumable on its own (adapter fingerprint, generation/grounding shards).

`subset_run` ranks only some samples (the new ones of a refreshed dataset) with the LoRA
adapter of an earlier run, through `run_teacher(..., sample_ids=...)`.

    >>> full_run("runs/demo/data/4f0c1e9a2b3d", TeacherConfig(), "runs/demo/teacher/x")   # doctest: +SKIP
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from prefect import task

from flows.common import IO_RETRIES
from pipeline.artifacts import TeacherRankings
from pipeline.dataset import Dataset
from teacher.config import TeacherConfig
from teacher.ground import title_groups
from teacher.run import finetune_step, generate_step, ground_step, run_teacher, teacher_metrics

INCREMENTAL_MODES = ("generate", "retrieve")  # hybrid re-selects its weight on valid: always a full run


@task(name="finetune", **IO_RETRIES)
def finetune(dataset_dir: str, config: TeacherConfig, out_dir: str) -> str | None:
    path = finetune_step(dataset_dir, config, out_dir)
    return str(path) if path else None


@task(name="generate", **IO_RETRIES)
def generate(dataset_dir: str, config: TeacherConfig, out_dir: str) -> str:
    return str(generate_step(dataset_dir, config, out_dir))


@task(name="ground", **IO_RETRIES)
def ground(dataset_dir: str, config: TeacherConfig, out_dir: str) -> str:
    return str(ground_step(dataset_dir, config, out_dir))


def full_run(dataset_dir: str, config: TeacherConfig, out_dir: str) -> str:
    """fine-tune -> generate -> ground (artifacts), each a task; `retrieve` mode only grounds."""
    if config.mode != "retrieve":
        finetune(dataset_dir, config, out_dir)
        generate(dataset_dir, config, out_dir)
    return ground(dataset_dir, config, out_dir)


def subset_run(dataset: Dataset, config: TeacherConfig, out_dir: str | Path, sample_ids: np.ndarray,
               adapter_from: str | Path) -> Path:
    """Rank only `sample_ids` of `dataset` into `out_dir`, reusing the adapter in `adapter_from`/adapter."""
    if config.mode not in INCREMENTAL_MODES:
        raise ValueError(f"mode {config.mode!r} cannot run on a subset")
    if config.mode != "retrieve" and config.finetune.enabled:
        # run_teacher reuses an adapter already in out_dir/adapter for a subset run (no new fine-tuning).
        shutil.copytree(Path(adapter_from) / "adapter", Path(out_dir) / "adapter", dirs_exist_ok=True)
    return run_teacher(dataset, config, out_dir, sample_ids=np.asarray(sample_ids))


def metrics_fn(config: TeacherConfig):
    """The teacher's own valid/test metrics (identical titles count as one item), for merged rankings."""
    def compute(rankings: TeacherRankings, dataset: Dataset) -> dict:
        ks = [k for k in config.ks if k <= rankings.top_n]
        return teacher_metrics(rankings, dataset, title_groups(dataset.titles), ks)

    return compute
