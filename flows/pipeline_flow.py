"""Flow `pipeline`: prepare -> teacher -> distill -> report, end to end.

Walkthrough:
1. **data**: prepare `data` as a new version of `settings.dataset` (subflow `prepare-data`,
   no refresh event: this run consumes the refresh itself), or take `dataset_dir` as given
   (the `dataset.refreshed` trigger passes the version the event names);
2. **teacher** (subflow): cached on the content hashes of data and settings; incremental
   when the data only gained samples;
3. **distill** (subflow): every student config, plus a no-distillation twin of each
   distilled one (`with_baselines`), as mapped tasks;
4. **report**: markdown + tables + PNG as UI artifacts and files under
   `<root>/<dataset>/reports/<stamp>/`, with `served.pt`, the student picked on valid ready
   to serve; the flow returns the report path.

    >>> pipeline(DataConfig(reader="demo"), TeacherConfig(), [StudentConfig()], RunSettings())  # doctest: +SKIP
"""
from __future__ import annotations

from prefect import flow
from prefect.runtime import flow_run

from flows.common import logger, timed
from flows.distill_flow import distill, plan_students
from flows.layout import RunSettings
from flows.prepare_flow import prepare_data
from flows.report import collect_summary, comparison_rows, publish_report, student_rows
from flows.teacher_flow import teacher_stage
from pipeline.prepare import DataConfig
from student.config import DistillConfig, StudentConfig
from teacher.config import TeacherConfig


@flow(name="pipeline", log_prints=True)
def pipeline(
    data: DataConfig = DataConfig(),
    teacher: TeacherConfig = TeacherConfig(),
    students: list[StudentConfig] = [StudentConfig(distill=DistillConfig(enabled=True))],  # noqa: B006 - a UI default
    settings: RunSettings = RunSettings(),
    dataset_dir: str = "",
    with_baselines: bool = True,
    incremental: bool = True,
) -> str:
    """Run every stage on one dataset version; return the path of report.md.

    `dataset_dir` (a prepared version folder) skips preparation; the refresh trigger fills it.
    `incremental=False` forces a full teacher run when the data changed.
    """
    log = logger()
    costs = []
    status = "given" if dataset_dir else "prepared"
    with timed() as t:
        if not dataset_dir:
            dataset_dir = prepare_data(data, settings, emit_refresh=False)
    costs.append({"stage": "prepare", "seconds": t.seconds, "status": status})

    info = teacher_stage(dataset_dir, teacher, settings, incremental)
    original = _teacher_seconds(info["path"])
    costs.append({"stage": "teacher", "seconds": info["seconds"], "status": info["status"]
                  + (f" (first run took {original:.0f} s)" if info["status"] == "cached" and original else "")})

    with timed() as t:
        configs = plan_students(students, with_baselines)
        paths = distill(dataset_dir, configs, teacher_dir=info["path"], settings=settings,
                        with_baselines=False, publish=False)
    costs.append({"stage": f"distill ({len(configs)} students)", "seconds": t.seconds, "status": "done"})

    summary = collect_summary(settings, dataset_dir, info["path"], info, list(zip(configs, paths)), costs)
    summary["flow_run"] = {"id": str(flow_run.get_id()), "name": flow_run.get_name()}
    report = publish_report(summary, settings)
    for row in comparison_rows(summary["students"]) or student_rows(summary["students"]):
        log.info("%s", "  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    if summary.get("served"):
        log.info("serving checkpoint (%s, picked on valid): %s", summary["served"]["label"], summary["served"]["path"])
    log.info("report: %s", report.resolve())
    return str(report.resolve())


def _teacher_seconds(teacher_dir: str) -> float | None:
    """Total wall time the teacher recorded in its manifest, when it did (for the cost table)."""
    from pathlib import Path

    from pipeline.artifacts import TEACHER_MANIFEST_FILE
    from pipeline.io import read_json

    timings = read_json(Path(teacher_dir) / TEACHER_MANIFEST_FILE).get("timings") or {}
    total = sum(float(t.get("seconds", 0.0)) for t in timings.values() if isinstance(t, dict))
    return total or None
