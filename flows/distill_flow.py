"""Flow `distill`: train and evaluate one or more students (mapped tasks), with or without the teacher.

Walkthrough:
1. `plan_students` gives every config a label and an output folder, and (by default) adds
   a no-distillation twin of every distilled config, so the report can put "with" and
   "without" DLLM2Rec side by side;
2. `train_student_task` is mapped over the configs (GPU ones carry the `gpu` tag, so the
   tag concurrency limit serialises them on the card). Each returns the path of its
   `metrics.json`, never tensors. Results are cached on (dataset hash, teacher manifest
   hash, student config hash): re-running the same pipeline does not retrain;
3. when run on its own (a deployment), the flow publishes the report artifacts itself.

    >>> distill("runs/demo/data/4f0c1e9a2b3d", [StudentConfig(distill=DistillConfig(enabled=True))],
    ...         teacher_dir="runs/demo/teacher/4f0c1e9a2b3d-1a2b3c4d5e6f")  # doctest: +SKIP
"""
from __future__ import annotations

import os
from pathlib import Path

from prefect import flow, task, unmapped
from prefect.context import TaskRunContext
from prefect.task_runners import ProcessPoolTaskRunner

from flows.common import IO_RETRIES, device_tags, ensure_gpu_limit, logger, timed
from flows.layout import Layout, RunSettings, config_hash
from pipeline.artifacts import TEACHER_MANIFEST_FILE
from pipeline.dataset import MANIFEST_FILE
from pipeline.io import file_sha256, read_json
from student.config import DistillConfig, StudentConfig
from student.trainer import train_student

METRICS_FILE = "metrics.json"
STUDENT_WORKERS = 2  # students trained at once, each in its own process
NO_TEACHER = "none"
# Fields that change how fast a student trains, not what it learns: not part of its cache key.
RUNTIME_FIELDS = {"train": {"device", "num_threads", "eval_batch_size", "amp", "compile"}}


def student_label(config: StudentConfig) -> str:
    """Readable and unique: `sasrec-kd-1a2b3c4d` (ranking + embedding distillation), `-kd-rank-` /
    `-kd-emb-` (one of the two), `-base-` (none)."""
    d = config.distill
    kind = "base"
    if d.enabled:
        rank, emb = d.lambda_d > 0, d.embedding.enabled and d.embedding.weight > 0
        kind = "kd" if rank and emb else ("kd-rank" if rank else ("kd-emb" if emb else "kd-none"))
    return f"{config.model}-{kind}-{config_hash(config, exclude=RUNTIME_FIELDS)[:8]}"


def without_distillation(config: StudentConfig) -> StudentConfig:
    """The same student with DLLM2Rec switched off (the baseline of the side-by-side table)."""
    return config.model_copy(update={"distill": DistillConfig(enabled=False)})


def teacher_key(teacher_dir: str | None) -> str:
    """Identity of a teacher run: the hash of its manifest (which names data, model and settings)."""
    return file_sha256(Path(teacher_dir) / TEACHER_MANIFEST_FILE) if teacher_dir else NO_TEACHER


def plan_students(configs: list[StudentConfig], with_baselines: bool) -> list[StudentConfig]:
    """Configs to train, de-duplicated by label, baselines added after their distilled twins."""
    planned: dict[str, StudentConfig] = {}
    for cfg in configs:
        planned.setdefault(student_label(cfg), cfg)
        if with_baselines and cfg.distill.enabled:
            base = without_distillation(cfg)
            planned.setdefault(student_label(base), base)
    return list(planned.values())


def _student_cache_key(context: TaskRunContext, parameters: dict) -> str:
    cfg: StudentConfig = parameters["config"]
    data_hash = read_json(Path(parameters["dataset_dir"]) / MANIFEST_FILE)["content_hash"]
    teach = teacher_key(parameters["teacher_dir"])
    where = config_hash({"out_dir": str(Path(parameters["out_dir"]).resolve())})
    return f"student-{data_hash[:16]}-{teach[:16]}-{config_hash(cfg, exclude=RUNTIME_FIELDS)[:16]}-{where[:8]}"


def with_thread_share(config: StudentConfig) -> StudentConfig:
    """Unless `train.num_threads` is set, each of the STUDENT_WORKERS processes gets its share of
    the cores: two torch pools of all cores each wait on each other (demo: 3x slower)."""
    if config.train.num_threads is not None:
        return config
    share = max(1, (os.cpu_count() or 1) // STUDENT_WORKERS)
    return config.model_copy(update={"train": config.train.model_copy(update={"num_threads": share})})


@task(name="train-student", cache_key_fn=_student_cache_key, persist_result=True, **IO_RETRIES)
def train_student_task(dataset_dir: str, config: StudentConfig, out_dir: str, teacher_dir: str | None) -> str:
    """Train one student (resuming from its last checkpoint after a crash); return its metrics.json path.

    Baselines get the teacher too: the trainer then only measures their top-20 overlap with it.
    """
    log = logger()
    log.info("training %s on %s (teacher: %s) -> %s", student_label(config), dataset_dir, teacher_dir or "none", out_dir)
    with timed() as t:
        train_student(dataset_dir, with_thread_share(config), out_dir, teacher_dir=teacher_dir, resume=True)
    path = Path(out_dir) / METRICS_FILE
    if not path.exists():
        raise RuntimeError(f"the student trainer finished without writing {path}")
    log.info("%s done in %.1f s", student_label(config), t.seconds)
    return str(path)


def run_students(
    dataset_dir: str, configs: list[StudentConfig], teacher_dir: str | None, settings: RunSettings
) -> list[str]:
    """Map `train_student_task` over configs, grouped by device tags and by cache freshness.

    GPU configs carry the `gpu` tag (the concurrency limit serialises them); a config whose
    metrics.json vanished from disk is mapped with `refresh_cache` so the cache cannot hand
    back a path that no longer exists.
    """
    layout = Layout.of(settings)
    data_hash = read_json(Path(dataset_dir) / MANIFEST_FILE)["content_hash"]
    if any(device_tags(c.train.device) for c in configs):
        ensure_gpu_limit()
    groups: dict[tuple, list[tuple[StudentConfig, str]]] = {}
    for c in configs:
        teach = teacher_key(teacher_dir)
        out = str(layout.student_dir(data_hash, teach, student_label(c)))
        missing = not (Path(out) / METRICS_FILE).exists()
        groups.setdefault((tuple(device_tags(c.train.device)), missing), []).append((c, out))
    futures = []
    for (tags, missing), members in groups.items():
        task_ = train_student_task.with_options(tags=list(tags), refresh_cache=True if missing else None)
        cfgs, dirs = [m[0] for m in members], [m[1] for m in members]
        futures.append((cfgs, task_.map(unmapped(dataset_dir), cfgs, dirs, unmapped(teacher_dir))))
    by_label = {student_label(c): path for cfgs, fut in futures for c, path in zip(cfgs, fut.result())}
    return [by_label[student_label(c)] for c in configs]


# Students train in separate processes: torch's global RNG (weight init, dropout) is per
# process, so two students trained at once in threads would draw from one stream and a
# seeded run would not be reproducible.
@flow(name="distill", log_prints=True, task_runner=ProcessPoolTaskRunner(max_workers=STUDENT_WORKERS))
def distill(
    dataset_dir: str,
    students: list[StudentConfig] = [StudentConfig(distill=DistillConfig(enabled=True))],  # noqa: B006 - a UI default
    teacher_dir: str | None = None,
    settings: RunSettings = RunSettings(),
    with_baselines: bool = True,
    publish: bool = True,
) -> list[str]:
    """Train every student config on `dataset_dir` (distilling from `teacher_dir` where enabled).

    Returns the metrics.json paths in plan order. `publish=False` when the pipeline
    publishes one combined report instead.
    """
    configs = plan_students(students, with_baselines)
    if teacher_dir is None and any(c.distill.enabled for c in configs):
        raise ValueError("distillation is enabled in a student config but no teacher_dir was given")
    logger().info("distilling %d student(s): %s", len(configs), ", ".join(student_label(c) for c in configs))
    with timed() as t:
        paths = run_students(dataset_dir, configs, teacher_dir, settings)
    if publish:
        from flows.report import collect_summary, publish_report

        summary = collect_summary(settings, dataset_dir, teacher_dir, None, list(zip(configs, paths)),
                                  costs=[{"stage": "distill", "seconds": t.seconds}])
        publish_report(summary, settings)
    return paths
