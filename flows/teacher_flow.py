"""Flow `teacher`: fine-tune -> generate -> ground -> Parquet artifacts, cached and incremental.

Walkthrough:
1. the dataset version (the latest one of `settings.dataset` unless `dataset_dir` is given)
   and the teacher config give the cache key `teacher-<dataset hash>-<config hash>`;
   `teacher-artifacts` is a Prefect task with that key and result persistence on, so a
   second run on the same data and settings is `Cached` and costs nothing;
2. on a cache miss, when an older version's teacher run with the same config exists and
   the new version only *adds* samples (`flows.incremental`), the teacher ranks only the
   new samples and the rankings are merged; otherwise the whole teacher runs;
3. the task carries the `gpu` tag when the teacher uses a GPU (tag concurrency limit).

The teacher's own step functions (`flows.teacher_steps`) do the model work; this file only
decides what to run and where it lands.

    >>> teacher(TeacherConfig(), RunSettings(root="runs", dataset="demo"))   # doctest: +SKIP
    'runs/demo/teacher/4f0c1e9a2b3d-9a8b7c6d5e4f'
"""
from __future__ import annotations

import shutil
from pathlib import Path

from prefect import flow, task
from prefect.context import TaskRunContext

from flows.common import IO_RETRIES, device_tags, ensure_gpu_limit, logger, timed
from flows.incremental import describe_extension, find_base, merge_artifacts, new_sample_ids
from flows.layout import Layout, RunSettings, config_hash
from flows.teacher_steps import INCREMENTAL_MODES, full_run, metrics_fn, subset_run
from pipeline.artifacts import TEACHER_MANIFEST_FILE
from pipeline.dataset import MANIFEST_FILE, load_dataset
from pipeline.io import read_json
from teacher.config import TeacherConfig

DELTA_DIR = ".delta"


# Settings that change how fast the teacher runs or where it caches, not what it writes.
RUNTIME_FIELDS = {
    "model": {"device", "cache_dir"},
    "generation": {"batch_size", "tensor_parallel_size", "gpu_memory_utilization", "cpu_kv_cache_gib",
                   "enable_prefix_caching"},
    "ground": {"query_chunk", "item_chunk", "embed_batch_size"},
    "shard_size": True,
}


def teacher_hash(config: TeacherConfig) -> str:
    """Hash of the settings that change the teacher's output (the cache key's second half)."""
    return config_hash(config, exclude=RUNTIME_FIELDS)


def resolve_dataset_dir(settings: RunSettings, dataset_dir: str = "") -> str:
    """`dataset_dir` if given, else the latest prepared version of `settings.dataset`."""
    if dataset_dir:
        return dataset_dir
    latest = Layout.of(settings).read_latest()
    if latest is None:
        raise FileNotFoundError(f"no prepared version of dataset {settings.dataset!r} under {settings.root}: "
                                "run prepare-data (or the pipeline) first, or pass dataset_dir")
    return latest["path"]


def _teacher_cache_key(context: TaskRunContext, parameters: dict) -> str:
    """Content hashes of data and settings, plus the output folder (two run roots never share a result)."""
    data_hash = read_json(Path(parameters["dataset_dir"]) / MANIFEST_FILE)["content_hash"]
    where = config_hash({"out_dir": str(Path(parameters["out_dir"]).resolve())})
    return f"teacher-{data_hash[:16]}-{teacher_hash(parameters['config'])[:16]}-{where[:8]}"


@task(name="teacher-artifacts", cache_key_fn=_teacher_cache_key, persist_result=True, **IO_RETRIES)
def teacher_artifacts(dataset_dir: str, config: TeacherConfig, out_dir: str, root: str, dataset: str,
                      incremental: bool = True) -> str:
    """Write teacher artifacts for `dataset_dir` into `out_dir`: incrementally when possible. Returns `out_dir`."""
    log = logger()
    ds = load_dataset(dataset_dir)
    base = None
    if incremental and config.mode in INCREMENTAL_MODES:
        base = find_base(Layout(root, dataset), ds, teacher_hash(config))
    if base is None:
        log.info("teacher: full run on %s -> %s", dataset_dir, out_dir)
        return full_run(dataset_dir, config, out_dir)
    ext = describe_extension(base, ds)
    log.info("teacher: incremental run, %d new samples %s on top of %s", ext["new_samples"], ext["by_split"], base.teacher_dir)
    delta_dir = Path(out_dir) / DELTA_DIR
    ids = new_sample_ids(base.dataset, ds)
    delta = subset_run(ds, config, delta_dir, ids, adapter_from=base.teacher_dir) if len(ids) else None
    if delta is not None:
        ext["timings"] = read_json(Path(delta) / TEACHER_MANIFEST_FILE).get("timings")
    merge_artifacts(base.teacher_dir, delta, ds, out_dir, base_dataset=base.dataset,
                    manifest_extra={"incremental": ext}, metrics_fn=metrics_fn(config))
    shutil.rmtree(delta_dir, ignore_errors=True)
    return str(out_dir)


def teacher_stage(dataset_dir: str, config: TeacherConfig, settings: RunSettings, incremental: bool = True) -> dict:
    """Run (or reuse) the teacher for one dataset version; return {path, status, seconds, new_samples}."""
    layout = Layout.of(settings)
    data_hash = read_json(Path(dataset_dir) / MANIFEST_FILE)["content_hash"]
    out_dir = layout.teacher_dir(data_hash, teacher_hash(config))
    tags = device_tags(config.model.device)
    if tags:
        ensure_gpu_limit()
    # A teacher folder deleted from disk must not be served from the cache.
    fresh = (out_dir / TEACHER_MANIFEST_FILE).exists()
    run = teacher_artifacts.with_options(tags=tags, refresh_cache=None if fresh else True)
    with timed() as t:
        state = run(dataset_dir, config, str(out_dir), settings.root, settings.dataset, incremental, return_state=True)
        path = state.result()
    manifest = read_json(Path(path) / TEACHER_MANIFEST_FILE)
    status = "cached" if state.name == "Cached" else ("incremental" if "incremental" in manifest else "full")
    new = (manifest.get("incremental") or {}).get("new_samples") if status == "incremental" else None
    logger().info("teacher %s in %.1f s: %s", status, t.seconds, path)
    return {"path": path, "status": status, "seconds": t.seconds, "new_samples": new}


@flow(name="teacher", log_prints=True)
def teacher(
    teacher: TeacherConfig = TeacherConfig(),
    settings: RunSettings = RunSettings(),
    dataset_dir: str = "",
    incremental: bool = True,
) -> str:
    """Teacher artifacts for a dataset version (default: the latest of `settings.dataset`). Returns their folder."""
    return teacher_stage(resolve_dataset_dir(settings, dataset_dir), teacher, settings, incremental)["path"]
