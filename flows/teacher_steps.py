"""The teacher's steps as Prefect tasks, and the subset run behind incremental re-distillation.

`full_run` calls the teacher stage's public step functions (`finetune_step`,
`generate_step`, `ground_step`) as nested tasks, so the UI shows fine-tune -> generate ->
ground. Each step is resumable on its own (adapter fingerprint, generation/grounding shards).

`subset_run` ranks only some samples (the new ones of a refreshed dataset) with the LoRA
adapter of an earlier run: `run_teacher` has no sample-id parameter, so this opens the
teacher's `Workspace`, narrows its sample set, and drives the generate and ground steps.
It is the one place where flows lean on the teacher's internals (see docs/orchestration.md).

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
from teacher.run import finetune_step, generate_step, ground_step, teacher_metrics
from teacher.workspace import SPLIT_ORDER, Workspace

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
    from teacher.run import _generate, _ground  # no public subset entry point yet

    if config.mode not in INCREMENTAL_MODES:
        raise ValueError(f"mode {config.mode!r} cannot run on a subset")
    ws = Workspace.open(dataset, config, out_dir)
    chosen = dataset.samples[dataset.samples["sample_id"].isin(sample_ids)]
    order = chosen["split"].map({s: i for i, s in enumerate(SPLIT_ORDER)})
    ws.__dict__["samples"] = chosen.assign(_o=order).sort_values("_o", kind="stable").drop(columns="_o").reset_index(drop=True)
    if config.mode != "retrieve":
        adapter = None
        if config.finetune.enabled:
            shutil.copytree(Path(adapter_from) / "adapter", ws.adapter_dir, dirs_exist_ok=True)
            adapter = ws.adapter_dir
        _generate(ws, adapter)
    return _ground(ws)


def metrics_fn(config: TeacherConfig):
    """The teacher's own valid/test metrics (identical titles count as one item), for merged rankings."""
    def compute(rankings: TeacherRankings, dataset: Dataset) -> dict:
        ks = [k for k in config.ks if k <= rankings.top_n]
        return teacher_metrics(rankings, dataset, title_groups(dataset.titles), ks)

    return compute
