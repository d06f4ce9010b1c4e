"""Work pools and deployments: what `dllm2rec flow deploy` (and `flow serve`, and compose) registers.

| deployment                 | flow         | pool         | how it starts                                   |
|----------------------------|--------------|--------------|-------------------------------------------------|
| `pipeline/pipeline`        | pipeline     | teacher pool | by hand (UI form, CLI, API)                      |
| `pipeline/redistill`       | pipeline     | teacher pool | cron (default 03:00 daily) + `dataset.refreshed` |
| `teacher/teacher`          | teacher      | teacher pool | by hand                                          |
| `distill/distill`          | distill      | student pool | by hand                                          |
| `prepare-data/watch-<ds>`  | prepare-data | student pool | every `watch_interval` s; emits the refresh event |

Both pools are `process` pools; the teacher pool is the one whose workers see a GPU (in
compose, the teacher worker has the GPU device request). The `gpu` tag concurrency limit
is created too. Entry points are module paths (`flows.pipeline_flow.pipeline`), so a worker
only needs the package installed, no code storage.

    >>> register(DeploySettings(root="/abs/runs"))            # doctest: +SKIP
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule
from prefect.deployments.runner import EntrypointType
from prefect.events import DeploymentEventTrigger
from prefect.exceptions import ObjectNotFound
from pydantic import BaseModel, Field

from flows.common import ensure_gpu_limit
from flows.distill_flow import distill
from flows.layout import RunSettings
from flows.pipeline_flow import pipeline
from flows.prepare_flow import REFRESH_EVENT, prepare_data
from flows.profiles import profile_parameters
from flows.teacher_flow import teacher
from pipeline.prepare import DataConfig
from student.config import StudentConfig
from teacher.config import TeacherConfig


class DeploySettings(BaseModel):
    """What to register (every field has an environment default so compose can set it)."""

    root: str = Field(default_factory=lambda: os.environ.get("DLLM2REC_ROOT", "runs"),
                      description="Run root; made absolute, because workers start flows in their own working folder.")
    dataset: str = Field(default_factory=lambda: os.environ.get("DLLM2REC_DATASET", "demo"), description="Dataset name.")
    data: DataConfig = Field(default_factory=DataConfig, description="The source the watcher and the pipeline prepare.")
    profile: str = Field(default_factory=lambda: os.environ.get("DLLM2REC_PROFILE", "demo"),
                         description="Parameter preset for teacher and students: 'demo' (minutes on CPU) or 'full' (METHOD defaults).")
    teacher: TeacherConfig | None = Field(None, description="Teacher settings of the deployments (overrides the profile's).")
    students: list[StudentConfig] | None = Field(None, description="Student settings of the deployments (override the profile's).")
    teacher_pool: str = Field(default_factory=lambda: os.environ.get("DLLM2REC_TEACHER_POOL", "teacher-gpu"), description="Work pool of the teacher (GPU) worker.")
    student_pool: str = Field(default_factory=lambda: os.environ.get("DLLM2REC_STUDENT_POOL", "student"), description="Work pool of the student worker.")
    cron: str = Field(default_factory=lambda: os.environ.get("DLLM2REC_REDISTILL_CRON", "0 3 * * *"), description="Cron of periodic re-distillation.")
    timezone: str = Field("UTC", description="Time zone of the cron schedule.")
    watch_interval: int = Field(default_factory=lambda: int(os.environ.get("DLLM2REC_WATCH_INTERVAL", "600")), ge=10,
                                description="Seconds between watcher runs of prepare-data.")
    working_dir: str | None = Field(default_factory=lambda: os.environ.get("DLLM2REC_WORKDIR"),
                                    description="Working folder of flow-run processes (default: the current folder).")


def ensure_process_pool(name: str) -> None:
    """Create a `process` work pool with Prefect's default job template, unless it exists."""
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=name, type="process",
                                                   base_job_template=ProcessWorker.get_default_base_job_template()))


def refresh_trigger(dataset: str) -> DeploymentEventTrigger:
    """Run the re-distillation on the version the `dataset.refreshed` event names."""
    return DeploymentEventTrigger(
        name=f"redistill-on-{REFRESH_EVENT}-{dataset}",
        expect={REFRESH_EVENT},
        match={"prefect.resource.id": dataset},
        parameters={"dataset_dir": "{{ event.payload.path }}"},
    )


def build_deployments(s: DeploySettings) -> list[tuple[object, str]]:
    """`(RunnerDeployment, pool)` pairs, parameters filled from the profile and settings."""
    settings = RunSettings(root=str(Path(s.root).resolve()), dataset=s.dataset)
    prof = profile_parameters(s.profile)
    prof = {"teacher": s.teacher or prof["teacher"], "students": s.students or prof["students"]}
    # The watcher's first run comes one interval after registration, not at once.
    every = timedelta(seconds=s.watch_interval)
    watch = IntervalSchedule(interval=every, anchor_date=datetime.now(timezone.utc) + every)
    common = dict(entrypoint_type=EntrypointType.MODULE_PATH, tags=["dllm2rec", s.dataset],
                  job_variables={"working_dir": str(Path(s.working_dir or os.getcwd()).resolve())})
    pipe_params = {"data": s.data, "teacher": prof["teacher"], "students": prof["students"],
                   "settings": settings}
    pipe_params = {k: _jsonable(v) for k, v in pipe_params.items()}
    return [
        (pipeline.to_deployment("pipeline", parameters=pipe_params,
                                description="End to end: prepare -> teacher (cached / incremental) -> distill -> report.", **common),
         s.teacher_pool),
        (pipeline.to_deployment("redistill", parameters=pipe_params,
                                schedules=[CronSchedule(cron=s.cron, timezone=s.timezone)], triggers=[refresh_trigger(s.dataset)],
                                description=f"Periodic re-distillation ({s.cron}) and on every {REFRESH_EVENT} of {s.dataset}.",
                                **common),
         s.teacher_pool),
        (teacher.to_deployment("teacher", parameters={"teacher": _jsonable(prof["teacher"]), "settings": _jsonable(settings)},
                               description="LLM teacher on the latest dataset version: fine-tune -> generate -> ground -> Parquet.",
                               **common),
         s.teacher_pool),
        (distill.to_deployment("distill", parameters={"students": _jsonable(prof["students"]), "settings": _jsonable(settings)},
                               description="Train students on a dataset version (distilling from a teacher folder).", **common),
         s.student_pool),
        (prepare_data.to_deployment(f"watch-{s.dataset}", schedules=[watch],
                                    parameters={"data": _jsonable(s.data), "settings": _jsonable(settings)},
                                    description=f"Re-prepare {s.dataset} every {s.watch_interval}s; emits {REFRESH_EVENT} on change.",
                                    **common),
         s.student_pool),
    ]


def _jsonable(value):
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def register(s: DeploySettings) -> dict[str, str]:
    """Create pools, the GPU limit and every deployment on the current API; return {name: id}."""
    for pool in {s.teacher_pool, s.student_pool}:
        ensure_process_pool(pool)
    ensure_gpu_limit()
    ids = {}
    for deployment, pool in build_deployments(s):
        ids[f"{deployment.flow_name}/{deployment.name}"] = str(deployment.apply(work_pool_name=pool))
    return ids
